"""The resource types the simulated API server serves: built-in kinds plus CRD-defined ones.

Which kinds carry ``metadata.generation`` follows Kubernetes 1.32 (the version the simulator
reports): Deployments, ReplicaSets, HPAs, CRDs and custom resources do; Pods (only from 1.33,
``PodObservedGenerationTracking``), Services, ConfigMaps, Secrets, Endpoints, Events,
ServiceAccounts, Namespaces and the RBAC kinds do not.

StatefulSets and PodDisruptionBudgets are stored and served only: no controller acts on them.
The RBAC kinds are enforced for ServiceAccount identities (``authorization``).

Built-in types are module constants so controllers can name them directly
(``registry.DEPLOYMENTS``); custom resources are added when their CRD is created and removed
when it is deleted.
"""

from __future__ import annotations

from sandbox.kube.store import ResourceType

NAMESPACES = ResourceType(
    group="",
    version="v1",
    kind="Namespace",
    plural="namespaces",
    singular="namespace",
    namespaced=False,
    short_names=("ns",),
    subresources=frozenset({"status"}),
    has_generation=False,
)
PODS = ResourceType(
    group="",
    version="v1",
    kind="Pod",
    plural="pods",
    singular="pod",
    short_names=("po",),
    categories=("all",),
    subresources=frozenset({"status"}),
    has_generation=False,
)
SERVICES = ResourceType(
    group="",
    version="v1",
    kind="Service",
    plural="services",
    singular="service",
    short_names=("svc",),
    categories=("all",),
    subresources=frozenset({"status"}),
    has_generation=False,
)
ENDPOINTS = ResourceType(
    group="",
    version="v1",
    kind="Endpoints",
    plural="endpoints",
    singular="endpoints",
    short_names=("ep",),
    has_generation=False,
)
CONFIGMAPS = ResourceType(
    group="",
    version="v1",
    kind="ConfigMap",
    plural="configmaps",
    singular="configmap",
    short_names=("cm",),
    has_generation=False,
)
SECRETS = ResourceType(
    group="",
    version="v1",
    kind="Secret",
    plural="secrets",
    singular="secret",
    has_generation=False,
)
EVENTS = ResourceType(
    group="",
    version="v1",
    kind="Event",
    plural="events",
    singular="event",
    short_names=("ev",),
    has_generation=False,
)
EVENTS_V1 = ResourceType(
    group="events.k8s.io",
    version="v1",
    kind="Event",
    plural="events",
    singular="event",
    short_names=("ev",),
    has_generation=False,
)
SERVICE_ACCOUNTS = ResourceType(
    group="",
    version="v1",
    kind="ServiceAccount",
    plural="serviceaccounts",
    singular="serviceaccount",
    short_names=("sa",),
    has_generation=False,
)
DEPLOYMENTS = ResourceType(
    group="apps",
    version="v1",
    kind="Deployment",
    plural="deployments",
    singular="deployment",
    short_names=("deploy",),
    categories=("all",),
    subresources=frozenset({"status", "scale"}),
)
REPLICASETS = ResourceType(
    group="apps",
    version="v1",
    kind="ReplicaSet",
    plural="replicasets",
    singular="replicaset",
    short_names=("rs",),
    categories=("all",),
    subresources=frozenset({"status", "scale"}),
)
HPAS = ResourceType(
    group="autoscaling",
    version="v2",
    kind="HorizontalPodAutoscaler",
    plural="horizontalpodautoscalers",
    singular="horizontalpodautoscaler",
    short_names=("hpa",),
    categories=("all",),
    subresources=frozenset({"status"}),
)
STATEFULSETS = ResourceType(  # stored only: no controller creates their pods
    group="apps",
    version="v1",
    kind="StatefulSet",
    plural="statefulsets",
    singular="statefulset",
    short_names=("sts",),
    categories=("all",),
    subresources=frozenset({"status", "scale"}),
)
PDBS = ResourceType(  # stored only: nothing evaluates disruptions
    group="policy",
    version="v1",
    kind="PodDisruptionBudget",
    plural="poddisruptionbudgets",
    singular="poddisruptionbudget",
    short_names=("pdb",),
    subresources=frozenset({"status"}),
)
_RBAC = "rbac.authorization.k8s.io"
ROLES = ResourceType(
    group=_RBAC, version="v1", kind="Role", plural="roles", singular="role", has_generation=False
)
CLUSTER_ROLES = ResourceType(
    group=_RBAC,
    version="v1",
    kind="ClusterRole",
    plural="clusterroles",
    singular="clusterrole",
    namespaced=False,
    has_generation=False,
)
ROLE_BINDINGS = ResourceType(
    group=_RBAC,
    version="v1",
    kind="RoleBinding",
    plural="rolebindings",
    singular="rolebinding",
    has_generation=False,
)
CLUSTER_ROLE_BINDINGS = ResourceType(
    group=_RBAC,
    version="v1",
    kind="ClusterRoleBinding",
    plural="clusterrolebindings",
    singular="clusterrolebinding",
    namespaced=False,
    has_generation=False,
)
CRDS = ResourceType(
    group="apiextensions.k8s.io",
    version="v1",
    kind="CustomResourceDefinition",
    plural="customresourcedefinitions",
    singular="customresourcedefinition",
    namespaced=False,
    short_names=("crd", "crds"),
    subresources=frozenset({"status"}),
)

BUILTIN: tuple[ResourceType, ...] = (
    NAMESPACES,
    PODS,
    SERVICES,
    ENDPOINTS,
    CONFIGMAPS,
    SECRETS,
    EVENTS,
    SERVICE_ACCOUNTS,
    EVENTS_V1,
    DEPLOYMENTS,
    REPLICASETS,
    STATEFULSETS,
    HPAS,
    PDBS,
    ROLES,
    CLUSTER_ROLES,
    ROLE_BINDINGS,
    CLUSTER_ROLE_BINDINGS,
    CRDS,
)


class Registry:
    """Lookup of served resource types by (group, plural[, version]) and by (apiVersion, kind).

    A group/resource may be served in several versions (a CRD with more than one served
    version); ``get`` without a version answers the preferred one, the first added.
    """

    def __init__(self, types: tuple[ResourceType, ...] = BUILTIN) -> None:
        self._by_plural: dict[tuple[str, str], ResourceType] = {}
        self._versions: dict[tuple[str, str, str], ResourceType] = {}
        self.generation = 0  # bumped on every change, so discovery documents can be cached
        for rtype in types:
            self.add(rtype)

    def add(self, rtype: ResourceType) -> None:
        self._versions[(rtype.group, rtype.plural, rtype.version)] = rtype
        preferred = self._by_plural.get((rtype.group, rtype.plural))
        if preferred is None or preferred.version == rtype.version:
            self._by_plural[(rtype.group, rtype.plural)] = rtype
        self.generation += 1

    def remove(self, group: str, plural: str) -> None:
        self._by_plural.pop((group, plural), None)
        for key in [k for k in self._versions if k[:2] == (group, plural)]:
            del self._versions[key]
        self.generation += 1

    def get(self, group: str, plural: str, version: str | None = None) -> ResourceType | None:
        if version is None:
            return self._by_plural.get((group, plural))
        return self._versions.get((group, plural, version))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        for rtype in self._versions.values():
            if rtype.group == group and rtype.kind == kind and rtype.version == version:
                return rtype
        return None

    def all(self) -> list[ResourceType]:
        """Every served type, each version of a multi-version resource once."""
        return list(self._versions.values())
