"""What a cluster with APISIX and Flagger's loadtester installed already holds, created in the
simulator by ``sandbox up`` over its REST API.

* namespace ``apisix``, Service ``apisix-gateway`` port 80 (``http``) → the gateway's data plane;
* namespace ``test``, Service ``flagger-loadtester`` port 80 (``http``) → 127.0.0.1:LOADTESTER_PORT,
  where the webhook-runner's loadtester API will listen.

Both are selector-less Services with hand-written Endpoints (the simulator's endpoints controller
leaves those alone, as Kubernetes does), so the gateway and the name proxy resolve them to
processes outside the simulated pod network.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from sandbox import readiness

HOST = readiness.HOST
REQUEST_TIMEOUT = 5.0  # seconds per API request


class SeedError(Exception):
    """An object could not be created."""


MANAGED_BY = {"app.kubernetes.io/managed-by": "sluice-sandbox"}


def _selectorless(
    namespace: str, name: str, ip: str, port: int, labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """A Service ``name`` port 80 (``http``) without selector and its hand-written Endpoints."""
    meta = {"name": name, "namespace": namespace, "labels": {**labels, **MANAGED_BY}}
    return [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta,
            "spec": {
                "type": "ClusterIP",
                "ports": [{"name": "http", "port": 80, "targetPort": port, "protocol": "TCP"}],
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Endpoints",
            "metadata": meta,
            "subsets": [
                {
                    "addresses": [{"ip": ip}],
                    "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
                }
            ],
        },
    ]


def seed_objects(ports: Mapping[str, int]) -> list[dict[str, Any]]:
    namespaces = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": dict(MANAGED_BY)},
        }
        for name in ("apisix", "test")
    ]
    return [
        *namespaces,
        *_selectorless(
            "apisix", "apisix-gateway", HOST, ports["gateway"], {"app.kubernetes.io/name": "apisix"}
        ),
        *_selectorless(
            "test", "flagger-loadtester", HOST, ports["loadtester"], {"app": "flagger-loadtester"}
        ),
    ]


def _collection(obj: Mapping[str, Any]) -> str:
    plural = {"Namespace": "namespaces", "Service": "services", "Endpoints": "endpoints"}[
        obj["kind"]
    ]
    namespace = obj["metadata"].get("namespace")
    return f"/api/v1/namespaces/{namespace}/{plural}" if namespace else f"/api/v1/{plural}"


def seed(kube_url: str, ports: Mapping[str, int]) -> None:
    """Create ``seed_objects`` (an object that already exists is left as it is)."""
    for obj in seed_objects(ports):
        request = urllib.request.Request(
            kube_url + _collection(obj),
            data=json.dumps(obj).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            with readiness.DIRECT.open(request, timeout=REQUEST_TIMEOUT):
                pass
        except urllib.error.HTTPError as e:
            if e.code != 409:
                detail = e.read()[:300].decode(errors="replace")
                raise SeedError(
                    f"creating {obj['kind']} {obj['metadata']['name']}: HTTP {e.code}: {detail}"
                ) from e
        except (urllib.error.URLError, OSError) as e:
            raise SeedError(f"creating {obj['kind']} {obj['metadata']['name']}: {e}") from e
