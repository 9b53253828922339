"""RBAC evaluation, request attributes and tokens — pure, without a server."""

from __future__ import annotations

from typing import Any

import pytest

from sandbox.kube import authentication
from sandbox.kube.authentication import Unauthorized, authenticate, request_attributes
from sandbox.kube.authorization import (
    Attributes,
    Policy,
    User,
    authorize,
    forbidden_status,
    rule_allows,
)

Obj = dict[str, Any]
RBAC = "rbac.authorization.k8s.io"
WATCHER = authentication.service_account_user("sluice", "watcher")
OTHER = authentication.service_account_user("sluice", "other")


def cluster_role(name: str, *rules: Obj) -> Obj:
    return {"kind": "ClusterRole", "metadata": {"name": name}, "rules": list(rules)}


def role(namespace: str, name: str, *rules: Obj) -> Obj:
    return {
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": list(rules),
    }


def sa(name: str = "watcher", namespace: str | None = "sluice") -> Obj:
    subject = {"kind": "ServiceAccount", "name": name}
    if namespace is not None:
        subject["namespace"] = namespace
    return subject


def crb(role_name: str, *subjects: Obj) -> Obj:
    return {
        "metadata": {"name": f"crb-{role_name}"},
        "roleRef": {"apiGroup": RBAC, "kind": "ClusterRole", "name": role_name},
        "subjects": list(subjects),
    }


def rb(namespace: str, kind: str, role_name: str, *subjects: Obj) -> Obj:
    return {
        "metadata": {"name": f"rb-{role_name}", "namespace": namespace},
        "roleRef": {"apiGroup": RBAC, "kind": kind, "name": role_name},
        "subjects": list(subjects),
    }


def res(
    verb: str, resource: str, group: str = "", namespace: str = "test", **kw: str
) -> Attributes:
    return Attributes(verb=verb, api_group=group, resource=resource, namespace=namespace, **kw)


READ_DEPLOYMENTS = {
    "apiGroups": ["apps"],
    "resources": ["deployments"],
    "verbs": ["get", "list", "watch"],
}


# ---------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("rule", "attrs", "allowed"),
    [
        (READ_DEPLOYMENTS, res("get", "deployments", "apps"), True),
        (READ_DEPLOYMENTS, res("list", "deployments", "apps"), True),
        (READ_DEPLOYMENTS, res("watch", "deployments", "apps"), True),
        (READ_DEPLOYMENTS, res("patch", "deployments", "apps"), False),
        (READ_DEPLOYMENTS, res("get", "deployments", ""), False),  # wrong group
        (READ_DEPLOYMENTS, res("get", "replicasets", "apps"), False),
        (READ_DEPLOYMENTS, res("get", "deployments", "apps", subresource="scale"), False),
        ({"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}, res("delete", "x", "y"), True),
        (
            {"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]},
            res("get", "a", "apps"),
            True,
        ),
        ({"apiGroups": ["*"], "resources": ["pods"], "verbs": ["get"]}, res("get", "pods"), True),
        (
            {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]},
            res("deletecollection", "deployments", "apps"),
            True,
        ),
        # subresources
        (
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
            res("patch", "deployments", "apps", subresource="scale", name="web"),
            True,
        ),
        (
            {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["patch"]},
            res("patch", "deployments", "apps", name="web"),
            False,
        ),
        (
            {"apiGroups": ["flagger.app"], "resources": ["*/status"], "verbs": ["update"]},
            res("update", "canaries", "flagger.app", subresource="status", name="c"),
            True,
        ),
        (
            {"apiGroups": ["flagger.app"], "resources": ["*"], "verbs": ["update"]},
            res("update", "canaries", "flagger.app", subresource="status", name="c"),
            True,
        ),
        # resourceNames
        (
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["a"],
                "verbs": ["get"],
            },
            res("get", "configmaps", name="a"),
            True,
        ),
        (
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["a"],
                "verbs": ["get"],
            },
            res("get", "configmaps", name="b"),
            False,
        ),
        (
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["a"],
                "verbs": ["list"],
            },
            res("list", "configmaps"),
            False,
        ),
        (
            {
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["a"],
                "verbs": ["create"],
            },
            res("create", "configmaps"),
            False,
        ),
        # a resource rule never matches a path, a path rule never a resource
        (
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            Attributes(verb="get", resource_request=False, path="/metrics"),
            True,
        ),
        (
            {"nonResourceURLs": ["/apis/*"], "verbs": ["get"]},
            Attributes(verb="get", resource_request=False, path="/apis/apps/v1"),
            True,
        ),
        (
            {"nonResourceURLs": ["/metrics"], "verbs": ["get"]},
            Attributes(verb="get", resource_request=False, path="/metricsx"),
            False,
        ),
        ({"nonResourceURLs": ["*"], "verbs": ["get"]}, res("get", "pods"), False),
        (
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            Attributes(verb="get", resource_request=False, path="/metrics"),
            False,
        ),
    ],
)
def test_rule_matching(rule: Obj, attrs: Attributes, allowed: bool) -> None:
    assert rule_allows(rule, attrs) is allowed


# ---------------------------------------------------------------------------- bindings


def test_cluster_role_binding_grants_every_namespace_and_the_cluster_scope() -> None:
    rule = {"apiGroups": ["", "apps"], "resources": ["deployments", "nodes"], "verbs": ["get"]}
    policy = Policy.of(
        cluster_roles=[cluster_role("r", rule)], cluster_role_bindings=[crb("r", sa())]
    )
    assert authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="a"))
    assert authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="b"))
    assert authorize(policy, WATCHER, res("get", "nodes", namespace=""))
    assert not authorize(policy, OTHER, res("get", "deployments", "apps"))


def test_role_binding_grants_its_namespace_only() -> None:
    policy = Policy.of(
        roles=[role("test", "r", READ_DEPLOYMENTS)],
        role_bindings=[rb("test", "Role", "r", sa())],
    )
    assert authorize(policy, WATCHER, res("list", "deployments", "apps", namespace="test"))
    assert not authorize(policy, WATCHER, res("list", "deployments", "apps", namespace="prod"))
    assert not authorize(policy, WATCHER, res("list", "deployments", "apps", namespace=""))


def test_role_binding_to_a_cluster_role_grants_it_in_the_binding_namespace() -> None:
    policy = Policy.of(
        cluster_roles=[cluster_role("view-deploy", READ_DEPLOYMENTS)],
        role_bindings=[rb("test", "ClusterRole", "view-deploy", sa())],
    )
    assert authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="test"))
    assert not authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="other"))


def test_role_ref_must_exist_and_a_role_of_another_namespace_does_not_count() -> None:
    policy = Policy.of(
        roles=[role("other", "r", READ_DEPLOYMENTS)],
        role_bindings=[rb("test", "Role", "r", sa()), rb("test", "ClusterRole", "missing", sa())],
    )
    assert not authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="test"))


def test_cluster_role_binding_cannot_reference_a_role() -> None:
    binding = crb("r", sa())
    binding["roleRef"]["kind"] = "Role"
    policy = Policy.of(roles=[role("test", "r", READ_DEPLOYMENTS)], cluster_role_bindings=[binding])
    assert not authorize(policy, WATCHER, res("get", "deployments", "apps"))


def test_service_account_subject_namespace_defaults_to_the_binding_namespace() -> None:
    policy = Policy.of(
        roles=[role("sluice", "r", READ_DEPLOYMENTS)],
        role_bindings=[rb("sluice", "Role", "r", sa(namespace=None))],
    )
    assert authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="sluice"))
    # a ClusterRoleBinding has no namespace to default to
    policy = Policy.of(
        cluster_roles=[cluster_role("r", READ_DEPLOYMENTS)],
        cluster_role_bindings=[crb("r", sa(namespace=None))],
    )
    assert not authorize(policy, WATCHER, res("get", "deployments", "apps", namespace="sluice"))


@pytest.mark.parametrize(
    ("subject", "allowed"),
    [
        ({"kind": "Group", "name": "system:serviceaccounts"}, True),
        ({"kind": "Group", "name": "system:serviceaccounts:sluice"}, True),
        ({"kind": "Group", "name": "system:serviceaccounts:other"}, False),
        ({"kind": "Group", "name": "system:authenticated"}, True),
        ({"kind": "User", "name": "system:serviceaccount:sluice:watcher"}, True),
        ({"kind": "User", "name": "watcher"}, False),
        ({"kind": "ServiceAccount", "name": "watcher", "namespace": "other"}, False),
    ],
)
def test_subjects(subject: Obj, allowed: bool) -> None:
    policy = Policy.of(
        cluster_roles=[cluster_role("r", READ_DEPLOYMENTS)],
        cluster_role_bindings=[crb("r", subject)],
    )
    assert authorize(policy, WATCHER, res("get", "deployments", "apps")) is allowed


def test_non_resource_urls_count_through_cluster_role_bindings_only() -> None:
    metrics = cluster_role("m", {"nonResourceURLs": ["/metrics"], "verbs": ["get"]})
    path = Attributes(verb="get", resource_request=False, path="/metrics")
    via_rb = Policy.of(
        cluster_roles=[metrics], role_bindings=[rb("sluice", "ClusterRole", "m", sa())]
    )
    via_crb = Policy.of(cluster_roles=[metrics], cluster_role_bindings=[crb("m", sa())])
    assert not authorize(via_rb, WATCHER, path)
    assert authorize(via_crb, WATCHER, path)


@pytest.mark.parametrize(
    "path", ["/api", "/api/v1", "/apis", "/apis/apps/v1", "/openapi/v3", "/version", "/healthz"]
)
def test_discovery_is_allowed_to_every_authenticated_user(path: str) -> None:
    attrs = Attributes(verb="get", resource_request=False, path=path)
    assert authorize(Policy(), WATCHER, attrs)
    assert not authorize(
        Policy(), WATCHER, Attributes(verb="post", resource_request=False, path=path)
    )
    assert not authorize(Policy(), User("anonymous"), attrs)


def test_self_subject_access_reviews_are_allowed_and_nothing_else() -> None:
    review = res("create", "selfsubjectaccessreviews", "authorization.k8s.io", namespace="")
    assert authorize(Policy(), WATCHER, review)
    assert not authorize(Policy(), WATCHER, res("list", "pods"))


# ---------------------------------------------------------------------------- 403 bodies


def test_forbidden_status_of_a_named_object() -> None:
    attrs = res("patch", "deployments", "apps", name="podinfo")
    assert forbidden_status(WATCHER, attrs) == {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'deployments.apps "podinfo" is forbidden: User '
        '"system:serviceaccount:sluice:watcher" cannot patch resource "deployments" in API '
        'group "apps" in the namespace "test"',
        "reason": "Forbidden",
        "details": {"name": "podinfo", "group": "apps", "kind": "deployments"},
        "code": 403,
    }


@pytest.mark.parametrize(
    ("attrs", "message", "details"),
    [
        (
            res("list", "deployments", "apps"),
            'deployments.apps is forbidden: User "system:serviceaccount:sluice:watcher" cannot '
            'list resource "deployments" in API group "apps" in the namespace "test"',
            {"group": "apps", "kind": "deployments"},
        ),
        (
            res("list", "nodes", namespace=""),
            'nodes is forbidden: User "system:serviceaccount:sluice:watcher" cannot list '
            'resource "nodes" in API group "" at the cluster scope',
            {"kind": "nodes"},
        ),
        (
            res("get", "secrets", name="token"),
            'secrets "token" is forbidden: User "system:serviceaccount:sluice:watcher" cannot '
            'get resource "secrets" in API group "" in the namespace "test"',
            {"name": "token", "kind": "secrets"},
        ),
        (
            res("patch", "canaries", "flagger.app", name="c", subresource="status"),
            'canaries.flagger.app "c" is forbidden: User "system:serviceaccount:sluice:watcher" '
            'cannot patch resource "canaries/status" in API group "flagger.app" in the '
            'namespace "test"',
            {"name": "c", "group": "flagger.app", "kind": "canaries"},
        ),
        (
            Attributes(verb="get", resource_request=False, path="/metrics"),
            'forbidden: User "system:serviceaccount:sluice:watcher" cannot get path "/metrics"',
            {},
        ),
    ],
)
def test_forbidden_messages(attrs: Attributes, message: str, details: Obj) -> None:
    body = forbidden_status(WATCHER, attrs)
    assert body["message"] == message
    assert body["details"] == details


# ---------------------------------------------------------------------------- requests


@pytest.mark.parametrize(
    ("method", "path", "query", "expected"),
    [
        (
            "GET",
            "/apis/apps/v1/namespaces/test/deployments",
            {},
            res("list", "deployments", "apps"),
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/test/deployments",
            {"watch": "true"},
            res("watch", "deployments", "apps"),
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/test/deployments",
            {"watch": "1", "fieldSelector": "metadata.name=web"},
            res("watch", "deployments", "apps", name="web"),
        ),
        (
            "GET",
            "/apis/apps/v1/namespaces/test/deployments/web",
            {},
            res("get", "deployments", "apps", name="web"),
        ),
        ("GET", "/apis/apps/v1/deployments", {}, res("list", "deployments", "apps", namespace="")),
        ("POST", "/api/v1/namespaces/test/pods", {}, res("create", "pods")),
        ("PUT", "/api/v1/namespaces/test/pods/p", {}, res("update", "pods", name="p")),
        (
            "PATCH",
            "/apis/apps/v1/namespaces/test/deployments/web/scale",
            {},
            res("patch", "deployments", "apps", name="web", subresource="scale"),
        ),
        ("DELETE", "/api/v1/namespaces/test/pods/p", {}, res("delete", "pods", name="p")),
        ("DELETE", "/api/v1/namespaces/test/pods", {}, res("deletecollection", "pods")),
        ("GET", "/api/v1/namespaces", {}, res("list", "namespaces", namespace="")),
        ("GET", "/api/v1/namespaces/test", {}, res("get", "namespaces", name="test")),
        (
            "PUT",
            "/api/v1/namespaces/test/finalize",
            {},
            res("update", "namespaces", name="test", subresource="finalize"),
        ),
        (
            "GET",
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/system:x",
            {},
            res("get", "clusterroles", RBAC, namespace="", name="system:x"),
        ),
    ],
)
def test_request_attributes(
    method: str, path: str, query: dict[str, str], expected: Attributes
) -> None:
    got = request_attributes(method, path, query)
    assert got == Attributes(**{**expected.__dict__, "path": path})


@pytest.mark.parametrize("path", ["/api", "/apis/apps", "/apis/apps/v1", "/openapi/v3", "/version"])
def test_discovery_paths_are_non_resource_requests(path: str) -> None:
    attrs = request_attributes("GET", path, {})
    assert attrs == Attributes(verb="get", resource_request=False, path=path)


def test_tokens() -> None:
    token = authentication.service_account_token("sluice", "watcher")
    assert token == "sandbox-sa:sluice:watcher"
    user, path = authenticate({"Authorization": f"Bearer {token}"}, "/api/v1/pods")
    assert user == User(
        "system:serviceaccount:sluice:watcher",
        ("system:serviceaccounts", "system:serviceaccounts:sluice", "system:authenticated"),
    )
    assert path == "/api/v1/pods"
    assert authenticate({}, "/api") == (None, "/api")  # the cluster admin
    assert authenticate({"Authorization": "Bearer sandbox"}, "/api") == (None, "/api")
    for bad in ("sandbox-sa:", "sandbox-sa:sluice", "sandbox-sa::x", "sandbox-sa:a:b:c"):
        with pytest.raises(Unauthorized):
            authenticate({"Authorization": f"Bearer {bad}"}, "/api")


def test_path_prefix_names_the_service_account_and_is_stripped() -> None:
    prefix = authentication.service_account_path("sluice", "watcher")
    assert prefix == "/sandbox-sa/sluice/watcher"
    assert authenticate({}, prefix + "/apis/apps/v1") == (WATCHER, "/apis/apps/v1")
    assert authenticate({}, prefix) == (WATCHER, "/")
    token = {"Authorization": "Bearer sandbox-sa:sluice:watcher"}
    assert authenticate(token, prefix + "/api") == (WATCHER, "/api")
    with pytest.raises(Unauthorized):  # the token and the path disagree
        authenticate({"Authorization": "Bearer sandbox-sa:sluice:other"}, prefix + "/api")
    with pytest.raises(Unauthorized):
        authenticate({}, "/sandbox-sa/sluice")
