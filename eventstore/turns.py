"""Conversation queries over a branch's items: turns, search, structure, tool usage.

Pure functions with the results of ``AdvancedSQLiteSession``'s queries. A user turn
starts at each item whose ``role`` is ``"user"``; items before the first user message
belong to turn 0. Message types and tool names are classified by the SDK's own rules
(``AdvancedSQLiteSession._classify_message_type`` and ``_extract_tool_name``), so the
two stores name the same items the same way.

Example:
    ```python
    entries = [TurnEntry(item, ts) for item in items]
    turns = conversation_turns(entries)
    print(turns[0]["turn"], turns[0]["content"])
    ```
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .events import JsonItem

TOOL_CALL_TYPES = frozenset({
    "tool_call", "function_call", "computer_call", "file_search_call", "web_search_call",
    "code_interpreter_call", "tool_search_call", "custom_tool_call", "mcp_call",
    "mcp_approval_request", "shell_call", "apply_patch_call",
})


@dataclass(frozen=True)
class TurnEntry:
    """One item of a branch and when the event that added it was written."""

    item: JsonItem
    ts: str


def is_user_message(item: JsonItem) -> bool:
    """Whether ``item`` starts a user turn (as ``AdvancedSQLiteSession`` decides)."""
    return item.get("role") == "user"


def message_type(item: JsonItem) -> str:
    """``user``, ``assistant``, the item's ``type``, or ``other``."""
    # imported here: the projector (which reads branch prefixes) must not load the SDK
    from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession

    return str(AdvancedSQLiteSession._classify_message_type(None, item))  # type: ignore[arg-type]


def tool_name(item: JsonItem) -> str | None:
    """The tool an item calls or answers, named as ``AdvancedSQLiteSession`` names it."""
    from agents.extensions.memory.advanced_sqlite_session import AdvancedSQLiteSession

    name = AdvancedSQLiteSession._extract_tool_name(None, item)  # type: ignore[arg-type]
    return None if name is None else str(name)


def turn_numbers(items: Sequence[JsonItem]) -> list[int]:
    """The user turn of each item (0 before the first user message)."""
    turn, numbers = 0, []
    for item in items:
        if is_user_message(item):
            turn += 1
        numbers.append(turn)
    return numbers


def current_turn(items: Sequence[JsonItem]) -> int:
    """The number of user turns among ``items``."""
    return sum(1 for item in items if is_user_message(item))


def content_preview(content: Any, max_length: int | None = None) -> str:
    """A user message's content as text, shortened to ``max_length`` (with ``...``)."""
    text = content if isinstance(content, str) else json.dumps(content, ensure_ascii=False)
    if max_length is not None and len(text) > max_length:
        return text[:max_length] + "..."
    return text


def _turn_info(turn: int, entry: TurnEntry, max_length: int | None) -> dict[str, Any]:
    content = entry.item.get("content", "")
    return {
        "turn": turn,
        "content": content_preview(content, max_length),
        "full_content": content,
        "timestamp": entry.ts,
        "can_branch": True,
    }


def conversation_turns(entries: Sequence[TurnEntry]) -> list[dict[str, Any]]:
    """One dict per user message: turn, content (100 chars), full content, time."""
    numbers = turn_numbers([e.item for e in entries])
    return [
        _turn_info(turn, entry, 100)
        for turn, entry in zip(numbers, entries, strict=True)
        if is_user_message(entry.item)
    ]


def find_turns(entries: Sequence[TurnEntry], search_term: str) -> list[dict[str, Any]]:
    """The user turns whose text contains ``search_term`` (ASCII case-insensitive)."""
    pattern = re.compile(re.escape(search_term), re.IGNORECASE | re.ASCII)
    numbers = turn_numbers([e.item for e in entries])
    found = []
    for turn, entry in zip(numbers, entries, strict=True):
        if not is_user_message(entry.item):
            continue
        content = entry.item.get("content", "")
        texts = [content] if isinstance(content, str) else [
            part.get("text", "") for part in content if isinstance(part, dict)
        ] if isinstance(content, list) else []
        if any(isinstance(t, str) and pattern.search(t) for t in texts):
            found.append(_turn_info(turn, entry, None))
    return found


def conversation_by_turns(items: Sequence[JsonItem]) -> dict[int, list[dict[str, str | None]]]:
    """Items grouped by turn: ``{turn: [{"type": ..., "tool_name": ...}, ...]}``."""
    grouped: dict[int, list[dict[str, str | None]]] = {}
    for turn, item in zip(turn_numbers(items), items, strict=True):
        grouped.setdefault(turn, []).append(
            {"type": message_type(item), "tool_name": tool_name(item)}
        )
    return grouped


def tool_usage(items: Sequence[JsonItem]) -> list[tuple[str, int, int]]:
    """``(tool name, calls, turn)`` per tool and turn, ordered by turn then name."""
    counts: Counter[tuple[int, str | None]] = Counter()
    search_calls: set[tuple[int, str | None]] = set()
    outputs: list[tuple[int, str | None]] = []
    for turn, item in zip(turn_numbers(items), items, strict=True):
        kind, name = message_type(item), tool_name(item)
        if kind in TOOL_CALL_TYPES:
            if name is None and kind in ("shell_call", "apply_patch_call"):
                name = kind
            counts[(turn, name)] += 1
            if kind == "tool_search_call":
                search_calls.add((turn, name))
        elif kind == "tool_search_output":
            outputs.append((turn, name))
    for key in outputs:
        if key not in search_calls:
            counts[key] += 1
    ordered = sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ""))
    return [(str(name) if name is not None else None, n, turn)  # type: ignore[misc]
            for (turn, name), n in ordered]
