"""The tutorial's Canary as a model, with its analysis and status changed at will (shared by
the CLI tests that render canaries without a server)."""

from __future__ import annotations

import pathlib
from typing import Any

import yaml

from libs.model import canary as canary_model

MANIFEST = (
    pathlib.Path(__file__).resolve().parents[1] / "data" / "manifests" / "podinfo-canary.yaml"
)


def canary(status: dict[str, Any] | None = None, **analysis: Any) -> canary_model.Canary:
    """The seed Canary; ``analysis`` keys set (None: removed), ``status`` as given."""
    obj: dict[str, Any] = yaml.safe_load(MANIFEST.read_text())
    for key, value in analysis.items():
        if value is None:
            obj["spec"]["analysis"].pop(key, None)
        else:
            obj["spec"]["analysis"][key] = value
    if status is not None:
        obj["status"] = status
    return canary_model.parse_canary(obj)
