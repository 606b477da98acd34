"""What a session object remembers between calls: the newest items as of its head.

``Window`` lets a ``pop_item`` cost one conditional write: the put at ``head + 1``
proves the remembered items are still the newest. ``event_of`` and ``head_of`` read what
a failed condition (``ALL_OLD``) reveals; ``backoff`` spaces out retries.

Example:
    ```python
    window = Window(head, items, complete=True, expiring=False)
    if not window.advance(stored):
        window = None  # read again
    ```
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
from typing import Any

import orjson

from .errors import CorruptEventError
from .log import Head
from .records import OBJECT_ATTR, StoredEvent, decode_event

POP_WINDOW = 32
_BACKOFF_BASE = 0.01
_BACKOFF_CAP = 2.0


class Window:
    """The newest live items (oldest first) as of ``head``; ``complete``: all of them.

    ``ttls`` holds the expiry of each item (a pop inherits its item's, the TTL rule).
    """

    def __init__(
        self, head: Head, items: list[Any], complete: bool, expiring: bool,
        ttls: list[int | None] | None = None,
    ) -> None:
        self.head = head
        self.items = list(items)
        self.ttls: list[int | None] = (
            list(ttls) if ttls is not None else [None] * len(self.items)
        )
        self.complete = complete
        self.expiring = expiring

    def advance(self, stored: StoredEvent) -> bool:
        """Apply the event that follows ``head``; ``False``: the window cannot tell."""
        event = stored.event
        self.head = Head(event.seq, stored.hash)
        self.expiring = self.expiring or stored.ttl is not None
        if event.type in ("items_added", "items_replaced"):
            if event.type == "items_replaced":
                kept = 0 if event.replaced is None else len(self.items) - event.replaced
                if kept < 0:
                    return False  # replaced more than this window holds: read again
                del self.items[kept:]
                del self.ttls[kept:]
                self.complete = self.complete or event.replaced is None
            self.items.extend(copy.deepcopy(event.items))
            self.ttls.extend([stored.ttl] * len(event.items))
            if len(self.items) > 4 * POP_WINDOW:
                self.items, self.complete = self.items[-POP_WINDOW:], False
                self.ttls = self.ttls[-POP_WINDOW:]
        elif event.type == "item_popped":
            if self.items:
                self.items.pop()
                self.ttls.pop()
        elif event.type in ("session_cleared", "branch_deleted"):
            self.items.clear()
            self.ttls.clear()
            self.complete = True
        return True


def event_of(item: dict[str, Any] | None) -> StoredEvent | None:
    """The event an ``ALL_OLD`` conflict item holds, if it is whole and live."""
    if not item or "type" not in item or "parts" in item or OBJECT_ATTR in item:
        return None  # its payload is in other items or in S3
    try:
        stored = decode_event(item)
    except CorruptEventError:
        return None
    return None if stored.ttl is not None and stored.ttl <= time.time() else stored


def head_of(item: dict[str, Any] | None) -> Head | None:
    """The head an ``ALL_OLD`` conflict item reveals (an event or one of its parts)."""
    try:
        return Head.of_item(item) if item else None
    except (KeyError, TypeError, ValueError):
        return None


def copy_json(value: Any) -> Any:
    """A deep copy of JSON data (a round trip through orjson, ~5x faster than deepcopy).

    ``copy.deepcopy`` serves what orjson refuses (integers beyond 64 bits; items never
    hold NaN or infinity: ``add_items`` rejects them).
    """
    try:
        return orjson.loads(orjson.dumps(value))
    except (orjson.JSONEncodeError, orjson.JSONDecodeError):
        return copy.deepcopy(value)


async def backoff(attempt: int) -> None:
    """Sleep a random time, up to an exponentially growing cap, before retry ``attempt``."""
    await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
