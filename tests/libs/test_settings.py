from __future__ import annotations

import pytest

from libs import errors, settings


class Example(settings.ServiceSettings, frozen=True, kw_only=True):
    reconcile_every_s: float = 5.0
    enabled: bool = True


def test_defaults_without_environment() -> None:
    cfg = settings.from_env(Example, {})
    assert cfg.nats_url == "nats://127.0.0.1:4222"
    assert cfg.reconcile_every_s == 5.0


def test_values_are_converted_from_strings() -> None:
    cfg = settings.from_env(
        Example,
        {
            "SLUICE_HEALTH_PORT": "8081",
            "SLUICE_RECONCILE_EVERY_S": "0.5",
            "SLUICE_ENABLED": "false",
            "OTHER": "x",
        },
    )
    assert (cfg.health_port, cfg.reconcile_every_s, cfg.enabled) == (8081, 0.5, False)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"SLUICE_HEALTH_PORT": "abc"}, 'SLUICE_HEALTH_PORT: expected an integer, got "abc"'),
        (
            {"SLUICE_RECONCILE_EVERY_S": "soon"},
            'SLUICE_RECONCILE_EVERY_S: expected a number, got "soon"',
        ),
        ({"SLUICE_ENABLED": "maybe"}, 'SLUICE_ENABLED: expected true or false, got "maybe"'),
        ({"SLUICE_HEALTH_PORT": "70000"}, "SLUICE_HEALTH_PORT: expected 0..65535, got 70000"),
        ({"SLUICE_STREAM_REPLICAS": "0"}, "SLUICE_STREAM_REPLICAS: expected 1..5, got 0"),
        ({"SLUICE_LOG_FORMAT": "xml"}, 'SLUICE_LOG_FORMAT: expected "text" or "json", got \'xml\''),
        (
            {"SLUICE_SHUTDOWN_GRACE_S": "30"},
            "SLUICE_SHUTDOWN_GRACE_S: expected less than hard_exit_s (25.0), got 30.0",
        ),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(errors.InvalidInput) as info:
        settings.from_env(Example, env)
    assert str(info.value) == message


def test_a_choice_names_its_choices() -> None:
    from services.notifier import app

    with pytest.raises(errors.InvalidInput) as info:
        settings.from_env(app.Settings, {"SLUICE_TEAMS_FORMAT": "cards"})
    assert str(info.value) == (
        'SLUICE_TEAMS_FORMAT: expected one of auto, messagecard, adaptivecard, got "cards"'
    )
