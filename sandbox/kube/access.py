"""The gate every API request passes: authentication, then RBAC for ServiceAccounts.

Requests of the cluster admin (no ServiceAccount identity: ``authentication``) pass untouched;
a ServiceAccount's request is allowed or answered 403 as the RBAC objects in the store say
(``authorization``). Also serves ``SelfSubjectAccessReview`` (``kubectl auth can-i``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from sandbox.kube import authentication, authorization
from sandbox.kube import registry as registry_mod
from sandbox.kube.store import Invalid, Store, StoreError

Obj = dict[str, Any]


class Forbidden(StoreError):
    """A 403 whose ``Status`` body is already built (``authorization.forbidden_status``)."""

    reason = "Forbidden"
    code = 403

    def __init__(self, body: Obj) -> None:
        super().__init__(body["message"])
        self.body = body


def policy(store: Store, namespace: str) -> authorization.Policy:
    """The RBAC objects that can matter for a request in ``namespace`` ("": cluster scope)."""

    def items(rtype: Any, ns: str | None) -> list[Obj]:
        return store.list(rtype, ns)[0]

    namespaced = bool(namespace)
    return authorization.Policy.of(
        roles=items(registry_mod.ROLES, namespace) if namespaced else (),
        cluster_roles=items(registry_mod.CLUSTER_ROLES, None),
        role_bindings=items(registry_mod.ROLE_BINDINGS, namespace) if namespaced else (),
        cluster_role_bindings=items(registry_mod.CLUSTER_ROLE_BINDINGS, None),
    )


def check(store: Store, user: authorization.User | None, request: web.Request, path: str) -> None:
    """Raise 403 unless RBAC lets ``user`` (None: the cluster admin) make the request.

    ``path`` is the request's path without an identity prefix (``authentication``).
    """
    if user is None:
        return
    attrs = authentication.request_attributes(request.method, path, request.query)
    if not authorization.authorize(policy(store, attrs.namespace), user, attrs):
        raise Forbidden(authorization.forbidden_status(user, attrs))


def self_subject_access_review(store: Store, user: authorization.User | None, body: Obj) -> Obj:
    """Answer a SelfSubjectAccessReview for the requesting user (the admin: always allowed)."""
    spec = body.get("spec") or {}
    res = spec.get("resourceAttributes")
    non_res = spec.get("nonResourceAttributes")
    if isinstance(res, dict):
        attrs = authorization.Attributes(
            verb=res.get("verb") or "",
            api_group=res.get("group") or "",
            resource=res.get("resource") or "",
            subresource=res.get("subresource") or "",
            namespace=res.get("namespace") or "",
            name=res.get("name") or "",
        )
    elif isinstance(non_res, dict):
        attrs = authorization.Attributes(
            verb=non_res.get("verb") or "", resource_request=False, path=non_res.get("path") or ""
        )
    else:
        raise Invalid(
            "SelfSubjectAccessReview.authorization.k8s.io is invalid: spec: one of "
            "resourceAttributes or nonResourceAttributes must be set",
            kind="SelfSubjectAccessReview",
            group="authorization.k8s.io",
        )
    allowed = user is None or authorization.authorize(
        policy(store, attrs.namespace if attrs.resource_request else ""), user, attrs
    )
    result: Obj = {"allowed": allowed}
    if user is None:
        result["reason"] = "the sandbox's cluster admin may do anything"
    return {
        "kind": "SelfSubjectAccessReview",
        "apiVersion": "authorization.k8s.io/v1",
        "metadata": {"creationTimestamp": None},
        "spec": spec,
        "status": result,
    }
