"""Detached processes: start one in a session of its own, know it again later, stop it.

``spawn`` starts a program that outlives its parent (``start_new_session``: no controlling
terminal, its own process group, so a Ctrl-C in the shell that ran ``sandbox up`` never reaches
it), with stdin from ``/dev/null`` and stdout + stderr appended to a log file. A ``Handle`` is
plain data (pid + the kernel's start time of that pid) that can be written to a state file and
read back by another command: ``alive`` answers for *that* process, never for a later process
that was given the same pid, and a zombie (exited, not reaped yet — an orphan whose reaper is
slow or missing) counts as gone.

``stop_all`` sends SIGTERM to every group, waits up to a deadline, then SIGKILLs what is left.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence

STOP_TIMEOUT = 10.0  # seconds between SIGTERM and SIGKILL
KILL_TIMEOUT = 5.0  # seconds to wait for a SIGKILLed process to disappear
POLL_INTERVAL = 0.05  # seconds between liveness checks while waiting


@dataclasses.dataclass(frozen=True)
class Handle:
    pid: int
    start_ticks: int  # field 22 of /proc/<pid>/stat; 0 where /proc is missing


def _stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) of a pid, None when there is no such process."""
    try:
        raw = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[19])


def spawn(
    argv: Sequence[str],
    log_path: pathlib.Path,
    env: Mapping[str, str],
    cwd: pathlib.Path,
) -> Handle:
    """Start ``argv`` detached; ``FileNotFoundError``/``PermissionError`` when it cannot run."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    stat = _stat(process.pid)
    # Popen's object is dropped on purpose: the process outlives this one. Mark it as reaped
    # for the interpreter so it does not warn about a still-running child at exit.
    process.returncode = 0
    return Handle(process.pid, stat[1] if stat is not None else 0)


def alive(handle: Handle) -> bool:
    """Whether the process of ``handle`` still runs (zombies and reused pids do not count)."""
    stat = _stat(handle.pid)
    if stat is None:
        if pathlib.Path("/proc/self/stat").exists():
            return False
        try:  # no procfs (not Linux): the best we can do
            os.kill(handle.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, ticks = stat
    if state in ("Z", "X"):
        _reap(handle.pid)
        return False
    return handle.start_ticks == 0 or ticks == handle.start_ticks


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (``up`` that fails)."""
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def _signal(handle: Handle, sig: signal.Signals) -> None:
    if not alive(handle):
        return
    try:
        os.killpg(handle.pid, sig)  # the session leader's group: pid == pgid
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(handle.pid, sig)


def _wait_gone(handles: Sequence[Handle], timeout: float) -> list[Handle]:
    deadline = time.monotonic() + timeout
    left = [h for h in handles if alive(h)]
    while left and time.monotonic() < deadline:
        time.sleep(POLL_INTERVAL)
        left = [h for h in left if alive(h)]
    return left


def stop_all(
    handles: Sequence[Handle], timeout: float = STOP_TIMEOUT, kill_timeout: float = KILL_TIMEOUT
) -> list[Handle]:
    """SIGTERM all (in the order given), wait up to ``timeout``, SIGKILL the rest and wait up to
    ``kill_timeout``. Returns the handles that were SIGKILLed (empty when all stopped cleanly);
    ``RuntimeError`` when a process survives even SIGKILL."""
    for handle in handles:
        _signal(handle, signal.SIGTERM)
    stubborn = _wait_gone(handles, timeout)
    for handle in stubborn:
        _signal(handle, signal.SIGKILL)
    survivors = _wait_gone(stubborn, kill_timeout)
    if survivors:
        raise RuntimeError(f"processes survived SIGKILL: {[h.pid for h in survivors]}")
    return stubborn
