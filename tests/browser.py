"""A small headless-Chromium driver for tests: the DevTools protocol over aiohttp's websocket
client (no browser-automation dependency).

``async with launch() as browser: page = await browser.new_page()`` starts Debian's
``chromium`` with a throw-away profile and no proxy, reads the DevTools port it chose from
``DevToolsActivePort``, and gives pages that can ``goto``, ``evaluate`` JavaScript,
``wait_for`` a condition (polling, with a deadline) and ``screenshot`` to a PNG. Every wait has
a timeout, and Chromium is killed when the block ends, whatever happened.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import pathlib
import shutil
import signal
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

START_TIMEOUT_S = 30.0
COMMAND_TIMEOUT_S = 15.0


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("chromium not found: run `make setup` (scripts/ensure-system-tools.sh installs it)")


class BrowserError(Exception):
    pass


class Browser:
    """One Chromium process and its browser-level DevTools websocket."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        ws: aiohttp.ClientWebSocketResponse,
        log: pathlib.Path,
    ) -> None:
        self.proc = proc
        self.log = log
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.console: list[str] = []  # console messages and uncaught exceptions of every page
        self._reader = asyncio.create_task(self._read(), name="chromium-devtools-reader")

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                if "id" in data:
                    future = self._waiting.pop(data["id"], None)
                    if future is not None and not future.done():
                        future.set_result(data)
                else:
                    self._note(data)
        finally:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(BrowserError("the DevTools connection closed"))
            self._waiting.clear()

    def _note(self, data: dict[str, Any]) -> None:
        method, params = data.get("method"), data.get("params") or {}
        if method == "Runtime.consoleAPICalled":
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.console.append(f"console.{params.get('type')}: {' '.join(args)}")
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails") or {}
            exception = details.get("exception") or {}
            self.console.append(f"exception: {exception.get('description') or details.get('text')}")

    async def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = COMMAND_TIMEOUT_S,
    ) -> dict[str, Any]:
        ident = next(self._ids)
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        await self._ws.send_str(json.dumps(message))
        try:
            answer = await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise BrowserError(f"{method}: no answer from Chromium within {timeout}s") from None
        finally:
            self._waiting.pop(ident, None)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result") or {}
        return result

    async def new_page(self, width: int = 1280, height: int = 900) -> Page:
        target = await self.send("Target.createTarget", {"url": "about:blank"})
        attached = await self.send(
            "Target.attachToTarget", {"targetId": target["targetId"], "flatten": True}
        )
        page = Page(self, attached["sessionId"])
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
        )
        return page

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                self._ws.send_str(json.dumps({"id": 0, "method": "Browser.close"})), 2
            )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws.close(), 2)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader


class Page:
    """One tab, driven through its flattened DevTools session."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    async def send(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self.browser.send(method, params, session=self.session)

    async def goto(self, url: str, timeout: float = 30.0) -> None:
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise BrowserError(f"navigating to {url}: {result['errorText']}")
        await self.wait_for("document.readyState", lambda s: s == "complete", timeout, "page load")

    async def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (promises awaited); page errors raise."""
        result = await self.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
        )
        if result.get("exceptionDetails"):
            details = result["exceptionDetails"]
            text = (details.get("exception") or {}).get("description") or details.get("text")
            raise BrowserError(f"evaluating {expression!r}: {text}")
        return (result.get("result") or {}).get("value")

    async def wait_for(
        self,
        expression: str,
        predicate: Callable[[Any], bool],
        timeout: float,
        what: str,
        interval: float = 0.2,
    ) -> Any:
        """Evaluate ``expression`` until ``predicate`` holds; ``TimeoutError`` names ``what``,
        the last value and the page's console. (``interval`` is a polling period.)"""
        deadline = time.monotonic() + timeout
        while True:
            value = await self.evaluate(expression)
            if predicate(value):
                return value
            if time.monotonic() > deadline:
                console = "\n".join(self.browser.console[-20:])
                raise TimeoutError(
                    f"{what}: still {value!r} after {timeout}s\npage console:\n{console}"
                )
            await asyncio.sleep(interval)

    async def screenshot(self, path: pathlib.Path) -> pathlib.Path:
        shot = await self.send("Page.captureScreenshot", {"format": "png"})
        await asyncio.to_thread(_write, path, base64.b64decode(shot["data"]))
        return path


def _write(path: pathlib.Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


@contextlib.asynccontextmanager
async def launch(timeout: float = START_TIMEOUT_S) -> AsyncIterator[Browser]:
    """A headless Chromium for the duration of the block (killed at the end, always)."""
    profile = pathlib.Path(tempfile.mkdtemp(prefix="sluice-chromium-"))
    log = profile / "chromium.log"
    argv = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-extensions",
        "--no-proxy-server",
        "--hide-scrollbars",
        f"--user-data-dir={profile / 'profile'}",
        "--remote-debugging-address=127.0.0.1",
        "--remote-debugging-port=0",
        "about:blank",
    ]
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc: asyncio.subprocess.Process | None = None
    session: aiohttp.ClientSession | None = None
    browser: Browser | None = None
    try:
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env=env,
                start_new_session=True,  # its helpers form a process group we can kill at once
            )
        port_file = profile / "profile" / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while True:
            lines = port_file.read_text().split() if port_file.exists() else []
            if len(lines) >= 2:
                break
            if proc.returncode is not None:
                raise BrowserError(f"chromium exited ({proc.returncode}):\n{log.read_text()}")
            if time.monotonic() > deadline:
                raise BrowserError(f"chromium did not start within {timeout}s:\n{log.read_text()}")
            await asyncio.sleep(0.1)
        session = aiohttp.ClientSession(trust_env=False)
        ws = await session.ws_connect(
            f"ws://127.0.0.1:{lines[0]}{lines[1]}",
            timeout=aiohttp.ClientWSTimeout(ws_close=5),
            max_msg_size=0,
        )
        browser = Browser(proc, ws, log)
        yield browser
    finally:
        if browser is not None:
            await browser.close()
        if session is not None:
            await session.close()
        if proc is not None:
            if proc.returncode is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 5)
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(proc.wait(), 10)
            # helpers (renderer, zygote) left in its group
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(profile, ignore_errors=True)
