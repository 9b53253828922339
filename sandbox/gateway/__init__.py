"""APISIX gateway simulator: apisix-ingress-controller's ApisixRoute sync + APISIX's data plane
and prometheus plugin, in one aiohttp process (see ``app.Gateway``)."""

from sandbox.gateway.app import Gateway, GatewaySettings

__all__ = ["Gateway", "GatewaySettings"]
