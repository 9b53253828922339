"""The Grafana dashboard (``deploy/grafana/sluice.json``): well-formed, and every metric its
PromQL uses is one the services really export.

The exported names come from the services themselves: each of the five is started as a process
against a real nats-server and the simulated Kubernetes API (``sandbox.kube``: the watcher's
metrics exist only when it has a cluster to watch), and its ``/metrics`` is scraped; the
``# TYPE`` lines name every metric family, labeled ones without samples included.
"""

from __future__ import annotations

import ipaddress
import json
import pathlib
import random
import re

import pytest

from sandbox.kube.cluster import Cluster
from sandbox.kube.config import ClusterSettings
from tests.fixtures.nats import NatsServer
from tests.fixtures.services import REPO, SERVICES, ServiceFactory

DASHBOARD = REPO / "deploy" / "grafana" / "sluice.json"

# Metrics Prometheus itself adds to every scrape, not exported by any service.
PROMETHEUS_OWN = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}

# PromQL functions, aggregations, operators and modifiers: never metric names.
PROMQL_WORDS = {
    "abs", "absent", "absent_over_time", "and", "avg", "avg_over_time", "bool", "bottomk",
    "by", "ceil", "changes", "clamp", "clamp_max", "clamp_min", "count", "count_over_time",
    "count_values", "delta", "deriv", "floor", "group", "group_left", "group_right",
    "histogram_quantile", "idelta", "ignoring", "increase", "inf", "irate", "label_join",
    "label_replace", "last_over_time", "max", "max_over_time", "min", "min_over_time", "nan",
    "offset", "on", "or", "quantile", "quantile_over_time", "rate", "resets", "round",
    "scalar", "sort", "sort_desc", "stddev", "stdvar", "sum", "sum_over_time", "time",
    "timestamp", "topk", "unless", "vector", "without",
}  # fmt: skip

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w$.:])[A-Za-z_:][\w:]*")
_NUMBER = re.compile(r"\b\d+(?:\.\d+)?(?:e[+-]?\d+)?\b", re.IGNORECASE)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, keywords or label names)."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub(" ", text)  # label matchers, with their label names
    text = _RANGE.sub(" ", text)  # range and subquery durations
    text = _GROUPING.sub(" ", text)  # by (le, name) / on (...) label lists
    text = re.sub(r"\$\{?\w+\}?", " ", text)  # Grafana variables outside ranges
    text = _NUMBER.sub(" ", text)
    return {
        match.group()
        for match in _IDENT.finditer(text)
        if match.group().lower() not in PROMQL_WORDS
        and not text[match.end() :].lstrip().startswith("(")  # a function call
    }


def exported_names(exposition: str) -> set[str]:
    """Every series name a ``/metrics`` text can produce, from its ``# TYPE`` lines."""
    names: set[str] = set()
    for line in exposition.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split(" ", 3)
        names.add(name)
        if kind == "counter":
            names |= {name.removesuffix("_total"), name.removesuffix("_total") + "_total"}
        elif kind in ("histogram", "summary"):
            names |= {name + "_sum", name + "_count"}
            if kind == "histogram":
                names.add(name + "_bucket")
        elif kind == "info":
            names.add(name + "_info")
    return names


def load() -> dict:
    return json.loads(DASHBOARD.read_text())


def all_panels(dashboard: dict) -> list[dict]:
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found += panel.get("panels", [])  # panels inside collapsed rows
    return found


def exprs(dashboard: dict) -> list[str]:
    return [
        target["expr"]
        for panel in all_panels(dashboard)
        for target in panel.get("targets", [])
        if target.get("expr")
    ]


def variable_queries(dashboard: dict) -> list[str]:
    """The series selector of every ``label_values(<selector>, <label>)`` variable."""
    queries = []
    for variable in dashboard["templating"]["list"]:
        query = variable.get("query")
        query = query.get("query", "") if isinstance(query, dict) else query or ""
        match = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", query)
        if match:
            queries.append(match.group(1))
    return queries


def test_dashboard_is_well_formed() -> None:
    dashboard = load()
    assert dashboard["schemaVersion"] >= 36
    assert dashboard["uid"]
    assert dashboard["title"]
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for name in ("namespace", "canary"):
        assert variables[name]["type"] == "query"
        assert "label_values(" in json.dumps(variables[name]["query"])
    panels = all_panels(dashboard)
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["gridPos"]["w"] > 0, panel["title"]
        assert panel["gridPos"]["h"] > 0, panel["title"]
        targets = panel.get("targets", [])
        assert targets, panel["title"]
        assert all(t.get("expr") for t in targets), panel["title"]
        assert all(metric_names(t["expr"]) for t in targets), panel["title"]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ('up{job=~"$job"}', {"up"}),
        (
            "histogram_quantile(0.95, sum by (le, subject) "
            '(rate(sluice_message_handling_seconds_bucket{job=~"$job"}[$__rate_interval])))',
            {"sluice_message_handling_seconds_bucket"},
        ),
        (
            "sum by (namespace) (increase(flagger_canary_successes_total[5m])) "
            "/ on (namespace) group_left flagger_canary_total",
            {"flagger_canary_successes_total", "flagger_canary_total"},
        ),
        ('label_replace(sluice_info, "x", "$1", "service", "(.*)") > 0', {"sluice_info"}),
        ("sum without (instance) (sluice_nats_connected) < bool 1e3", {"sluice_nats_connected"}),
    ],
)
def test_metric_names_are_extracted_from_promql(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_exported_names_follow_the_exposition_format() -> None:
    text = "\n".join(
        [
            "# TYPE sluice_messages_received_total counter",
            "# TYPE flagger_canary_successes counter",
            "# TYPE sluice_message_handling_seconds histogram",
            "# TYPE sluice_info gauge",
        ]
    )
    names = exported_names(text)
    assert {
        "sluice_messages_received_total",
        "flagger_canary_successes_total",
        "sluice_message_handling_seconds_bucket",
        "sluice_message_handling_seconds_count",
        "sluice_info",
    } <= names
    assert "sluice_message_handling_seconds_total" not in names


def cluster_settings() -> ClusterSettings:
    second = random.randint(100, 250)
    return ClusterSettings(
        pod_network=ipaddress.IPv4Network(f"127.{second}.0.0/17"),
        service_network=ipaddress.IPv4Network(f"127.{second}.128.0/17"),
        namespaces=("default", "kube-system", "test"),
        pod_ready_delay=0.1,
        bookmark_interval=1.0,
    )


async def scrape_all(
    nats_server: NatsServer, service: ServiceFactory, kubeconfig: pathlib.Path
) -> dict[str, set[str]]:
    """Start the five services, ready; the metric names each one's ``/metrics`` declares."""
    processes = [
        service(
            module,
            nats_server.url,
            SLUICE_KUBECONFIG=str(kubeconfig),
            SLUICE_KUBE_REQUEST_TIMEOUT_S="2",
            SLUICE_KUBE_WATCH_TIMEOUT_S="2",
        )
        for module in SERVICES
    ]
    exported: dict[str, set[str]] = {}
    for proc in processes:
        await proc.ready()
        status, text = await proc.get("/metrics")
        assert status == 200, proc.module
        exported[proc.module] = exported_names(text)
    for proc in processes:
        assert proc.terminate() == 0, proc.module
    return exported


@pytest.mark.integration
async def test_every_metric_in_the_dashboard_is_exported(
    nats_server: NatsServer, service: ServiceFactory, tmp_path: pathlib.Path
) -> None:
    async with Cluster(cluster_settings()) as cluster:
        kubeconfig = cluster.write_kubeconfig(tmp_path / "kubeconfig")
        exported = await scrape_all(nats_server, service, kubeconfig)
    known = set().union(*exported.values()) | PROMETHEUS_OWN
    dashboard = load()
    used = {name for expr in exprs(dashboard) for name in metric_names(expr)}
    used |= {name for query in variable_queries(dashboard) for name in metric_names(query)}
    assert used, "no metric names found in the dashboard"
    missing = sorted(used - known)
    assert not missing, f"the dashboard uses metrics no service exports: {missing}"
    # and it shows the bus and health metrics every service has
    for module, names in exported.items():
        assert {"sluice_nats_connected", "sluice_info"} <= names, module
    assert {"sluice_nats_connected", "sluice_messages_received_total", "up"} <= used


def test_dashboard_path_is_under_deploy() -> None:
    assert pathlib.Path("deploy/grafana/sluice.json") == DASHBOARD.relative_to(REPO)
