"""The podinfo-like app that serves every simulated pod (see ``server`` and ``config``)."""

from sandbox.app.config import AppConfig, parse_container
from sandbox.app.server import PodApp

__all__ = ["AppConfig", "PodApp", "parse_container"]
