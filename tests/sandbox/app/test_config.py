"""Parsing a container spec into the app's behaviour (pure)."""

from __future__ import annotations

import logging

import pytest

from sandbox.app import config


@pytest.mark.parametrize(
    ("image", "version"),
    [
        ("ghcr.io/stefanprodan/podinfo:6.0.1", "6.0.1"),
        ("stefanprodan/podinfo", "latest"),
        ("localhost:5000/podinfo", "latest"),
        ("localhost:5000/podinfo:1.2", "1.2"),
        ("ghcr.io/stefanprodan/podinfo:6.0.1@sha256:abc", "6.0.1"),
        ("", "latest"),
    ],
)
def test_image_version(image: str, version: str) -> None:
    assert config.image_version(image) == version


def test_parse_flags_pflag_syntax() -> None:
    words = [
        "./podinfo",
        "--port=9898",
        "--level",
        "debug",
        "--random-error",
        "--ui-color=#fff",
        "-random-delay=false",
        "stray",
    ]
    assert config.parse_flags(words) == {
        "port": "9898",
        "level": "debug",
        "random-error": "true",
        "ui-color": "#fff",
        "random-delay": "false",
    }


def test_flagger_podinfo_container() -> None:
    container = {
        "image": "ghcr.io/stefanprodan/podinfo:6.0.1",
        "command": [
            "./podinfo",
            "--port=9898",
            "--port-metrics=9797",
            "--level=info",
            "--random-delay=false",
            "--random-error=false",
        ],
        "env": [{"name": "PODINFO_UI_COLOR", "value": "#34577c"}],
    }
    cfg = config.parse_container(container, hostname="podinfo-abc")
    assert (cfg.version, cfg.port, cfg.level, cfg.color, cfg.hostname) == (
        "6.0.1",
        9898,
        "info",
        "#34577c",
        "podinfo-abc",
    )
    assert not cfg.random_error
    assert not cfg.random_delay
    assert not cfg.never_ready
    assert cfg.message == "greetings from podinfo v6.0.1"
    assert cfg.problems == ()


def test_sandbox_env_knobs() -> None:
    env = [
        {"name": "SANDBOX_ERROR_RATE", "value": "0.25"},
        {"name": "SANDBOX_LATENCY_MS", "value": "150"},
        {"name": "SANDBOX_NEVER_READY", "value": "1"},
        {"name": "FROM_SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
    ]
    cfg = config.parse_container({"image": "podinfo:1", "env": env})
    assert cfg.error_rate == 0.25
    assert cfg.latency_s == pytest.approx(0.15)
    assert cfg.never_ready
    assert dict(cfg.env) == {
        "SANDBOX_ERROR_RATE": "0.25",
        "SANDBOX_LATENCY_MS": "150",
        "SANDBOX_NEVER_READY": "1",
    }


def test_podinfo_flags_and_env_fallback() -> None:
    cfg = config.parse_container(
        {
            "args": [
                "--random-error=true",
                "--random-delay",
                "--random-delay-max=3",
                "--random-delay-unit=ms",
                "--unready",
            ],
            "env": [
                {"name": "PODINFO_RANDOM_ERROR", "value": "false"},
                {"name": "PODINFO_UI_MESSAGE", "value": "hi"},
            ],
        }
    )
    assert cfg.random_error  # the flag wins over the environment (viper)
    assert cfg.random_delay
    assert (cfg.random_delay_min, cfg.random_delay_max) == (0, 3)
    assert cfg.random_delay_unit_s == 0.001
    assert cfg.never_ready
    assert cfg.message == "hi"


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"SANDBOX_ERROR_RATE": "lots"}, "SANDBOX_ERROR_RATE"),
        ({"SANDBOX_ERROR_RATE": "1.5"}, "SANDBOX_ERROR_RATE"),
        ({"SANDBOX_ERROR_RATE": "nan"}, "SANDBOX_ERROR_RATE"),
        ({"SANDBOX_LATENCY_MS": "-3"}, "SANDBOX_LATENCY_MS"),
        ({"SANDBOX_NEVER_READY": "perhaps"}, "SANDBOX_NEVER_READY"),
        ({"PODINFO_PORT": "http"}, "PODINFO_PORT"),
    ],
)
def test_bad_values_are_ignored_and_logged_with_their_name(
    env: dict[str, str], named: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        cfg = config.parse_container({"env": [{"name": k, "value": v} for k, v in env.items()]})
    assert cfg.error_rate == 0.0
    assert cfg.latency_s == 0.0
    assert not cfg.never_ready
    assert cfg.port == 9898
    assert len(cfg.problems) == 1
    assert cfg.problems[0].startswith(named)
    assert named in caplog.text


def test_bad_flags_are_ignored() -> None:
    cfg = config.parse_container(
        {
            "args": [
                "--random-error=maybe",
                "--random-delay-unit=h",
                "--random-delay-min=9",
                "--random-delay-max=2",
            ]
        }
    )
    assert not cfg.random_error
    assert cfg.random_delay_unit_s == 1.0
    assert (cfg.random_delay_min, cfg.random_delay_max) == (0, 5)
    assert len(cfg.problems) == 3
