"""Chat and webhook providers of the notifier: what Flagger's ``pkg/notifier`` does, over aiohttp.

- ``notices``: the provider-neutral input (``Notice``, ``Field``) and one resolved destination
  (``Target``);
- ``payloads``: pure functions building each provider's JSON body, URL and headers;
- ``delivery``: ``Sender``, which posts a body with timeouts, retries and a deadline.

Which events alert, AlertProvider and secret resolution, Kubernetes Events and de-duplication
across replicas live in the notifier's handlers, not here.
"""
