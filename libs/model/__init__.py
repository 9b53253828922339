"""The Flagger-compatible object model (``flagger.app/v1beta1``) and its validation.

Modules, by concern:

- ``durations``   Go-style durations (``10s``, ``1m30s``) and Flagger's interval pattern.
- ``meta``        the shared base Struct, ObjectMeta and object references.
- ``canary``      Canary, its spec, service and status, with Flagger's defaults as helpers.
- ``analysis``    the analysis block: metrics, webhooks, alerts, A/B match, session affinity.
- ``strategy``    strategy detection and the pure weight-step arithmetic.
- ``templates``   MetricTemplate and query-template variables.
- ``alerts``      AlertProvider and severity routing.
- ``apisixroute`` the ApisixRoute ``apisix.apache.org/v2`` object (light checks, CRD).
- ``apisixupstream``, ``apisixpluginconfig`` the ApisixUpstream and ApisixPluginConfig objects
  the sandbox gateway reads (checks, CRDs).
- ``configrefs``  the ConfigMaps/Secrets a pod spec uses and which are tracked (Flagger's rules).
- ``structural``  the walk of a raw dict against a model that collects every problem.
- ``validation``  ``validate(docs) -> list[Problem]``: structural pass, decode, semantic rules.
- ``documents``   multi-document YAML loading.
- ``crds``        CustomResourceDefinitions generated from the model (``deploy/crds``).

Import modules, not names: ``from libs.model import canary`` then ``canary.parse_canary(obj)``.
"""
