"""Rendering for the ``convlog`` command line: summaries, tables and progress, with rich.

Tables and progress bars are drawn by `rich <https://rich.readthedocs.io>`_: aligned
columns, a progress bar with rate and ETA, colour only on a terminal (``NO_COLOR`` and
``FORCE_COLOR`` are honoured) and plain text when the output is piped or redirected, so
that it reads the same in a CI log and in the README. ``rich`` comes with the ``cli``
extra (``pip install 'convlog[cli]'``); ``eventstore`` never imports it.

Example:
    ```python
    from convlog.cli_format import render_table, summarize_item

    print(render_table(["SEQ", "TYPE"], [["1", "items_added"]]))
    print(summarize_item({"role": "user", "content": "Hello"}))  # user: "Hello"
    ```
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any, TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    ProgressColumn,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Progress as RichProgress
from rich.progress import Task as RichTask
from rich.table import Table
from rich.text import Text

from eventstore.events import Event, JsonItem

SUMMARY_WIDTH = 90
PLAIN_WIDTH = 100_000
"""Width of plain (piped) output: wide enough that no table cell is ever cut or wrapped."""


PIPED_PROGRESS_WIDTH = 120
"""Width of the one progress line written when the stream is not a terminal."""


def console_for(stream: TextIO, *, piped_width: int | None = None) -> Console:
    """A rich console writing to ``stream``: colour on a terminal, plain text otherwise.

    Args:
        stream: Where to write.
        piped_width: The width to lay out for when ``stream`` is not a terminal (rich's
            default is 80 columns).
    """
    console = Console(file=stream, highlight=False, emoji=False, markup=False, soft_wrap=True)
    if piped_width is not None and not console.is_terminal:
        console.width = piped_width
    return console


def shorten(text: str, width: int = SUMMARY_WIDTH) -> str:
    """One line of at most ``width`` characters (newlines folded, ``…`` when cut)."""
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = [
            str(part.get("text") or part.get("refusal") or f"[{part.get('type', '?')}]")
            for part in content
            if isinstance(part, dict)
        ]
        return " ".join(texts)
    return json.dumps(content, ensure_ascii=False)


def summarize_item(item: JsonItem, width: int = 60) -> str:
    """A one-line human summary of a conversation item (message, tool call, output)."""
    kind = item.get("type")
    if kind == "function_call":
        return shorten(f"tool call {item.get('name')}({item.get('arguments', '')})", width)
    if kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
        return shorten(f"tool result {text}", width)
    role = item.get("role")
    if role is not None:
        flat = " ".join(_content_text(item.get("content")).split())
        text = json.dumps(flat, ensure_ascii=False)
        return shorten(f"{role}: {text}", width)
    return shorten(f"{kind or 'item'}: {json.dumps(item, ensure_ascii=False)}", width)


def summarize_event(event: Event, width: int = SUMMARY_WIDTH) -> str:
    """A one-line human summary of an event's content."""
    if event.type == "items_added":
        each = max(28, (width - 4) // max(len(event.items), 1))
        parts = [summarize_item(item, each) for item in event.items]
        return shorten(f"+{len(event.items)}  " + " | ".join(parts), width)
    if event.type == "item_popped":
        return shorten("-1  " + summarize_item(event.item, 60), width)
    if event.type == "items_replaced":
        what = "all items" if event.replaced is None else f"the newest {event.replaced}"
        return shorten(f"compacted: {what} -> {len(event.items)} items", width)
    if event.type == "usage_recorded":
        u = event.usage
        return shorten(f"usage, turn {event.turn}: {u.get('requests', 0)} requests, "
                       f"{u.get('total_tokens', 0)} tokens", width)
    if event.type == "branch_created":
        return shorten(f"branch {event.branch_id!r} from {event.parent_session!r} seq "
                       f"{event.parent_seq} (first {event.keep} items)", width)
    if event.type == "branch_deleted":
        return shorten(f"branch {event.branch_id!r} deleted", width)
    return "cleared: every earlier item is gone"


def render_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], console: Console | None = None
) -> str:
    """Rows under bold headers, columns aligned and two spaces apart.

    On a terminal console the text carries colour codes and the last column is cut
    (``…``) to the terminal's width; otherwise it is plain text, never cut, with no
    trailing spaces.
    """
    table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
    last = len(headers) - 1
    for n, header in enumerate(headers):
        # Only the last column gives way on a narrow terminal: its cells are cut with "…".
        table.add_column(header, no_wrap=n != last)
    for row in rows:
        table.add_row(*(Text(cell, no_wrap=True, overflow="ellipsis" if n == last else "fold")
                        for n, cell in enumerate(row)))
    if console is None or not console.is_terminal:
        console = Console(file=io.StringIO(), width=PLAIN_WIDTH, color_system=None,
                          highlight=False, emoji=False)
    with console.capture() as captured:
        console.print(table, soft_wrap=False)
    return "\n".join(line.rstrip() for line in captured.get().splitlines())


def render_items(items: Sequence[JsonItem], indent: str = "  ") -> str:
    """Numbered one-line summaries of items, or ``(none)``."""
    if not items:
        return f"{indent}(none)"
    return "\n".join(
        f"{indent}{n:>3}. {summarize_item(item, SUMMARY_WIDTH)}"
        for n, item in enumerate(items, start=1)
    )


class _RateColumn(ProgressColumn):
    """Steps per second, in the unit being counted."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task: RichTask) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:,.1f} {self.unit}/s", style="cyan")


class Progress:
    """A progress bar with count, percentage, rate, elapsed time and ETA (rich).

    On a terminal the bar redraws in place; when the stream is not a terminal only the
    final state is written, as one plain line.

    Args:
        total: Number of steps.
        label: What is counted (``sessions``, ``items``).
        stream: Where to draw (default: stderr).
        description: What is being done (default: ``label``).

    Example:
        ```python
        bar = Progress(len(ids), "sessions", description="rebuild")
        for session_id in ids:
            work(session_id)
            bar.advance()
        bar.close()
        ```
    """

    def __init__(
        self, total: int, label: str, stream: TextIO | None = None, *,
        description: str | None = None,
    ) -> None:
        self.total = max(total, 0)
        self.label = label
        self._bar = RichProgress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(label),
            TaskProgressColumn(),
            _RateColumn(label),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=console_for(stream if stream is not None else _stderr(),
                                piped_width=PIPED_PROGRESS_WIDTH),
        )
        self._task = self._bar.add_task(description or label, total=self.total)
        self._bar.start()

    @property
    def done(self) -> int:
        """Steps done so far."""
        return int(self._bar.tasks[0].completed)

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more steps as done."""
        self._bar.advance(self._task, steps)

    def close(self) -> None:
        """Stop the bar and leave its final state on screen (one line when piped)."""
        self._bar.stop()


def _stderr() -> TextIO:
    import sys

    return sys.stderr
