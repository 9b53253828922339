"""Which ConfigMaps and Secrets a pod spec uses and which are tracked: the one rule the
watcher (checksums, new revisions) and the traffic-shifter (``-primary`` copies) share."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from libs.model import configrefs
from libs.model.configrefs import ConfigRef

CONFIG_CASES: list[tuple[str, dict[str, Any], list[ConfigRef]]] = [
    ("nothing", {"containers": [{"name": "a", "image": "x"}]}, []),
    (
        "env valueFrom",
        {
            "containers": [
                {
                    "name": "a",
                    "env": [
                        {"name": "A", "value": "1"},
                        {"name": "B", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "b"}}},
                        {
                            "name": "C",
                            "valueFrom": {
                                "secretKeyRef": {"name": "s", "key": "c", "optional": True}
                            },
                        },
                        {"name": "D", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    ],
                }
            ]
        },
        [ConfigRef("configmap", "cm"), ConfigRef("secret", "s", optional=True)],
    ),
    (
        "envFrom in init containers too",
        {
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-s"}}]}],
            "containers": [{"name": "a", "envFrom": [{"configMapRef": {"name": "cm"}}]}],
        },
        [ConfigRef("configmap", "cm"), ConfigRef("secret", "init-s")],
    ),
    (
        "volumes and projected sources",
        {
            "containers": [{"name": "a"}],
            "volumes": [
                {"name": "v1", "configMap": {"name": "cm-vol"}},
                {"name": "v2", "secret": {"secretName": "s-vol", "optional": True}},
                {"name": "v3", "emptyDir": {}},
                {
                    "name": "v4",
                    "projected": {
                        "sources": [
                            {"configMap": {"name": "cm-proj"}},
                            {"secret": {"name": "s-proj"}},
                            {"serviceAccountToken": {"path": "token"}},
                        ]
                    },
                },
            ],
        },
        [
            ConfigRef("configmap", "cm-proj"),
            ConfigRef("configmap", "cm-vol"),
            ConfigRef("secret", "s-proj"),
            ConfigRef("secret", "s-vol", optional=True),
        ],
    ),
    (
        "required wins over optional, each config once",
        {
            "containers": [
                {"name": "a", "envFrom": [{"configMapRef": {"name": "cm", "optional": True}}]},
                {"name": "b", "envFrom": [{"configMapRef": {"name": "cm"}}]},
            ],
            "volumes": [{"name": "v", "configMap": {"name": "cm", "optional": True}}],
        },
        [ConfigRef("configmap", "cm")],
    ),
    (
        "a configmap and a secret of the same name are two configs",
        {
            "containers": [
                {
                    "name": "a",
                    "envFrom": [{"configMapRef": {"name": "x"}}, {"secretRef": {"name": "x"}}],
                }
            ]
        },
        [ConfigRef("configmap", "x"), ConfigRef("secret", "x")],
    ),
]


@pytest.mark.parametrize(
    ("pod_spec", "expected"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_config_refs(pod_spec: dict[str, Any], expected: list[ConfigRef]) -> None:
    assert configrefs.config_refs(pod_spec) == expected


def test_config_ref_keys_are_flaggers() -> None:
    assert ConfigRef("configmap", "a").key == "configmap/a"
    assert ConfigRef("secret", "b").key == "secret/b"


def test_every_slot_can_be_renamed_in_place() -> None:
    """What the traffic-shifter does to the primary's copy of the pod spec."""
    spec = copy.deepcopy(CONFIG_CASES[3][1])
    spec["initContainers"] = [{"name": "i", "envFrom": [{"secretRef": {"name": "init-s"}}]}]
    for slot in configrefs.slots(spec):
        slot.ref[slot.field] = f"{slot.name}-primary"
    assert [r.name for r in configrefs.config_refs(spec)] == [
        "cm-proj-primary",
        "cm-vol-primary",
        "init-s-primary",
        "s-proj-primary",
        "s-vol-primary",
    ]
    assert spec["volumes"][1]["secret"] == {"secretName": "s-vol-primary", "optional": True}


def annotated(value: str) -> dict[str, Any]:
    return {"metadata": {"annotations": {"flagger.app/config-tracking": value}}}


@pytest.mark.parametrize(
    ("value", "disabled"),
    [
        ("disabled", True),
        ("disable", True),  # Flagger tests the prefix "disable"
        ("disabled-for-now", True),
        ("Disabled", False),  # and is case-sensitive
        ("enabled", False),
        ("false", False),
        ("", False),
    ],
)
def test_tracking_is_disabled_as_flagger_reads_the_annotation(value: str, disabled: bool) -> None:
    assert configrefs.tracking_disabled(annotated(value)) is disabled
    assert configrefs.tracked("configmap", annotated(value)) is not disabled
    assert configrefs.tracked("secret", annotated(value)) is not disabled


def test_an_unannotated_config_is_tracked() -> None:
    assert not configrefs.tracking_disabled({"metadata": {}})
    assert configrefs.tracked("configmap", {})
    assert configrefs.tracked("secret", {"type": "Opaque"})


@pytest.mark.parametrize(
    ("secret_type", "is_tracked"),
    [
        (None, True),  # the API's default type is Opaque
        ("Opaque", True),
        ("kubernetes.io/basic-auth", True),
        ("kubernetes.io/ssh-auth", True),
        ("kubernetes.io/tls", True),
        ("kubernetes.io/dockerconfigjson", False),  # registry credentials: service accounts'
        ("kubernetes.io/dockercfg", False),
        ("kubernetes.io/service-account-token", False),
        ("example.com/custom", False),
    ],
)
def test_only_flaggers_secret_types_are_tracked(secret_type: str | None, is_tracked: bool) -> None:
    secret: dict[str, Any] = {"metadata": {"name": "s"}}
    if secret_type is not None:
        secret["type"] = secret_type
    assert configrefs.tracked("secret", secret) is is_tracked
    # a ConfigMap has no type: only the annotation counts
    assert configrefs.tracked("configmap", {"metadata": {"name": "s"}})
