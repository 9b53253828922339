"""Who a request comes from, and what it asks (the real server's RequestInfo).

The sandbox is not a security boundary: its credentials are plain text anyone can write. A
request names a ServiceAccount in either of two ways:

* a bearer token ``sandbox-sa:<namespace>:<name>`` (``service_account_token``) — what the
  Python client, curl or aiohttp send;
* a path prefix ``/sandbox-sa/<namespace>/<name>`` before the API path — for kubectl and every
  client-go program: over plain ``http://`` they send no credentials at all (clientcmd reads a
  kubeconfig's user only for ``https://`` servers), but they keep a server URL's path. The
  prefix is stripped before routing.

``kubeconfig.service_account_kubeconfig`` writes both. The request is then that
ServiceAccount's — user ``system:serviceaccount:<namespace>:<name>``, groups
``system:serviceaccounts``, ``system:serviceaccounts:<namespace>`` and
``system:authenticated`` — and RBAC (``authorization``) decides what it may do. Any other
request (no token, or the default kubeconfig's ``sandbox`` token) is cluster-admin, so tools
and tests that do not ask for an identity keep working unchanged. The ServiceAccount need not
exist.
"""

from __future__ import annotations

from collections.abc import Mapping

from sandbox.kube.authorization import AUTHENTICATED, Attributes, User
from sandbox.kube.store import StoreError

TOKEN_PREFIX = "sandbox-sa:"
PATH_PREFIX = "sandbox-sa"

# after /api/v1/namespaces/<ns>: these name a subresource of the namespace, not a resource
_NAMESPACE_SUBRESOURCES = ("status", "finalize")


class Unauthorized(StoreError):
    reason = "Unauthorized"
    code = 401


def service_account_token(namespace: str, name: str) -> str:
    """The bearer token the sandbox accepts for a ServiceAccount."""
    return f"{TOKEN_PREFIX}{namespace}:{name}"


def service_account_user(namespace: str, name: str) -> User:
    return User(
        f"system:serviceaccount:{namespace}:{name}",
        ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED),
    )


def service_account_path(namespace: str, name: str) -> str:
    """The server URL path that makes every request under it the ServiceAccount's."""
    return f"/{PATH_PREFIX}/{namespace}/{name}"


def _token_user(headers: Mapping[str, str]) -> User | None:
    header = headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith(TOKEN_PREFIX):
        return None
    namespace, sep, name = token[len(TOKEN_PREFIX) :].partition(":")
    if not sep or not namespace or not name or ":" in name:
        raise Unauthorized("Unauthorized")
    return service_account_user(namespace, name)


def authenticate(headers: Mapping[str, str], path: str = "/") -> tuple[User | None, str]:
    """The ServiceAccount a request names (None: the cluster admin), and its path without
    the identity prefix.

    A malformed ``sandbox-sa`` token or prefix, or a token and a prefix naming different
    ServiceAccounts, is 401 Unauthorized.
    """
    user = _token_user(headers)
    parts = path.split("/")  # ["", "sandbox-sa", ns, name, ...]
    if len(parts) > 1 and parts[1] == PATH_PREFIX:
        if len(parts) < 4 or not parts[2] or not parts[3]:
            raise Unauthorized("Unauthorized")
        by_path = service_account_user(parts[2], parts[3])
        if user is not None and user != by_path:
            raise Unauthorized("Unauthorized")
        return by_path, "/" + "/".join(parts[4:])
    return user, path


def _name_from_field_selector(selector: str) -> str:
    """The name a ``metadata.name=<x>`` field selector pins a list or watch to (or "")."""
    for term in selector.split(","):
        if "!=" in term:
            continue
        key, _, value = term.partition("=")
        if key.strip() == "metadata.name":
            return value.removeprefix("=").strip()
    return ""


def request_attributes(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """What a request asks, as RequestInfoFactory and the RBAC authorizer see it."""
    parts = [p for p in path.split("/") if p]
    is_api = len(parts) >= 3 and parts[0] == "api"
    is_apis = len(parts) >= 4 and parts[0] == "apis"
    if not (is_api or is_apis):
        return Attributes(verb=method.lower(), resource_request=False, path=path)
    group, rest = ("", parts[2:]) if is_api else (parts[1], parts[3:])
    namespace = ""
    if rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0]
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    verb = {
        "POST": "create",
        "PUT": "update",
        "PATCH": "patch",
        "DELETE": "delete",
        "GET": "get",
        "HEAD": "get",
    }.get(method.upper(), method.lower())
    if not name and verb == "get":
        verb = "list"
    if not name and verb == "delete":
        verb = "deletecollection"
    if verb == "list" and query.get("watch") in ("1", "true", "True"):
        verb = "watch"
    if not name and verb in ("list", "watch", "deletecollection"):
        name = _name_from_field_selector(query.get("fieldSelector", ""))
    return Attributes(
        verb=verb,
        api_group=group,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
        path=path,
    )
