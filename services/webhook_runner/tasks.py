"""Tasks of the loadtester API: what a webhook's ``metadata`` asks to run.

Flagger's rollout webhooks post ``{"metadata": {"type": "cmd", "cmd": "hey -z 1m ..."}}`` to
flagger-loadtester. Here:

=========================  ==============================================================
``cmd`` running ``hey``    Sluice's own load generator (``hey`` package; never a shell, never
                           a binary); asynchronous: 202 at once. A task with the same canary
                           and command still running — on any replica — is not started again.
``cmd`` running anything   shell-class: refused (403) unless the canary's namespace is in
else, ``bash``             ``SLUICE_LOADTESTER_SHELL_NAMESPACES``; then run with a time limit,
                           output capped, a minimal environment (no secrets of this service),
                           without a shell where the command needs none. ``bash`` blocks and
                           answers 200 or 500 like Flagger; ``cmd`` is asynchronous.
other types                400: Sluice does not run helm, kubectl, concord or ngrinder tasks
=========================  ==============================================================

A load test always logs hey's summary when it ends; ``logCmdOutput`` logs a shell-class task's
output (or hey's ``-o csv`` lines), ``returnCmdOutput`` returns a blocking task's output in the
answer, as flagger-loadtester does.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import os
import pathlib
import shlex
import signal
import socket
import time
from collections.abc import Coroutine, Mapping
from typing import Any

import msgspec
from nats.js.kv import KeyValue

from libs import bus, errors, lifecycle, logs, messages
from services.webhook_runner import hey

log = logging.getLogger(__name__)

TASK_TYPES = ("cmd", "bash")
_SHELL_CHARACTERS = set("|&;<>()$`\\\"'*?[]#~\n{}")
# what a shell-class task inherits from this process; nothing else (no SLUICE_* secrets)
_INHERITED_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """The HTTP answer to a task request."""

    status: int
    body: str = ""


@dataclasses.dataclass(frozen=True)
class Settings:
    shell_namespaces: frozenset[str]  # "*" allows every namespace
    task_timeout_s: float
    output_max_bytes: int
    data_dir: pathlib.Path | None  # where ``hey -D`` may read bodies; None: -D refused
    max_tasks: int
    max_workers: int  # hey -c beyond this is refused
    claim_ttl_s: float  # the ``sluice_tasks`` bucket's TTL: a claim is refreshed well within it
    # a running task refreshes its claim this often; a claim left unrefreshed for
    # ``STALE_HEARTBEATS`` of them belongs to a replica that died, and another may take it over
    claim_heartbeat_s: float = 2.0


def parse_bool(text: str | None) -> bool:
    """Go's ``strconv.ParseBool``, which flagger-loadtester uses; anything else is false."""
    return (text or "").strip() in ("1", "t", "T", "TRUE", "true", "True")


STALE_HEARTBEATS = 3  # missed refreshes after which a claim is taken over


class TaskRecord(msgspec.Struct, frozen=True, kw_only=True):
    """Value of a running task's key in ``sluice_tasks``: who runs it, since when, and when it
    last said so (a record without ``refreshed_at_ms``, from an older replica, reads as fresh
    and only expires with the bucket's TTL)."""

    canary: str
    command: str
    replica: str
    started_at_ms: int = msgspec.field(default_factory=messages.now_ms)
    refreshed_at_ms: int = msgspec.field(default_factory=messages.now_ms)


_RECORD = msgspec.json.Decoder(TaskRecord)


class TaskRunner:
    def __init__(
        self,
        rt: lifecycle.Runtime,
        kv: KeyValue,
        settings: Settings,
        metrics: hey.recording.Metrics,
    ) -> None:
        self.rt = rt
        self.kv = kv
        self.settings = settings
        self.metrics = metrics
        self.replica = f"{socket.gethostname()}/{os.getpid()}"
        self._running: dict[str, asyncio.Task[None]] = {}

    # --------------------------------------------------------------------- entry point

    async def submit(self, canary: messages.CanaryRef, metadata: Mapping[str, str]) -> Outcome:
        kind = metadata.get("type") or "cmd"
        command = metadata.get("cmd", "")
        name = f"{canary.name}.{canary.namespace}"
        if kind not in TASK_TYPES:
            return Outcome(
                400,
                f"unknown task type {logs.clip(kind, 40)}: Sluice's loadtester runs "
                f"{' and '.join(TASK_TYPES)} tasks",
            )
        if not command.strip():
            return Outcome(400, "cmd not found in metadata")
        words = _split(command)
        if kind == "cmd" and words and _program(words[0]) == "hey":
            return await self._load_test(
                canary, name, command, parse_bool(metadata.get("logCmdOutput"))
            )
        refusal = self._shell_refusal(kind, canary)
        if refusal is not None:
            return refusal
        if kind == "bash":
            return await self._run_blocking(
                name, command, parse_bool(metadata.get("returnCmdOutput"))
            )
        return self._start(
            name,
            command,
            self._run_command(name, command, words, parse_bool(metadata.get("logCmdOutput"))),
        )

    async def stop(self) -> None:
        """Cancel every running task (the service is stopping)."""
        tasks = list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # --------------------------------------------------------------------- load tests

    async def _load_test(
        self, canary: messages.CanaryRef, name: str, command: str, log_output: bool
    ) -> Outcome:
        try:
            options = hey.parsing.parse(command)
        except hey.parsing.UsageError as exc:
            return Outcome(400, str(exc))
        if self.settings.data_dir is None and options.body_file:
            return Outcome(400, hey.generating.DISABLED_BODY_FILE)
        if options.concurrency > self.settings.max_workers:
            return Outcome(
                400,
                f"hey -c {options.concurrency}: at most {self.settings.max_workers} workers "
                "(SLUICE_LOADTESTER_MAX_WORKERS)",
            )
        key = _task_key(name, command)
        if key in self._running:
            log.info(
                "command skipped %s is already running", logs.clip(command), extra=_ctx(canary)
            )
            return Outcome(202)
        if len(self._running) >= self.settings.max_tasks:
            return Outcome(429, f"busy: {len(self._running)} tasks running on this replica")
        claimed = await self._claim(key, name, command)
        if not claimed:
            log.info(
                "command skipped %s is already running on another replica",
                logs.clip(command),
                extra=_ctx(canary),
            )
            return Outcome(202)
        return self._start(
            name, command, self._run_hey(canary, name, command, options, key, log_output)
        )

    async def _run_hey(
        self,
        canary: messages.CanaryRef,
        name: str,
        command: str,
        options: hey.parsing.Options,
        key: str,
        log_output: bool,
    ) -> None:
        heartbeat = asyncio.create_task(self._hold(key, name, command))
        for note in options.notes:
            log.info("hey: %s", note, extra=_ctx(canary))
        csv = _Capped(self.settings.output_max_bytes)
        try:
            async with asyncio.timeout(self.settings.task_timeout_s):
                report = await hey.generating.run(
                    options,
                    stop=self.rt.stopping,
                    metrics=self.metrics,
                    canary=name,
                    data_dir=self.settings.data_dir,
                    output=csv.add if options.output == "csv" else None,
                )
        except TimeoutError:
            log.warning(
                "task %s stopped after its time limit of %gs",
                logs.clip(command),
                self.settings.task_timeout_s,
                extra=_ctx(canary),
            )
            return
        except Exception as exc:
            log.warning(
                "command failed %s: %s", logs.clip(command), logs.clip(str(exc)), extra=_ctx(canary)
            )
            return
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            await self._release(key)
        # hey prints its summary, or with -o csv one line a response (logged when asked for)
        if options.output != "csv":
            log.info("%s", hey.summary.format_summary(report), extra=_ctx(canary))
        elif log_output:
            log.info("%s", csv.text(), extra=_ctx(canary))
        log.info(
            "command finished %s: %s", logs.clip(command), _one_line(report), extra=_ctx(canary)
        )

    async def _claim(self, key: str, name: str, command: str) -> bool:
        """Take the task's key in KV; False when another live replica holds it. A claim that
        was not refreshed for ``STALE_HEARTBEATS`` heartbeats is taken over: its replica died
        mid-task (SIGKILL, a lost node), and waiting for the bucket's TTL would leave the canary
        without load for up to a minute, failing its metric checks for lack of traffic."""
        record = TaskRecord(canary=name, command=logs.clip(command, 1000), replica=self.replica)
        try:
            with bus.nats_errors(f"claiming task {key}", self.rt.settings.nats_request_timeout_s):
                await self.kv.create(key, messages.ENCODER.encode(record))
        except errors.Conflict:
            return await self._take_over(key, record)
        except errors.SluiceError as exc:
            # without the bucket a replica still runs the task: a load test twice is better
            # than none, and this replica's own dedupe still holds
            log.warning("could not claim task %s (%s); running it anyway", key, exc)
        return True

    async def _take_over(self, key: str, record: TaskRecord) -> bool:
        """Replace a stale claim with ours (compare-and-set on its revision)."""
        timeout = self.rt.settings.nats_request_timeout_s
        try:
            with bus.nats_errors(f"reading task {key}", timeout):
                entry = await self.kv.get(key)
            held = _RECORD.decode(entry.value or b"")
        except (errors.SluiceError, msgspec.DecodeError):
            return False  # gone or unreadable: the next webhook call claims it afresh
        silent_s = (messages.now_ms() - held.refreshed_at_ms) / 1000
        if silent_s < STALE_HEARTBEATS * self.settings.claim_heartbeat_s:
            return False
        try:
            with bus.nats_errors(f"taking over task {key}", timeout):
                await self.kv.update(key, messages.ENCODER.encode(record), last=entry.revision)
        except errors.SluiceError:
            return False  # another replica took it over first
        log.warning(
            "task %s: taking it over from replica %s, silent for %.1fs",
            key,
            logs.clip(held.replica, 200),
            silent_s,
        )
        return True

    async def _hold(self, key: str, name: str, command: str) -> None:
        """Refresh the key every heartbeat while the task runs (well within the TTL)."""
        while True:
            await asyncio.sleep(self.settings.claim_heartbeat_s)
            record = TaskRecord(canary=name, command=logs.clip(command, 1000), replica=self.replica)
            try:
                with bus.nats_errors(
                    f"holding task {key}", self.rt.settings.nats_request_timeout_s
                ):
                    await self.kv.put(key, messages.ENCODER.encode(record))
            except errors.SluiceError as exc:
                log.debug("could not refresh task %s: %s", key, exc)

    async def _release(self, key: str) -> None:
        try:
            with bus.nats_errors(f"releasing task {key}", self.rt.settings.nats_request_timeout_s):
                await self.kv.delete(key)
        except errors.SluiceError as exc:
            log.debug("could not release task %s (it expires by itself): %s", key, exc)

    # --------------------------------------------------------------------- shell-class tasks

    def _shell_refusal(self, kind: str, canary: messages.CanaryRef) -> Outcome | None:
        allowed = self.settings.shell_namespaces
        if "*" in allowed or canary.namespace in allowed:
            return None
        what = "bash tasks" if kind == "bash" else "commands other than hey"
        return Outcome(
            403,
            f"Forbidden: {what} are shell-class tasks, disabled for namespace "
            f"{canary.namespace}; allow them with SLUICE_LOADTESTER_SHELL_NAMESPACES="
            f"{canary.namespace} on the webhook-runner",
        )

    async def _run_blocking(self, name: str, command: str, return_output: bool) -> Outcome:
        ok, output = await self._execute(name, ["bash", "-c", command])
        if not ok:
            return Outcome(500, f"command {logs.clip(command)} failed: {output}")
        return Outcome(200, output if return_output else "")

    async def _run_command(
        self, name: str, command: str, words: list[str], log_output: bool
    ) -> None:
        argv = ["sh", "-c", command] if _needs_shell(command) or not words else words
        ok, output = await self._execute(name, argv)
        if ok:
            if log_output and output:
                log.info("%s", output)
            log.info("command finished %s", logs.clip(command))
        else:
            log.warning("command failed %s: %s", logs.clip(command), output)

    async def _execute(self, name: str, argv: list[str]) -> tuple[bool, str]:
        """Run ``argv`` with the time limit, a minimal environment and capped output."""
        env = {k: v for k, v in os.environ.items() if k in _INHERITED_ENV}
        started = time.monotonic()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return False, f"cannot start {logs.clip(argv[0], 100)}: {exc.strerror or exc}"
        assert proc.stdout is not None
        kept = bytearray()
        dropped = 0
        try:
            async with asyncio.timeout(self.settings.task_timeout_s):
                while chunk := await proc.stdout.read(65536):
                    room = self.settings.output_max_bytes - len(kept)
                    kept += chunk[: max(room, 0)]
                    dropped += max(len(chunk) - max(room, 0), 0)
                code = await proc.wait()
        except (TimeoutError, asyncio.CancelledError) as exc:
            _kill(proc)
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            return False, f"stopped after its time limit of {self.settings.task_timeout_s:g}s"
        output = kept.decode(errors="replace")
        if dropped:
            output += f"\n… ({dropped} more bytes of output not kept)"
        log.debug(
            "%s ran %s in %.1fs, exit code %d", name, argv[0], time.monotonic() - started, code
        )
        return code == 0, output if code == 0 else f"exit status {code}: {output}"

    # --------------------------------------------------------------------- bookkeeping

    def _start(self, name: str, command: str, coro: Coroutine[Any, Any, None]) -> Outcome:
        key = _task_key(name, command)
        task = asyncio.create_task(coro, name=f"task:{name}")
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))
        log.info("task starting %s", logs.clip(command), extra={"canary": name})
        return Outcome(202)


class _Capped:
    """Lines kept up to a number of bytes; what comes after is only counted."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lines: list[str] = []
        self.size = 0
        self.dropped = 0

    def add(self, line: str) -> None:
        if self.size + len(line) + 1 > self.limit:
            self.dropped += 1
            return
        self.lines.append(line)
        self.size += len(line) + 1

    def text(self) -> str:
        more = f"\n… ({self.dropped} more lines not kept)" if self.dropped else ""
        return "\n".join(self.lines) + more


def _one_line(report: hey.recording.Report) -> str:
    codes = ", ".join(f"{code}: {n}" for code, n in sorted(report.status_codes.items()))
    failed = f", {report.error_count} errors" if report.error_count else ""
    return (
        f"{report.requests} requests in {report.total_s:.1f}s ({report.requests_per_s:.1f}/s); "
        f"status {codes or 'none'}{failed}"
    )


def _split(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return []


def _program(word: str) -> str:
    return word.rsplit("/", 1)[-1]


def _needs_shell(command: str) -> bool:
    return any(c in _SHELL_CHARACTERS for c in command)


def _task_key(name: str, command: str) -> str:
    return hashlib.sha256(f"{name}\0{command}".encode()).hexdigest()[:40]


def _ctx(canary: messages.CanaryRef) -> dict[str, str]:
    return {"canary": f"{canary.namespace}/{canary.name}"}


def _kill(proc: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
