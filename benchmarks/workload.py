"""The conversation the benchmarks write: deterministic turns of ~300-byte messages."""

from __future__ import annotations

import json
import random
from typing import Any

MESSAGE_BYTES = 300
_WORDS = [
    "the", "agent", "session", "history", "tool", "call", "result", "user", "asked",
    "about", "weather", "order", "refund", "status", "invoice", "shipping", "address",
    "please", "confirm", "thanks", "update", "account", "balance", "plan", "upgrade",
    "travel", "booking", "flight", "hotel", "itinerary", "summary", "details", "next",
    "step", "available", "schedule", "meeting", "tomorrow", "morning", "afternoon", "price",
    "estimate", "delivery", "tracking", "number",
]


def message(role: str, index: int) -> dict[str, Any]:
    """One chat message whose compact JSON is exactly ``MESSAGE_BYTES`` bytes."""
    rng = random.Random(f"{role}:{index}")
    shell = json.dumps({"role": role, "content": ""}, separators=(",", ":"))
    size = MESSAGE_BYTES - len(shell)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < size:
        words.append(rng.choice(_WORDS))
    text = " ".join(words)[:size]
    return {"role": role, "content": text}


def turn(index: int) -> list[dict[str, Any]]:
    """One conversation turn: a user message and the assistant's answer (2 items)."""
    return [message("user", index), message("assistant", index)]


def history(start: int, count: int) -> list[dict[str, Any]]:
    """``count`` items (``count // 2`` turns) starting at turn ``start // 2``."""
    items: list[dict[str, Any]] = []
    index = start // 2
    while len(items) < count:
        items.extend(turn(index))
        index += 1
    return items[:count]
