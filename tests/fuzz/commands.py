"""Commands: requests sent with a reply inbox of our own, so every reply is seen.

``CommandSender`` sends each command with bounded concurrency per subject and waits for its
reply up to the planned time; replies that come late, twice, as no-responders or undecodable
are all recorded. ``account()`` turns that into each command row's replies, missing, late,
duplicate and ``SECRET``-carrying counts, with a few samples of what went wrong.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import time
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg

from libs import messages
from tests.fuzz import model, planning, subjects, values


@dataclasses.dataclass
class _Reply:
    at: float
    summary: str  # kind, "command_failed(permanent|temporary)", "no-responders", "undecodable"
    secret: bool
    head: str


@dataclasses.dataclass
class _Command:
    row: str
    key: str
    label: str
    cause: str | None
    payload_head: str
    deadline: float = 0.0


class CommandSender:
    """Requests with our own reply inbox, so every reply (late or duplicate) is seen."""

    def __init__(
        self, nc: Client, config: model.FuzzConfig, rows: dict[str, model.RowReport]
    ) -> None:
        self.nc = nc
        self.rows = rows
        self.prefix = nc.new_inbox()
        self.replies: dict[str, list[_Reply]] = collections.defaultdict(list)
        self.waiters: dict[str, asyncio.Event] = {}
        self.commands: dict[str, _Command] = {}
        self.slots = {
            row: asyncio.Semaphore(config.command_concurrency) for row in subjects.COMMAND_ROWS
        }
        self.tasks: set[asyncio.Task[None]] = set()
        self.sub: Any = None
        self.sampled: set[str] = set()  # correlation ids of the commands in the samples

    async def start(self) -> None:
        self.sub = await self.nc.subscribe(
            f"{self.prefix}.>", cb=self._on_reply, pending_bytes_limit=512 * 1024 * 1024
        )

    async def _on_reply(self, msg: Msg) -> None:
        key = msg.subject[len(self.prefix) + 1 :]
        headers = msg.headers or {}
        secret = values.SECRET.encode() in msg.data
        head = msg.data[:300].decode(errors="replace")
        if headers.get("Status") == "503":
            summary = "no-responders"
        else:
            try:
                reply = messages.REPLY_DECODER.decode(msg.data)
            except Exception:
                summary = "undecodable"
            else:
                if isinstance(reply, messages.CommandFailed):
                    decision = "temporary" if reply.temporary else "permanent"
                    summary = f"command_failed({decision})"
                else:
                    summary = str(type(reply).__struct_config__.tag)
                if secret:
                    index = msg.data.find(values.SECRET.encode())
                    head = msg.data[max(0, index - 150) : index + 50].decode(errors="replace")
        self.replies[key].append(_Reply(time.monotonic(), str(summary), secret, head))
        waiter = self.waiters.get(key)
        if waiter is not None:
            waiter.set()

    async def submit(self, item: planning.Planned) -> None:
        """Start one command once a slot is free (returns when it is on its way)."""
        row = item.example.row
        await self.slots[row].acquire()
        task = asyncio.create_task(self._one(item), name=f"fuzz-command-{item.index}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _one(self, item: planning.Planned) -> None:
        row = item.example.row
        key = f"{subjects.SHORT[row]}.{item.index}"
        command = _Command(
            row=row,
            key=key,
            label=item.example.label,
            cause=item.outcomes[row],
            payload_head=repr(item.example.payload[:160]),
        )
        self.commands[key] = command
        waiter = self.waiters[key] = asyncio.Event()
        report = self.rows[row]
        try:
            await self.nc.publish(
                row,
                item.example.payload,
                reply=f"{self.prefix}.{key}",
                headers={messages.HEADER_CORRELATION_ID: f"fuzz-{key}"},
            )
        except Exception as exc:  # not sent: counted apart, never as a service failure
            name = type(exc).__name__
            report.publish_errors[name] = report.publish_errors.get(name, 0) + 1
            del self.commands[key]
            self.slots[row].release()
            return
        command.deadline = time.monotonic() + item.wait_s
        planning.count_sent(report, item, row)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.wait(), item.wait_s)
        finally:
            self.waiters.pop(key, None)
            self.slots[row].release()

    async def finish(self) -> None:
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*list(self.tasks), return_exceptions=True)
        if self.sub is not None:
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()

    def account(self) -> None:
        for key, command in self.commands.items():
            report = self.rows[command.row]
            replies = self.replies.get(key, [])
            in_time = [r for r in replies if r.at <= command.deadline]
            problem = ""
            if len(replies) > 1:
                report.duplicates += 1
                problem = f"{len(replies)} replies"
            if not in_time:
                if replies:
                    report.late += 1
                    problem = problem or "late reply"
                else:
                    report.missing += 1
                    problem = problem or "no reply"
            else:
                report.replies += 1
            for reply in replies:
                report.reply_kinds[reply.summary] = report.reply_kinds.get(reply.summary, 0) + 1
                if reply.summary == "no-responders":
                    report.no_responders += 1
                    problem = problem or "no responders"
                elif reply.summary == "undecodable":
                    report.undecodable_replies += 1
                    problem = problem or "undecodable reply"
                elif not reply.summary.startswith("command_failed"):
                    report.handled += 1
                if reply.secret:
                    report.secret_in_replies += 1
                    problem = problem or f"{values.SECRET} in reply: …{reply.head}…"
            first = replies[0].summary if replies else ""
            if command.cause is not None and first and first != "command_failed(permanent)":
                report.undecodable_not_permanent += 1
            if problem and len(report.samples) < 6:
                self.sampled.add(f"fuzz-{key}")
                report.samples.append(
                    f"{problem}: fuzz-{key} [{command.label}] "
                    f"{'undecodable: ' + command.cause if command.cause else 'decodes'}; "
                    f"payload {command.payload_head}"
                )
