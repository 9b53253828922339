"""Sluice's metric extensions, written as ``templateVariables`` so a Canary stays Flagger YAML.

Flagger's CRD accepts any string map as a metric's ``templateVariables`` (on builtin and
template metrics alike) and rejects unknown fields, so Sluice reads its own options from keys
of that map under the ``sluice.`` prefix:

* ``sluice.dryRun: "true"`` — the metric is measured and shown but never halts the canary.
* ``sluice.compareTo: primary`` — a relative check: the MetricTemplate's query runs for the
  canary and for the primary over the same window and ``canary - primary`` is checked against
  the metric's ``thresholdRange``. For the primary side ``{{ target }}`` and ``{{ service }}``
  get ``-primary`` appended and ``{{ variables.<key> }}`` reads ``primary.<key>`` when present.

Flagger itself ignores these keys (its templates only read the keys they name), so the same
Canary runs under Flagger as an ordinary metric that always halts on failure.

    dry_run(metric) -> bool
    compare_to(metric) -> str | None             # "primary" or None
    primary_variables(metric) -> dict[str, str]  # templateVariables for the primary side
    problems(metric, path) -> Iterator[(path, message)]   # validation rules
"""

from __future__ import annotations

from collections.abc import Iterator

from libs.model import analysis, structural

PREFIX = "sluice."
DRY_RUN = "sluice.dryRun"
COMPARE_TO = "sluice.compareTo"
KEYS: tuple[str, ...] = (DRY_RUN, COMPARE_TO)

PRIMARY = "primary"  # the only side a relative check compares to
PRIMARY_PREFIX = "primary."  # ``primary.<key>`` overrides ``<key>`` for the primary side
PRIMARY_SUFFIX = "-primary"  # Flagger's primary Deployment and Service: ``<name>-primary``

BOOLEANS = {"true": True, "false": False}


def is_extension(key: str) -> bool:
    """A ``templateVariables`` key Sluice reads itself (``sluice.*``)."""
    return key.startswith(PREFIX)


def dry_run(metric: analysis.Metric) -> bool:
    """Whether the metric only reports (``sluice.dryRun: "true"``)."""
    return BOOLEANS.get(metric.template_variables.get(DRY_RUN, "false"), False)


def compare_to(metric: analysis.Metric) -> str | None:
    """``"primary"`` for a relative check (``sluice.compareTo: primary``), else None."""
    value = metric.template_variables.get(COMPARE_TO)
    return PRIMARY if value == PRIMARY else None


def primary_variables(metric: analysis.Metric) -> dict[str, str]:
    """The ``templateVariables`` the primary side's query is rendered with: every key, with
    the value of ``primary.<key>`` where that exists."""
    found = dict(metric.template_variables)
    for key, value in metric.template_variables.items():
        if key.startswith(PRIMARY_PREFIX) and len(key) > len(PRIMARY_PREFIX):
            found[key[len(PRIMARY_PREFIX) :]] = value
    return found


def problems(metric: analysis.Metric, path: str) -> Iterator[tuple[str, str]]:
    """Problems of the metric's ``sluice.*`` keys; ``path`` is the metric's field path
    (``spec.analysis.metrics[0]``)."""
    base = f"{path}.templateVariables"
    for key, value in metric.template_variables.items():
        if not is_extension(key):
            continue
        where = f"{base}.{key}"
        if key not in KEYS:
            yield (
                where,
                f"unknown Sluice option, expected one of {', '.join(KEYS)}" + _suggest(key),
            )
        elif key == DRY_RUN and value not in BOOLEANS:
            yield where, f'expected "true" or "false", got {structural.show(value)}'
        elif key == COMPARE_TO:
            if value != PRIMARY:
                yield where, f'expected "{PRIMARY}", got {structural.show(value)}'
            elif metric.template_ref is None:
                got = "a builtin metric" if metric.is_builtin() else "an inline query"
                yield (
                    where,
                    "expected a metric with templateRef (a relative check renders a "
                    f"MetricTemplate's query for the canary and the primary), got {got}",
                )


def _suggest(key: str) -> str:
    """`` (did you mean "sluice.dryRun"?)``, judged on the part after the shared prefix."""
    options = [known[len(PREFIX) :] for known in KEYS]
    hint = structural.suggest(key[len(PREFIX) :], options)
    return hint.replace('"', f'"{PREFIX}', 1) if hint else ""


def only_extensions(variables: dict[str, str]) -> bool:
    """Whether every key is a ``sluice.*`` key (allowed on metrics without a templateRef)."""
    return all(is_extension(key) for key in variables)
