"""In-cluster name proxy: an HTTP forward proxy resolving ``<svc>.<ns>[.svc[.cluster.local]]``
through the simulated cluster's Services and Endpoints (see ``app.NameProxy``)."""

from sandbox.proxy.app import NameProxy, ProxySettings

__all__ = ["NameProxy", "ProxySettings"]
