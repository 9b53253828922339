"""What the services and the CLI share in standalone mode (APISIX without Kubernetes): the
canaries' state in NATS KV (``store``)."""
