"""Schemas of the built-in kinds the simulator serves, in the CRDs' openAPI v3 form.

They say what a real API server's Go types say: which fields exist and what type each has.
``decoding`` walks an object against them (unknown fields, wrong types — the 400s a real
server's decoder gives) and the wording of those errors needs the Go names, carried in
``x-go-type`` (``v1.DeploymentSpec``, ``int32``, ``resource.Quantity`` ...).
Open sub-objects (``affinity``, a CRD's ``openAPIV3Schema``, HPA ``behavior`` ...) keep
unknown fields (``x-kubernetes-preserve-unknown-fields``); everything else is closed.

Semantic checks (names, selectors, port ranges, required fields) live in ``validation``.
"""

from __future__ import annotations

from typing import Any

from sandbox.kube import registry as registry_mod

Schema = dict[str, Any]

STRING: Schema = {"type": "string", "x-go-type": "string"}
BOOL: Schema = {"type": "boolean", "x-go-type": "bool"}
INT32: Schema = {"type": "integer", "format": "int32", "x-go-type": "int32"}
INT64: Schema = {"type": "integer", "format": "int64", "x-go-type": "int64"}
TIME: Schema = {"type": "string", "format": "date-time", "x-go-type": "v1.Time"}
BYTES: Schema = {"type": "string", "format": "byte", "x-go-type": "[]uint8"}
INT_OR_STRING: Schema = {"x-kubernetes-int-or-string": True, "x-go-type": "intstr.IntOrString"}
QUANTITY: Schema = {"x-kubernetes-int-or-string": True, "x-go-type": "resource.Quantity"}


def obj(go_type: str, **properties: Schema) -> Schema:
    """A closed object (a Go struct): only ``properties`` are known."""
    return {"type": "object", "x-go-type": go_type, "properties": properties}


def open_obj(go_type: str) -> Schema:
    """An object whose fields the simulator does not check (kept as sent)."""
    return {"type": "object", "x-go-type": go_type, "x-kubernetes-preserve-unknown-fields": True}


def arr(items: Schema) -> Schema:
    return {"type": "array", "items": items, "x-go-type": "[]" + items["x-go-type"]}


def dict_of(values: Schema) -> Schema:
    return {
        "type": "object",
        "additionalProperties": values,
        "x-go-type": "map[string]" + values["x-go-type"],
    }


STRINGS = arr(STRING)
STRING_MAP = dict_of(STRING)
QUANTITIES = dict_of(QUANTITY)

# ---------------------------------------------------------------------------- metadata

OWNER_REFERENCE = obj(
    "v1.OwnerReference",
    apiVersion=STRING,
    kind=STRING,
    name=STRING,
    uid=STRING,
    controller=BOOL,
    blockOwnerDeletion=BOOL,
)
MANAGED_FIELDS_ENTRY = obj(
    "v1.ManagedFieldsEntry",
    manager=STRING,
    operation=STRING,
    apiVersion=STRING,
    time=TIME,
    fieldsType=STRING,
    fieldsV1=open_obj("v1.FieldsV1"),
    subresource=STRING,
)
OBJECT_META = obj(
    "v1.ObjectMeta",
    name=STRING,
    generateName=STRING,
    namespace=STRING,
    selfLink=STRING,
    uid=STRING,
    resourceVersion=STRING,
    generation=INT64,
    creationTimestamp=TIME,
    deletionTimestamp=TIME,
    deletionGracePeriodSeconds=INT64,
    labels=STRING_MAP,
    annotations=STRING_MAP,
    ownerReferences=arr(OWNER_REFERENCE),
    finalizers=STRINGS,
    managedFields=arr(MANAGED_FIELDS_ENTRY),
)
OBJECT_REFERENCE = obj(
    "v1.ObjectReference",
    kind=STRING,
    namespace=STRING,
    name=STRING,
    uid=STRING,
    apiVersion=STRING,
    resourceVersion=STRING,
    fieldPath=STRING,
)
LOCAL_REFERENCE = obj("v1.LocalObjectReference", name=STRING)
LABEL_SELECTOR = obj(
    "v1.LabelSelector",
    matchLabels=STRING_MAP,
    matchExpressions=arr(
        obj("v1.LabelSelectorRequirement", key=STRING, operator=STRING, values=STRINGS)
    ),
)
CONDITION = obj(  # the union of the condition types of the served kinds' statuses
    "v1.Condition",
    type=STRING,
    status=STRING,
    observedGeneration=INT64,
    lastProbeTime=TIME,
    lastHeartbeatTime=TIME,
    lastTransitionTime=TIME,
    lastUpdateTime=TIME,
    reason=STRING,
    message=STRING,
)
CONDITIONS = arr(CONDITION)

# ---------------------------------------------------------------------------- pod spec

KEY_REF = {"name": STRING, "key": STRING, "optional": BOOL}
ENV_VAR = obj(
    "v1.EnvVar",
    name=STRING,
    value=STRING,
    valueFrom=obj(
        "v1.EnvVarSource",
        fieldRef=obj("v1.ObjectFieldSelector", apiVersion=STRING, fieldPath=STRING),
        resourceFieldRef=obj(
            "v1.ResourceFieldSelector", containerName=STRING, resource=STRING, divisor=QUANTITY
        ),
        configMapKeyRef=obj("v1.ConfigMapKeySelector", **KEY_REF),
        secretKeyRef=obj("v1.SecretKeySelector", **KEY_REF),
    ),
)
ENV_FROM = obj(
    "v1.EnvFromSource",
    prefix=STRING,
    configMapRef=obj("v1.ConfigMapEnvSource", name=STRING, optional=BOOL),
    secretRef=obj("v1.SecretEnvSource", name=STRING, optional=BOOL),
)
HTTP_GET = obj(
    "v1.HTTPGetAction",
    path=STRING,
    port=INT_OR_STRING,
    host=STRING,
    scheme=STRING,
    httpHeaders=arr(obj("v1.HTTPHeader", name=STRING, value=STRING)),
)
EXEC = obj("v1.ExecAction", command=STRINGS)
TCP_SOCKET = obj("v1.TCPSocketAction", port=INT_OR_STRING, host=STRING)
PROBE = obj(
    "v1.Probe",
    exec=EXEC,
    httpGet=HTTP_GET,
    tcpSocket=TCP_SOCKET,
    grpc=obj("v1.GRPCAction", port=INT32, service=STRING),
    initialDelaySeconds=INT32,
    timeoutSeconds=INT32,
    periodSeconds=INT32,
    successThreshold=INT32,
    failureThreshold=INT32,
    terminationGracePeriodSeconds=INT64,
)
LIFECYCLE_HANDLER = obj(
    "v1.LifecycleHandler",
    exec=EXEC,
    httpGet=HTTP_GET,
    tcpSocket=TCP_SOCKET,
    sleep=obj("v1.SleepAction", seconds=INT64),
)
SECURITY_CONTEXT = obj(
    "v1.SecurityContext",
    capabilities=obj("v1.Capabilities", add=STRINGS, drop=STRINGS),
    privileged=BOOL,
    seLinuxOptions=open_obj("v1.SELinuxOptions"),
    windowsOptions=open_obj("v1.WindowsSecurityContextOptions"),
    runAsUser=INT64,
    runAsGroup=INT64,
    runAsNonRoot=BOOL,
    readOnlyRootFilesystem=BOOL,
    allowPrivilegeEscalation=BOOL,
    procMount=STRING,
    seccompProfile=obj("v1.SeccompProfile", type=STRING, localhostProfile=STRING),
    appArmorProfile=obj("v1.AppArmorProfile", type=STRING, localhostProfile=STRING),
)
CONTAINER = obj(
    "v1.Container",
    name=STRING,
    image=STRING,
    command=STRINGS,
    args=STRINGS,
    workingDir=STRING,
    ports=arr(
        obj(
            "v1.ContainerPort",
            name=STRING,
            hostPort=INT32,
            containerPort=INT32,
            protocol=STRING,
            hostIP=STRING,
        )
    ),
    envFrom=arr(ENV_FROM),
    env=arr(ENV_VAR),
    resources=obj(
        "v1.ResourceRequirements",
        limits=QUANTITIES,
        requests=QUANTITIES,
        claims=arr(obj("v1.ResourceClaim", name=STRING, request=STRING)),
    ),
    resizePolicy=arr(obj("v1.ContainerResizePolicy", resourceName=STRING, restartPolicy=STRING)),
    restartPolicy=STRING,
    volumeMounts=arr(
        obj(
            "v1.VolumeMount",
            name=STRING,
            readOnly=BOOL,
            recursiveReadOnly=STRING,
            mountPath=STRING,
            subPath=STRING,
            mountPropagation=STRING,
            subPathExpr=STRING,
        )
    ),
    volumeDevices=arr(obj("v1.VolumeDevice", name=STRING, devicePath=STRING)),
    livenessProbe=PROBE,
    readinessProbe=PROBE,
    startupProbe=PROBE,
    lifecycle=obj(
        "v1.Lifecycle", postStart=LIFECYCLE_HANDLER, preStop=LIFECYCLE_HANDLER, stopSignal=STRING
    ),
    terminationMessagePath=STRING,
    terminationMessagePolicy=STRING,
    imagePullPolicy=STRING,
    securityContext=SECURITY_CONTEXT,
    stdin=BOOL,
    stdinOnce=BOOL,
    tty=BOOL,
)
KEY_TO_PATH = arr(obj("v1.KeyToPath", key=STRING, path=STRING, mode=INT32))
VOLUME = obj(
    "v1.Volume",
    name=STRING,
    configMap=obj(
        "v1.ConfigMapVolumeSource", name=STRING, items=KEY_TO_PATH, defaultMode=INT32, optional=BOOL
    ),
    secret=obj(
        "v1.SecretVolumeSource",
        secretName=STRING,
        items=KEY_TO_PATH,
        defaultMode=INT32,
        optional=BOOL,
    ),
    emptyDir=obj("v1.EmptyDirVolumeSource", medium=STRING, sizeLimit=QUANTITY),
    persistentVolumeClaim=obj(
        "v1.PersistentVolumeClaimVolumeSource", claimName=STRING, readOnly=BOOL
    ),
    hostPath=obj("v1.HostPathVolumeSource", path=STRING, type=STRING),
    # the many other volume sources are kept as sent
    projected=open_obj("v1.ProjectedVolumeSource"),
    downwardAPI=open_obj("v1.DownwardAPIVolumeSource"),
    csi=open_obj("v1.CSIVolumeSource"),
    ephemeral=open_obj("v1.EphemeralVolumeSource"),
    nfs=open_obj("v1.NFSVolumeSource"),
    image=open_obj("v1.ImageVolumeSource"),
)
POD_SPEC = obj(
    "v1.PodSpec",
    volumes=arr(VOLUME),
    initContainers=arr(CONTAINER),
    containers=arr(CONTAINER),
    ephemeralContainers=arr(open_obj("v1.EphemeralContainer")),
    restartPolicy=STRING,
    terminationGracePeriodSeconds=INT64,
    activeDeadlineSeconds=INT64,
    dnsPolicy=STRING,
    nodeSelector=STRING_MAP,
    serviceAccountName=STRING,
    serviceAccount=STRING,
    automountServiceAccountToken=BOOL,
    nodeName=STRING,
    hostNetwork=BOOL,
    hostPID=BOOL,
    hostIPC=BOOL,
    shareProcessNamespace=BOOL,
    securityContext=obj(
        "v1.PodSecurityContext",
        seLinuxOptions=open_obj("v1.SELinuxOptions"),
        windowsOptions=open_obj("v1.WindowsSecurityContextOptions"),
        runAsUser=INT64,
        runAsGroup=INT64,
        runAsNonRoot=BOOL,
        supplementalGroups=arr(INT64),
        supplementalGroupsPolicy=STRING,
        fsGroup=INT64,
        sysctls=arr(obj("v1.Sysctl", name=STRING, value=STRING)),
        fsGroupChangePolicy=STRING,
        seccompProfile=obj("v1.SeccompProfile", type=STRING, localhostProfile=STRING),
        appArmorProfile=obj("v1.AppArmorProfile", type=STRING, localhostProfile=STRING),
        seLinuxChangePolicy=STRING,
    ),
    imagePullSecrets=arr(LOCAL_REFERENCE),
    hostname=STRING,
    subdomain=STRING,
    affinity=open_obj("v1.Affinity"),
    schedulerName=STRING,
    tolerations=arr(
        obj(
            "v1.Toleration",
            key=STRING,
            operator=STRING,
            value=STRING,
            effect=STRING,
            tolerationSeconds=INT64,
        )
    ),
    hostAliases=arr(obj("v1.HostAlias", ip=STRING, hostnames=STRINGS)),
    priorityClassName=STRING,
    priority=INT32,
    dnsConfig=open_obj("v1.PodDNSConfig"),
    readinessGates=arr(obj("v1.PodReadinessGate", conditionType=STRING)),
    runtimeClassName=STRING,
    enableServiceLinks=BOOL,
    preemptionPolicy=STRING,
    overhead=QUANTITIES,
    topologySpreadConstraints=arr(open_obj("v1.TopologySpreadConstraint")),
    setHostnameAsFQDN=BOOL,
    os=obj("v1.PodOS", name=STRING),
    hostUsers=BOOL,
    schedulingGates=arr(obj("v1.PodSchedulingGate", name=STRING)),
    resourceClaims=arr(open_obj("v1.PodResourceClaim")),
    resources=open_obj("v1.ResourceRequirements"),
)
POD_TEMPLATE = obj("v1.PodTemplateSpec", metadata=OBJECT_META, spec=POD_SPEC)
IPS = arr(obj("v1.PodIP", ip=STRING))
CONTAINER_STATUS = obj(
    "v1.ContainerStatus",
    name=STRING,
    state=open_obj("v1.ContainerState"),
    lastState=open_obj("v1.ContainerState"),
    ready=BOOL,
    restartCount=INT32,
    image=STRING,
    imageID=STRING,
    containerID=STRING,
    started=BOOL,
    allocatedResources=QUANTITIES,
    resources=open_obj("v1.ResourceRequirements"),
    volumeMounts=arr(open_obj("v1.VolumeMountStatus")),
    user=open_obj("v1.ContainerUser"),
    allocatedResourcesStatus=arr(open_obj("v1.ResourceStatus")),
    stopSignal=STRING,
)
POD_STATUS = obj(
    "v1.PodStatus",
    observedGeneration=INT64,
    phase=STRING,
    conditions=CONDITIONS,
    message=STRING,
    reason=STRING,
    nominatedNodeName=STRING,
    hostIP=STRING,
    hostIPs=IPS,
    podIP=STRING,
    podIPs=IPS,
    startTime=TIME,
    initContainerStatuses=arr(CONTAINER_STATUS),
    containerStatuses=arr(CONTAINER_STATUS),
    ephemeralContainerStatuses=arr(CONTAINER_STATUS),
    qosClass=STRING,
    resize=STRING,
    resourceClaimStatuses=arr(open_obj("v1.PodResourceClaimStatus")),
)

# ---------------------------------------------------------------------------- kinds


def _kind(go_type: str, **properties: Schema) -> Schema:
    return obj(go_type, apiVersion=STRING, kind=STRING, metadata=OBJECT_META, **properties)


NAMESPACE = _kind(
    "v1.Namespace",
    spec=obj("v1.NamespaceSpec", finalizers=STRINGS),
    status=obj("v1.NamespaceStatus", phase=STRING, conditions=CONDITIONS),
)
POD = _kind("v1.Pod", spec=POD_SPEC, status=POD_STATUS)
SERVICE_PORT = obj(
    "v1.ServicePort",
    name=STRING,
    protocol=STRING,
    appProtocol=STRING,
    port=INT32,
    targetPort=INT_OR_STRING,
    nodePort=INT32,
)
SERVICE = _kind(
    "v1.Service",
    spec=obj(
        "v1.ServiceSpec",
        ports=arr(SERVICE_PORT),
        selector=STRING_MAP,
        clusterIP=STRING,
        clusterIPs=STRINGS,
        type=STRING,
        externalIPs=STRINGS,
        sessionAffinity=STRING,
        loadBalancerIP=STRING,
        loadBalancerSourceRanges=STRINGS,
        externalName=STRING,
        externalTrafficPolicy=STRING,
        healthCheckNodePort=INT32,
        publishNotReadyAddresses=BOOL,
        sessionAffinityConfig=open_obj("v1.SessionAffinityConfig"),
        ipFamilies=STRINGS,
        ipFamilyPolicy=STRING,
        allocateLoadBalancerNodePorts=BOOL,
        loadBalancerClass=STRING,
        internalTrafficPolicy=STRING,
        trafficDistribution=STRING,
    ),
    status=obj(
        "v1.ServiceStatus",
        loadBalancer=obj("v1.LoadBalancerStatus", ingress=arr(open_obj("v1.LoadBalancerIngress"))),
        conditions=CONDITIONS,
    ),
)
ENDPOINT_ADDRESS = obj(
    "v1.EndpointAddress", ip=STRING, hostname=STRING, nodeName=STRING, targetRef=OBJECT_REFERENCE
)
ENDPOINTS = _kind(
    "v1.Endpoints",
    subsets=arr(
        obj(
            "v1.EndpointSubset",
            addresses=arr(ENDPOINT_ADDRESS),
            notReadyAddresses=arr(ENDPOINT_ADDRESS),
            ports=arr(
                obj("v1.EndpointPort", name=STRING, port=INT32, protocol=STRING, appProtocol=STRING)
            ),
        )
    ),
)
CONFIGMAP = _kind("v1.ConfigMap", data=STRING_MAP, binaryData=dict_of(BYTES), immutable=BOOL)
SECRET = _kind("v1.Secret", data=dict_of(BYTES), stringData=STRING_MAP, type=STRING, immutable=BOOL)
SERVICE_ACCOUNT = _kind(
    "v1.ServiceAccount",
    secrets=arr(OBJECT_REFERENCE),
    imagePullSecrets=arr(LOCAL_REFERENCE),
    automountServiceAccountToken=BOOL,
)
MICRO_TIME: Schema = {"type": "string", "format": "date-time", "x-go-type": "v1.MicroTime"}
EVENT_SERIES = obj("v1.EventSeries", count=INT32, lastObservedTime=MICRO_TIME)
EVENT_SOURCE = obj("v1.EventSource", component=STRING, host=STRING)
EVENT = _kind(
    "v1.Event",
    involvedObject=OBJECT_REFERENCE,
    reason=STRING,
    message=STRING,
    source=EVENT_SOURCE,
    firstTimestamp=TIME,
    lastTimestamp=TIME,
    count=INT32,
    type=STRING,
    eventTime=MICRO_TIME,
    series=EVENT_SERIES,
    action=STRING,
    related=OBJECT_REFERENCE,
    reportingComponent=STRING,
    reportingInstance=STRING,
)
EVENT_V1 = _kind(
    "v1.Event",
    eventTime=MICRO_TIME,
    series=EVENT_SERIES,
    reportingController=STRING,
    reportingInstance=STRING,
    action=STRING,
    reason=STRING,
    regarding=OBJECT_REFERENCE,
    related=OBJECT_REFERENCE,
    note=STRING,
    type=STRING,
    deprecatedSource=EVENT_SOURCE,
    deprecatedFirstTimestamp=TIME,
    deprecatedLastTimestamp=TIME,
    deprecatedCount=INT32,
)
DEPLOYMENT = _kind(
    "v1.Deployment",
    spec=obj(
        "v1.DeploymentSpec",
        replicas=INT32,
        selector=LABEL_SELECTOR,
        template=POD_TEMPLATE,
        strategy=obj(
            "v1.DeploymentStrategy",
            type=STRING,
            rollingUpdate=obj(
                "v1.RollingUpdateDeployment", maxUnavailable=INT_OR_STRING, maxSurge=INT_OR_STRING
            ),
        ),
        minReadySeconds=INT32,
        revisionHistoryLimit=INT32,
        paused=BOOL,
        progressDeadlineSeconds=INT32,
    ),
    status=obj(
        "v1.DeploymentStatus",
        observedGeneration=INT64,
        replicas=INT32,
        updatedReplicas=INT32,
        readyReplicas=INT32,
        availableReplicas=INT32,
        unavailableReplicas=INT32,
        terminatingReplicas=INT32,
        conditions=CONDITIONS,
        collisionCount=INT32,
    ),
)
REPLICASET = _kind(
    "v1.ReplicaSet",
    spec=obj(
        "v1.ReplicaSetSpec",
        replicas=INT32,
        minReadySeconds=INT32,
        selector=LABEL_SELECTOR,
        template=POD_TEMPLATE,
    ),
    status=obj(
        "v1.ReplicaSetStatus",
        replicas=INT32,
        fullyLabeledReplicas=INT32,
        readyReplicas=INT32,
        availableReplicas=INT32,
        terminatingReplicas=INT32,
        observedGeneration=INT64,
        conditions=CONDITIONS,
    ),
)
METRIC_TARGET = obj(
    "v2.MetricTarget",
    type=STRING,
    value=QUANTITY,
    averageValue=QUANTITY,
    averageUtilization=INT32,
)
METRIC_IDENTIFIER = obj("v2.MetricIdentifier", name=STRING, selector=LABEL_SELECTOR)
CROSS_VERSION_REF = obj(
    "v2.CrossVersionObjectReference", kind=STRING, name=STRING, apiVersion=STRING
)
HPA = _kind(
    "v2.HorizontalPodAutoscaler",
    spec=obj(
        "v2.HorizontalPodAutoscalerSpec",
        scaleTargetRef=CROSS_VERSION_REF,
        minReplicas=INT32,
        maxReplicas=INT32,
        metrics=arr(
            obj(
                "v2.MetricSpec",
                type=STRING,
                object=obj(
                    "v2.ObjectMetricSource",
                    describedObject=CROSS_VERSION_REF,
                    target=METRIC_TARGET,
                    metric=METRIC_IDENTIFIER,
                ),
                pods=obj("v2.PodsMetricSource", metric=METRIC_IDENTIFIER, target=METRIC_TARGET),
                resource=obj("v2.ResourceMetricSource", name=STRING, target=METRIC_TARGET),
                containerResource=obj(
                    "v2.ContainerResourceMetricSource",
                    name=STRING,
                    target=METRIC_TARGET,
                    container=STRING,
                ),
                external=obj(
                    "v2.ExternalMetricSource", metric=METRIC_IDENTIFIER, target=METRIC_TARGET
                ),
            )
        ),
        behavior=open_obj("v2.HorizontalPodAutoscalerBehavior"),
    ),
    status=obj(
        "v2.HorizontalPodAutoscalerStatus",
        observedGeneration=INT64,
        lastScaleTime=TIME,
        currentReplicas=INT32,
        desiredReplicas=INT32,
        currentMetrics=arr(open_obj("v2.MetricStatus")),
        conditions=CONDITIONS,
    ),
)
CRD = _kind(
    "v1.CustomResourceDefinition",
    spec=obj(
        "v1.CustomResourceDefinitionSpec",
        group=STRING,
        names=obj(
            "v1.CustomResourceDefinitionNames",
            plural=STRING,
            singular=STRING,
            shortNames=STRINGS,
            kind=STRING,
            listKind=STRING,
            categories=STRINGS,
        ),
        scope=STRING,
        versions=arr(
            obj(
                "v1.CustomResourceDefinitionVersion",
                name=STRING,
                served=BOOL,
                storage=BOOL,
                deprecated=BOOL,
                deprecationWarning=STRING,
                schema=obj(
                    "v1.CustomResourceValidation",
                    openAPIV3Schema=open_obj("v1.JSONSchemaProps"),
                ),
                subresources=obj(
                    "v1.CustomResourceSubresources",
                    status=open_obj("v1.CustomResourceSubresourceStatus"),
                    scale=open_obj("v1.CustomResourceSubresourceScale"),
                ),
                additionalPrinterColumns=arr(
                    obj(
                        "v1.CustomResourceColumnDefinition",
                        name=STRING,
                        type=STRING,
                        format=STRING,
                        description=STRING,
                        priority=INT32,
                        jsonPath=STRING,
                    )
                ),
                selectableFields=arr(obj("v1.SelectableField", jsonPath=STRING)),
            )
        ),
        conversion=open_obj("v1.CustomResourceConversion"),
        preserveUnknownFields=BOOL,
    ),
    status=obj(
        "v1.CustomResourceDefinitionStatus",
        conditions=CONDITIONS,
        acceptedNames=open_obj("v1.CustomResourceDefinitionNames"),
        storedVersions=STRINGS,
    ),
)

SCHEMAS: dict[tuple[str, str, str], Schema] = {
    (r.group, r.version, r.plural): s
    for r, s in (
        (registry_mod.NAMESPACES, NAMESPACE),
        (registry_mod.PODS, POD),
        (registry_mod.SERVICES, SERVICE),
        (registry_mod.ENDPOINTS, ENDPOINTS),
        (registry_mod.CONFIGMAPS, CONFIGMAP),
        (registry_mod.SECRETS, SECRET),
        (registry_mod.EVENTS, EVENT),
        (registry_mod.EVENTS_V1, EVENT_V1),
        (registry_mod.SERVICE_ACCOUNTS, SERVICE_ACCOUNT),
        (registry_mod.DEPLOYMENTS, DEPLOYMENT),
        (registry_mod.REPLICASETS, REPLICASET),
        (registry_mod.HPAS, HPA),
        (registry_mod.CRDS, CRD),
    )
}
