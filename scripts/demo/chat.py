"""The chat sink: an HTTP server standing in for Slack's incoming webhook, and how the demo reads
the messages Sluice's notifier posts to it."""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

SLACK_PATH = "/slack"


def slack_text(payload: Any) -> tuple[str, str]:
    """(text, colour) of a Slack webhook body (``attachments[0]``: text and fields, Slack's
    escaping undone); a body of another shape is shown as clipped JSON."""
    try:
        attachment = payload["attachments"][0]
        text = html.unescape(str(attachment["text"]))
        fields = [
            f"{html.unescape(str(f['title']))}: {html.unescape(str(f['value']))}"
            for f in attachment.get("fields") or ()
            if f.get("title") in ("Reason", "Failed checks")
        ]
        colour = str(attachment.get("color", ""))
    except (KeyError, IndexError, TypeError, AttributeError):
        return json.dumps(payload)[:200], ""
    return " · ".join([text, *fields]), colour


class ChatSink:
    """An HTTP server on 127.0.0.1 that records every JSON body POSTed to it (Slack's webhook
    answers "ok")."""

    def __init__(self, on_message: Callable[[Any], None]) -> None:
        self.on_message = on_message
        self.payloads: list[Any] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}{SLACK_PATH}"
        return self.url

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        try:
            payload: Any = json.loads(body)
        except ValueError:
            payload = {"raw": body[:200].decode(errors="replace")}
        self.payloads.append(payload)
        self.on_message(payload)
        return web.Response(text="ok")

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
