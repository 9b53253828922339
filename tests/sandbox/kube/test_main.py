"""``python -m sandbox.kube`` runs a cluster in the foreground and stops on SIGTERM."""

from __future__ import annotations

import asyncio
import pathlib
import signal
import sys

import aiohttp
import pytest
import yaml

pytestmark = pytest.mark.integration

REPO = pathlib.Path(__file__).resolve().parents[3]


async def test_runs_until_sigterm(tmp_path: pathlib.Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.kube",
        "--port",
        "0",
        "--kubeconfig",
        str(kubeconfig),
        "--pod-network",
        "127.77.0.0/16",
        "--no-controllers",
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        url = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        config = yaml.safe_load(kubeconfig.read_text())
        assert config["clusters"][0]["cluster"]["server"] == url
        assert config["current-context"] == "sandbox"
        async with aiohttp.ClientSession() as session, session.get(f"{url}/version") as response:
            assert (await response.json())["major"] == "1"
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
