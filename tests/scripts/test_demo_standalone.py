"""``make demo-standalone``: the two rollouts on plain APISIX through its Admin API, run whole
as a user runs it (a subprocess, no Kubernetes simulator)."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_make_demo_standalone_promotes_rolls_back_and_restores_the_route(
    tmp_path: pathlib.Path,
) -> None:
    root = tmp_path / "standalone"
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "scripts.demo_standalone", "--dir", str(root), "--interval", "2s"],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=540)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the standalone demo did not finish within 540s:\n{out}")
    logs = "\n".join(
        f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-20:])
        for log in sorted((root / "logs").glob("*.log"))
    )
    assert proc.returncode == 0, f"{out}\n{logs}"
    assert "rollout of 6.0.1: Succeeded" in out
    assert "promoted: upstream podinfo-stable now serves the canary's nodes" in out
    assert "rollout of 6.0.2: Failed" in out
    assert "route podinfo is exactly as it was before the canary" in out
    assert "standalone demo passed" in out
    assert not (root / "state.json").exists()  # nothing left running
