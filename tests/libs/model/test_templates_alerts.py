import pytest

from libs.errors import InvalidInput
from libs.model import alerts, analysis, apisixroute, templates

QUERY = (
    'sum(rate(x{route=~"{{ namespace }}_{{route}}",code=~"{{ variables.codes }}"}[{{ interval }}]))'
)


def test_placeholders() -> None:
    assert templates.placeholders(QUERY) == ["namespace", "route", "variables.codes", "interval"]
    assert templates.template_variables(QUERY) == ["codes"]
    assert templates.unknown_placeholders(QUERY + "{{ canary }}{{ variables. }}") == [
        "canary",
        "variables.",
    ]


def test_render_query() -> None:
    rendered = templates.render_query(
        QUERY, {"namespace": "test", "route": "podinfo", "interval": "1m"}, {"codes": "5.."}
    )
    assert rendered == 'sum(rate(x{route=~"test_podinfo",code=~"5.."}[1m]))'


def test_render_query_missing_variable() -> None:
    with pytest.raises(InvalidInput, match="codes"):
        templates.render_query(QUERY, {"namespace": "t", "route": "r", "interval": "1m"})


def test_parse_metric_template() -> None:
    template = templates.parse_metric_template(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "MetricTemplate",
            "metadata": {"name": "t", "namespace": "n"},
            "spec": {"provider": {"type": "prometheus", "address": "http://p:9090"}, "query": "up"},
        }
    )
    assert template.spec.provider.type == "prometheus"
    assert (template.name, template.namespace) == ("t", "n")


def test_parse_alert_provider_defaults() -> None:
    provider = alerts.parse_alert_provider(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "AlertProvider",
            "metadata": {"name": "s"},
            "spec": {"type": "slack", "address": "https://hooks.slack.com/x"},
        }
    )
    assert provider.spec.channel_or_default() == "general"
    assert provider.spec.username_or_default() == "flagger"
    assert provider.namespace == "default"


def test_parse_alert_provider_lists_problems() -> None:
    with pytest.raises(InvalidInput) as caught:
        alerts.parse_alert_provider(
            {
                "apiVersion": "flagger.app/v1beta1",
                "kind": "AlertProvider",
                "metadata": {"name": "s", "namespace": "t"},
                "spec": {"type": "pager", "adress": "x"},
            }
        )
    assert str(caught.value).splitlines() == [
        's (AlertProvider, t): spec.type: expected one of "discord", "gchat", "msteams", "rocket", "slack", got "pager"',
        's (AlertProvider, t): spec.adress: unknown field (did you mean "address"?)',
    ]


S = analysis.Severity


@pytest.mark.parametrize(
    ("alert", "event", "receives"),
    [
        (S.INFO, S.INFO, True),
        (S.INFO, S.WARN, True),
        (S.INFO, S.ERROR, True),
        (S.WARN, S.INFO, False),
        (S.WARN, S.WARN, True),
        (S.WARN, S.ERROR, True),
        (S.ERROR, S.INFO, False),
        (S.ERROR, S.WARN, False),
        (S.ERROR, S.ERROR, True),
        (S.UNSET, S.INFO, True),  # Sluice: unset means info (Flagger never fires these)
    ],
)
def test_severity_routing(alert: S, event: S, receives: bool) -> None:
    assert alerts.receives(alert, event) is receives


def test_apisix_route_canary_rule() -> None:
    route = apisixroute.parse_apisix_route(
        {
            "apiVersion": "apisix.apache.org/v2",
            "kind": "ApisixRoute",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": {
                "http": [
                    {
                        "name": "two",
                        "match": {"paths": ["/a"]},
                        "backends": [
                            {"serviceName": "podinfo", "servicePort": 80},
                            {"serviceName": "other", "servicePort": "http"},
                        ],
                    },
                    {
                        "name": "one",
                        "match": {"paths": ["/*"], "exprs": []},
                        "backends": [{"serviceName": "podinfo", "servicePort": 80}],
                        "plugin_config_name": "common",
                        "plugins": [{"name": "prometheus", "enable": True, "config": {"a": [1]}}],
                    },
                ]
            },
        }
    )
    rule = route.canary_rule("podinfo")
    assert rule is not None
    assert rule.name == "one"
    assert rule.plugin_config_name == "common"
    assert route.canary_rule("nope") is None
    assert apisixroute.canary_route_name("podinfo", "podinfo") == "podinfo-podinfo-canary"


def test_apisix_builtin_queries_render_flaggers_text_for_the_seed_canary() -> None:
    seed = {"namespace": "test", "route": "podinfo", "target": "podinfo", "interval": "1m"}
    rendered = {
        name: templates.render_query(query, seed)
        for name, query in templates.APISIX_BUILTIN_QUERIES.items()
    }
    assert sorted(rendered) == sorted(analysis.BUILTIN_METRICS)
    assert rendered["request-success-rate"] == (
        'sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+",code!~"5.."}[1m]))'
        ' / sum(rate(apisix_http_status{route=~"test_podinfo-podinfo-canary_.+"}[1m])) * 100'
    )
    assert rendered["request-duration"] == (
        'histogram_quantile(0.99, sum(rate(apisix_http_latency_bucket{type=~"request",'
        'route=~"test_podinfo-podinfo-canary_.+"}[1m])) by (le))'
    )
