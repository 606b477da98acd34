"""Plain-text rendering for the ``convlog`` command line: summaries, tables, progress.

No third-party dependency: output is plain text that reads well in a terminal, in a CI
log and in a README.

Example:
    ```python
    from convlog.cli_format import render_table, summarize_item

    print(render_table(["SEQ", "TYPE"], [["1", "items_added"]]))
    print(summarize_item({"role": "user", "content": "Hello"}))  # user: "Hello"
    ```
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any, TextIO

from eventstore.events import Event, JsonItem

SUMMARY_WIDTH = 90


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


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns separated by two spaces; the last column is not padded."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = []
    for row in [list(headers), *rows]:
        cells = [cell.ljust(widths[i]) for i, cell in enumerate(row[:-1])]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)


def render_items(items: Sequence[JsonItem], indent: str = "  ") -> str:
    """Numbered one-line summaries of items, or ``(none)``."""
    if not items:
        return f"{indent}(none)"
    return "\n".join(
        f"{indent}{n:>3}. {summarize_item(item, SUMMARY_WIDTH)}"
        for n, item in enumerate(items, start=1)
    )


class Progress:
    """A one-line progress bar on a terminal; a line every 10 % otherwise.

    Args:
        total: Number of steps.
        label: What is counted.
        stream: Where to draw (default: stderr).

    Example:
        ```python
        bar = Progress(len(ids), "sessions")
        for session_id in ids:
            work(session_id)
            bar.advance()
        bar.close()
        ```
    """

    WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = max(total, 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.done = 0
        self.started = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_decile = -1

    def advance(self, steps: int = 1) -> None:
        """Count ``steps`` more steps as done and redraw."""
        self.done = min(self.done + steps, self.total)
        self._draw()

    def _draw(self) -> None:
        fraction = self.done / self.total if self.total else 1.0
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        text = f"[{bar}] {self.done}/{self.total} {self.label} {fraction:4.0%}"
        if self.tty:
            self.stream.write("\r" + text)
        else:
            decile = int(fraction * 10)
            if decile == self._last_decile:
                return
            self._last_decile = decile
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        """Finish the bar (a newline on a terminal) with the elapsed time."""
        if self.tty:
            self.stream.write(f"  {time.monotonic() - self.started:.1f}s\n")
            self.stream.flush()
