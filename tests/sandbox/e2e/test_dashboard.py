"""``sluice dashboard`` in a real browser: the tutorial's canary rolls out on the sandbox stack
while headless Chromium shows the dashboard, and the weight on the page follows the rollout.
A screenshot of the page mid-rollout is saved to ``test-output/dashboard.png``."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests import browser
from tests.fixtures.services import ServiceFactory
from tests.sandbox.e2e import rollouts, support

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

NAMESPACE = "dashboard"
KEY = f"{NAMESPACE}/podinfo"
SLUICE = str(pathlib.Path(sys.executable).parent / "sluice")
SCREENSHOT = support.REPO / "test-output" / "dashboard.png"


def field(name: str) -> str:
    """JavaScript: the text of the canary's ``data-field`` element, or null."""
    selector = json.dumps(f'[data-canary="{KEY}"][data-field="{name}"]')
    return f"(document.querySelector({selector}) || {{}}).textContent ?? null"


@pytest.fixture
def dashboard(stack: support.Stack) -> Iterator[str]:
    """``sluice dashboard`` on a free port against the stack's NATS; its URL."""
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.Popen(
        [SLUICE, "dashboard", "--listen", "127.0.0.1:0", "--nats-url", stack.env["NATS_URL"]],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=support.REPO,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the URL, printed once it listens
        if not line.startswith("sluice dashboard: http://"):
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"sluice dashboard did not start: {line}{err}")
        yield line.split()[2]
        proc.terminate()
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "Traceback" not in err, err
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


async def test_the_page_follows_a_rollout(
    stack: support.Stack, service: ServiceFactory, dashboard: str
) -> None:
    await rollouts.start(stack, service)
    await rollouts.initialized(stack, NAMESPACE, analysis_changes={"interval": "2s"})
    async with browser.launch() as chromium:
        page = await chromium.new_page()
        await page.goto(dashboard)
        assert await page.evaluate("document.getElementById('mode').textContent") == "read-only"
        await page.wait_for(field("phase"), lambda p: p == "Initialized", 60, "the card")
        assert await page.evaluate(field("max-weight")) == "50"
        buttons = f"document.querySelectorAll('article[data-canary=\"{KEY}\"] button').length"
        assert await page.evaluate(buttons) == 0  # read-only: no actions

        first = int(await page.evaluate(field("weight")))
        await rollouts.new_image(stack, NAMESPACE)
        seen = [first]

        def advanced(value: str | None) -> bool:
            if value is not None and int(value) != seen[-1]:
                seen.append(int(value))
            return seen[-1] >= 30

        await page.wait_for(field("weight"), advanced, 120, "the weight on the page to reach 30")
        assert len(seen) >= 2
        assert seen == sorted(seen), f"the weight went back while advancing: {seen}"
        assert seen[0] < seen[-1]
        assert await page.evaluate(field("phase")) == "Progressing"
        history = await page.evaluate(
            f'Number(document.querySelector(\'[data-canary="{KEY}"][data-field="sparkline"]\')'
            ".dataset.points)"
        )
        assert history >= 2  # the sparkline has the steps so far
        events = await page.evaluate(field("events"))
        assert "Advance podinfo.dashboard canary weight" in events
        metrics = await page.evaluate(
            f"[...document.querySelectorAll('article[data-canary=\"{KEY}\"] tr[data-metric]')]"
            ".map(r => r.dataset.metric + ':' + r.className)"
        )
        assert "request-success-rate:pass" in metrics
        await page.screenshot(SCREENSHOT)
        print(f"\nscreenshot of the dashboard mid-rollout: {SCREENSHOT}")

        # and on to the end, live
        await page.wait_for(field("phase"), lambda p: p == "Succeeded", 180, "Succeeded")
        await page.wait_for(
            field("events"), lambda t: "Promotion completed!" in (t or ""), 30, "the event log"
        )
        assert not [c for c in chromium.console if c.startswith("exception")], chromium.console
