"""RBAC, evaluated as the real API server's RBAC authorizer does — a pure function of the
request's attributes, the user and the RBAC objects (plain dicts as stored).

* ClusterRoleBindings grant their ClusterRole's rules everywhere (every namespace and the
  cluster scope); RoleBindings grant a Role of their namespace, or a ClusterRole, in their
  namespace only.
* Subjects: ``ServiceAccount`` (namespace defaulting to the binding's), ``User`` and ``Group``.
* Rules: ``verbs``, ``apiGroups``, ``resources`` (``deployments/scale``, ``*/status``),
  ``resourceNames`` and ``nonResourceURLs`` (ClusterRoles through ClusterRoleBindings only,
  ``/apis/*`` prefixes); ``*`` is a wildcard everywhere.
* Built in, as a real cluster's default bindings (system:discovery, system:public-info-viewer,
  system:basic-user) grant every authenticated user: GET on the discovery, OpenAPI, version
  and health paths, and creating SelfSubjectAccessReviews / SelfSubjectRulesReviews.

Not modelled: aggregated ClusterRoles (``aggregationRule``), escalation checks when writing
RBAC objects, impersonation.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

Obj = dict[str, Any]

RBAC_GROUP = "rbac.authorization.k8s.io"
AUTHENTICATED = "system:authenticated"


@dataclasses.dataclass(frozen=True)
class User:
    name: str
    groups: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Attributes:
    """What the authorizer is asked about one request (Kubernetes' ``authorizer.Attributes``).

    A resource request names ``resource`` (plural), ``api_group`` ("" for core), maybe a
    ``subresource``, ``namespace`` and ``name``; a non-resource request only ``path``.
    """

    verb: str
    resource_request: bool = True
    api_group: str = ""
    resource: str = ""
    subresource: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""


@dataclasses.dataclass(frozen=True)
class Policy:
    """The RBAC objects in force (any iterable of stored dicts)."""

    roles: tuple[Obj, ...] = ()
    cluster_roles: tuple[Obj, ...] = ()
    role_bindings: tuple[Obj, ...] = ()
    cluster_role_bindings: tuple[Obj, ...] = ()

    @classmethod
    def of(
        cls,
        roles: Iterable[Obj] = (),
        cluster_roles: Iterable[Obj] = (),
        role_bindings: Iterable[Obj] = (),
        cluster_role_bindings: Iterable[Obj] = (),
    ) -> Policy:
        return cls(
            tuple(roles), tuple(cluster_roles), tuple(role_bindings), tuple(cluster_role_bindings)
        )


# what the default ClusterRoles bound to system:authenticated allow
DEFAULT_RULES: tuple[Obj, ...] = (
    {  # system:discovery, system:public-info-viewer
        "verbs": ["get"],
        "nonResourceURLs": [
            "/api",
            "/api/*",
            "/apis",
            "/apis/*",
            "/openapi",
            "/openapi/*",
            "/version",
            "/version/",
            "/healthz",
            "/livez",
            "/readyz",
        ],
    },
    {  # system:basic-user
        "verbs": ["create"],
        "apiGroups": ["authorization.k8s.io"],
        "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
    },
)


def _has(values: Any, wanted: str) -> bool:
    values = values or []
    return "*" in values or wanted in values


def _resource_matches(rule: Obj, attrs: Attributes) -> bool:
    combined = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    for resource in rule.get("resources") or []:
        if resource in ("*", combined):
            return True
        if attrs.subresource and resource == f"*/{attrs.subresource}":
            return True
    return False


def _url_matches(rule: Obj, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path):
            return True
        if url.endswith("*") and path.startswith(url[:-1]):
            return True
    return False


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    """Whether one PolicyRule allows the request."""
    if not _has(rule.get("verbs"), attrs.verb):
        return False
    if not attrs.resource_request:
        return _url_matches(rule, attrs.path)
    names = rule.get("resourceNames") or []
    return (
        _has(rule.get("apiGroups"), attrs.api_group)
        and _resource_matches(rule, attrs)
        and (not names or attrs.name in names)
    )


def _applies_to(subject: Obj, user: User, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return bool(name) and name == user.name
    if kind == "Group":
        return bool(name) and name in user.groups
    if kind == "ServiceAccount":
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"system:serviceaccount:{namespace}:{name}"
    return False


def _bound(binding: Obj, user: User) -> bool:
    namespace = (binding.get("metadata") or {}).get("namespace") or ""
    return any(_applies_to(s, user, namespace) for s in binding.get("subjects") or [])


def _find(objects: Iterable[Obj], name: str, namespace: str = "") -> Obj | None:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if meta.get("name") == name and (meta.get("namespace") or "") == namespace:
            return obj
    return None


def _role_rules(policy: Policy, role_ref: Obj, namespace: str) -> list[Obj]:
    if role_ref.get("apiGroup", RBAC_GROUP) != RBAC_GROUP:
        return []
    name = role_ref.get("name") or ""
    if role_ref.get("kind") == "ClusterRole":
        role = _find(policy.cluster_roles, name)
    elif role_ref.get("kind") == "Role" and namespace:
        role = _find(policy.roles, name, namespace)
    else:
        role = None
    return list((role or {}).get("rules") or [])


def applicable_rules(policy: Policy, user: User, namespace: str) -> list[Obj]:
    """Every rule granted to ``user`` for requests in ``namespace`` ("": cluster scope)."""
    rules = list(DEFAULT_RULES) if AUTHENTICATED in user.groups else []
    for binding in policy.cluster_role_bindings:
        if _bound(binding, user):
            rules += _role_rules(policy, binding.get("roleRef") or {}, "")
    if namespace:
        for binding in policy.role_bindings:
            if (binding.get("metadata") or {}).get("namespace") != namespace:
                continue
            if _bound(binding, user):
                # nonResourceURLs granted by a RoleBinding mean nothing (namespaced)
                rules += [
                    r
                    for r in _role_rules(policy, binding.get("roleRef") or {}, namespace)
                    if not r.get("nonResourceURLs")
                ]
    return rules


def authorize(policy: Policy, user: User, attrs: Attributes) -> bool:
    """Whether RBAC allows ``user`` the request ``attrs``."""
    namespace = attrs.namespace if attrs.resource_request else ""
    return any(rule_allows(rule, attrs) for rule in applicable_rules(policy, user, namespace))


def forbidden_reason(user: User, attrs: Attributes) -> str:
    """``User "..." cannot <verb> resource "..." in API group "..." ...`` (forbiddenMessage)."""
    if not attrs.resource_request:
        return f'User "{user.name}" cannot {attrs.verb} path "{attrs.path}"'
    resource = f"{attrs.resource}/{attrs.subresource}" if attrs.subresource else attrs.resource
    where = f'in the namespace "{attrs.namespace}"' if attrs.namespace else "at the cluster scope"
    return (
        f'User "{user.name}" cannot {attrs.verb} resource "{resource}" in API group '
        f'"{attrs.api_group}" {where}'
    )


def forbidden_status(user: User, attrs: Attributes) -> Obj:
    """The 403 ``Status`` the real server answers (apierrors.NewForbidden)."""
    reason = forbidden_reason(user, attrs)
    group_resource = attrs.resource + (f".{attrs.api_group}" if attrs.api_group else "")
    if not attrs.resource and not attrs.api_group:
        message = f"forbidden: {reason}"
    elif attrs.name:
        message = f'{group_resource} "{attrs.name}" is forbidden: {reason}'
    else:
        message = f"{group_resource} is forbidden: {reason}"
    details: Obj = {}
    if attrs.name:
        details["name"] = attrs.name
    if attrs.api_group:
        details["group"] = attrs.api_group
    if attrs.resource:
        details["kind"] = attrs.resource
    return {  # details is {} for a path, as the real server's
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": "Forbidden",
        "details": details,
        "code": 403,
    }
