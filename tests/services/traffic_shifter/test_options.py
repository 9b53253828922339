"""The traffic-shifter's settings and Flagger's metadata rules (pure functions)."""

from __future__ import annotations

import pytest

from libs import errors, settings
from services.traffic_shifter import app
from services.traffic_shifter.kube import objects


def test_settings_give_flaggers_defaults_and_name_bad_variables() -> None:
    cfg = settings.from_env(app.Settings, {})
    assert cfg.kube_options() == objects.Options(
        selector_labels=("app", "name", "app.kubernetes.io/name"),
        include_label_prefixes=(),
        conflict_attempts=4,
    )
    cfg = settings.from_env(
        app.Settings,
        {
            "SLUICE_SELECTOR_LABELS": "app.kubernetes.io/name, app",
            "SLUICE_INCLUDE_LABEL_PREFIX": "*",
        },
    )
    assert cfg.kube_options().selector_labels == ("app.kubernetes.io/name", "app")
    assert cfg.kube_options().include_label_prefixes == ("*",)
    for variable, value in (
        ("SLUICE_KUBE_CONFLICT_ATTEMPTS", "0"),
        ("SLUICE_KUBE_REQUEST_TIMEOUT_S", "0"),
        ("SLUICE_SELECTOR_LABELS", " , "),
    ):
        with pytest.raises(errors.InvalidInput, match=f"^{variable}: expected"):
            settings.from_env(app.Settings, {variable: value})


def test_labels_are_copied_by_prefix_and_never_fluxs() -> None:
    labels = {"app": "podinfo", "team": "web", "kustomize.toolkit.fluxcd.io/name": "apps"}
    assert objects.include_by_prefix(labels, ()) == {}
    assert objects.include_by_prefix(labels, ("",)) == {}  # Flagger's default "" copies nothing
    assert objects.include_by_prefix(labels, ("te",)) == {"team": "web"}
    assert objects.include_by_prefix(labels, ("*",)) == {"app": "podinfo", "team": "web"}
    assert objects.primary_labels(labels, "app", "podinfo-primary") == {
        "app": "podinfo-primary",
        "team": "web",
    }


def test_the_rollout_id_changes_with_the_template_or_a_config_version_only() -> None:
    template = {"metadata": {"labels": {"app": "podinfo"}}, "spec": {"containers": []}}
    first = objects.rollout_id(template, {"configmap/a": "uid/1"})
    assert first == objects.rollout_id(template, {"configmap/a": "uid/1"})
    assert first != objects.rollout_id(template, {"configmap/a": "uid/2"})
    changed = {**template, "spec": {"containers": [{"name": "x"}]}}
    assert first != objects.rollout_id(changed, {"configmap/a": "uid/1"})
    annotations = objects.pod_annotations({"a": "1", "flagger-id": "old"}, first)
    assert annotations == {"a": "1", "flagger-id": first}
