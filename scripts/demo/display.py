"""The live view: a ``snapshot.Board`` drawn with rich, refreshed in place on a terminal, as tall
as the terminal; as plain text for tests."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import Iterator, Sequence

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from scripts.demo import snapshot, tutorial

REFRESH_S = 0.25  # live view refresh period
BAR_WIDTH = 30
SUMMARY_LINES = 11  # printed under the live view at the end (verdicts, times, teardown)
MIN_FINAL_HEIGHT = 24

SHOWN_EVENTS = 14
SHOWN_SLACK = 6
SHOWN_ACTIONS = 6


def clock(seconds: float) -> str:
    """``m:ss`` of a duration (negative shown as 0)."""
    whole = max(0, int(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def weight_bar(weight: int, limit: int, width: int = BAR_WIDTH) -> Text:
    """``━━━━━━━━───────`` (legible without colours too)."""
    filled = round(width * min(max(weight, 0), limit) / limit) if limit > 0 else 0
    return Text("━" * filled, style="bold green") + Text("─" * (width - filled), style="dim")


def fit(height: int | None, metrics: int) -> tuple[int, int, int]:
    """Rows of the events, Slack and demo panels (``… N earlier`` included) for a terminal of
    ``height`` lines; the defaults when the height is not known."""
    if height is None:
        return SHOWN_EVENTS, SHOWN_SLACK, SHOWN_ACTIONS
    fixed = (6 + metrics) + 3 * 2 + 1  # the canary panel, three panels' borders, a spare line
    rows = max(3, height - fixed)
    events = max(1, rows // 2)
    slack = max(1, rows // 4)
    return events, slack, max(1, rows - events - slack)


def render(
    board: snapshot.Board, now: float | None = None, height: int | None = None
) -> RenderableType:
    """The live view of ``board``, as tall as ``height`` lines at most when it is given."""
    elapsed = board.at(now)
    top = Table.grid(padding=(0, 2))
    top.add_column(no_wrap=True)
    top.add_column(no_wrap=True)
    top.add_column(no_wrap=True)
    limit = board.max_weight or 100
    top.add_row("canary weight", weight_bar(board.weight, limit), f"{board.weight}/{limit}%")
    top.add_row(
        "phase",
        Text(board.phase or "—", style="bold")
        + Text(f"  failed checks {board.failed_checks}/{board.threshold or '?'}"),
        "",
    )
    metrics = Table(expand=False, box=None, padding=(0, 2), show_edge=False)
    metrics.add_column("metric", no_wrap=True)
    metrics.add_column("last value", justify="right", no_wrap=True)
    metrics.add_column("threshold", justify="right", no_wrap=True)
    metrics.add_column("", no_wrap=True)
    for metric in board.metrics.values():
        ok = metric.passed
        metrics.add_row(
            metric.name,
            snapshot.value_text(metric),
            snapshot.threshold_text(metric),
            Text(
                snapshot.verdict_text(metric),
                style="green" if ok else "bold red" if ok is False else "",
            ),
        )
    canary = Panel(
        Group(top, Text(""), metrics),
        title=f"[bold]Sluice demo[/] · {board.stage}",
        subtitle=f"{clock(elapsed)} elapsed",
        title_align="left",
        subtitle_align="right",
    )
    events, slack, actions = fit(height, len(board.metrics))
    return Group(
        canary,
        _entries_panel(
            f"Events · kubectl describe canary {tutorial.CANARY} -n {tutorial.NAMESPACE}",
            board.events,
            events,
        ),
        _entries_panel(f"Slack · {plural(len(board.slack), 'message')}", board.slack, slack),
        _entries_panel("Demo", board.actions, actions),
    )


def _entries_panel(title: str, entries: Sequence[snapshot.Entry], rows: int) -> Panel:
    """The newest entries in ``rows`` lines, one line each (cut with … when too long)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(style="dim", no_wrap=True, justify="right", min_width=5)  # "12:34"
    tagged = any(entry.tag for entry in entries)
    if tagged:
        table.add_column(no_wrap=True, min_width=7)  # "Warning"
    table.add_column(no_wrap=True, overflow="ellipsis", ratio=1)
    shown = len(entries) if len(entries) <= rows else max(0, rows - 1)
    hidden = len(entries) - shown
    if hidden > 0:
        table.add_row("", *([""] if tagged else []), Text(f"… {hidden} earlier", style="dim"))
    for entry in entries[len(entries) - shown :]:
        cells = [Text(entry.tag, style=entry.style)] if tagged else []
        table.add_row(clock(entry.at_s), *cells, Text(entry.text, style=entry.style))
    if not entries:
        table.add_row("", Text("none yet", style="dim"))
    return Panel(table, title=title, title_align="left")


def render_text(
    board: snapshot.Board, width: int = 100, now: float | None = None, height: int | None = None
) -> str:
    """The live view as plain text (tests, logs)."""
    console = Console(width=width, record=True, file=io.StringIO(), color_system=None)
    console.print(render(board, now, height))
    return console.export_text()


@contextlib.contextmanager
def live_view(board: snapshot.Board, console: Console, enabled: bool) -> Iterator[Live | None]:
    if not enabled:
        yield None
        return
    with Live(
        render(board), console=console, auto_refresh=False, transient=False, screen=False
    ) as live:
        yield live


async def refresh(live: Live, board: snapshot.Board) -> None:
    while True:
        live.update(render(board, height=live.console.height), refresh=True)
        await asyncio.sleep(REFRESH_S)
