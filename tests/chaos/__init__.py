"""Chaos runs: the seed rollout on a sandbox stack while services, NATS, Prometheus and the
Kubernetes API fail at moments drawn from a seed (``python -m tests.chaos``, ``make chaos``)."""
