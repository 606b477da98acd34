"""A branch's full history, oldest first: items with their times, usage per turn.

A branch is its own session partition (``<session>#branch#<branch id>``) whose first
event, ``branch_created``, points at its parent: the parent partition, the parent's seq
and hash at that moment, and how many of the parent's items the branch starts with.
Reading a branch folds the parent's prefix (recursively, a branch may start from a
branch) and then the branch's own events; nothing is copied. Appends on two branches
go to two partitions and never conflict.

Example:
    ```python
    history = await read_history(log, "chat#branch#b1")
    print([e.item for e in history.entries], history.usage)
    ```
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptEventError, InvalidInputError, InvalidSessionIdError
from .events import JsonItem
from .fold import Entry, Snapshot, fold_forward
from .log import EventLog, Head
from .records import StoredEvent
from .turns import TurnEntry, current_turn

BranchId = str
MAIN_BRANCH: BranchId = "main"
BRANCH_MARK = "#branch#"
MAX_BRANCH_DEPTH = 32
MAX_BRANCH_ID_CHARS = 255


def branch_session_id(session_id: str, branch_id: str) -> str:
    """The partition of a branch (``main`` is the session itself)."""
    return session_id if branch_id == MAIN_BRANCH else f"{session_id}{BRANCH_MARK}{branch_id}"


def check_base_session_id(session_id: str) -> str:
    """Refuse a session id whose partition a branch of another session could share.

    A branch's partition is ``<session>#branch#<id>``. An id holding ``#branch#``, or
    ending in ``#branch`` (the mark then follows it), could be such a partition, so two
    sessions would write one partition.

    Raises:
        InvalidSessionIdError: The id is one of those.
    """
    if BRANCH_MARK in session_id or session_id.endswith(BRANCH_MARK[:-1]):
        raise InvalidSessionIdError(
            f"session_id {session_id!r:.80} holds {BRANCH_MARK!r} or ends in "
            f"{BRANCH_MARK[:-1]!r}: that names a branch's partition"
        )
    return session_id


def branch_owner(partition: str, branch_id: str) -> str:
    """The session a branch's partition belongs to (``partition`` when it is not one)."""
    suffix = BRANCH_MARK + branch_id
    return partition[: -len(suffix)] if partition.endswith(suffix) else partition


def check_branch_id(branch_id: object, what: str = "Branch name") -> str:
    """Validate a branch id (``what`` names it in the message, as the SDK does).

    Raises:
        InvalidInputError: Empty, blank, too long or not a string (a ``ValueError``).
    """
    if not isinstance(branch_id, str) or not branch_id.strip():
        raise InvalidInputError(f"{what} cannot be empty")
    if len(branch_id) > MAX_BRANCH_ID_CHARS:
        raise InvalidInputError(f"{what} is longer than {MAX_BRANCH_ID_CHARS} characters")
    return branch_id


@dataclass
class History:
    """A branch folded oldest-first (prefix from its parents included)."""

    entries: list[TurnEntry] = field(default_factory=list)
    usage: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Usage per user turn, from this branch's own ``usage_recorded`` events."""
    usage_events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    """Every ``usage_recorded`` of this branch: (time, usage), in order."""
    head: Head = field(default_factory=Head)
    created: str | None = None
    deleted: bool = False

    @property
    def items(self) -> list[JsonItem]:
        """The live items, oldest first."""
        return [e.item for e in self.entries]

    def _prune_usage(self) -> None:
        turns = current_turn(self.items)
        self.usage = {t: u for t, u in self.usage.items() if t <= turns}


async def read_history(
    log: EventLog, session_id: str, *, upto_seq: int | None = None, now: float | None = None,
    depth: int = 0,
) -> History:
    """Fold a partition's events (and its parents' prefix) oldest first.

    Raises:
        CorruptEventError: Branches nested deeper than ``MAX_BRANCH_DEPTH`` (a cycle).
    """
    if depth > MAX_BRANCH_DEPTH:
        raise CorruptEventError(f"session {session_id!r}: branches nested too deep")
    at = time.time() if now is None else now
    history = History()
    async for stored in log.iter_events(session_id, upto_seq=upto_seq):
        event = stored.event
        history.head = Head(event.seq, stored.hash)
        history.created = history.created or event.ts
        if stored.ttl is not None and stored.ttl <= at:
            continue
        _apply(history, stored)
        if event.type == "branch_created":
            parent = await read_history(
                log, event.parent_session, upto_seq=event.parent_seq, now=at, depth=depth + 1
            )
            history.entries = parent.entries[: event.keep]
    return history


def _apply(history: History, stored: StoredEvent) -> None:
    event = stored.event
    if event.type == "items_added":
        history.entries.extend(TurnEntry(item, event.ts) for item in event.items)
    elif event.type == "item_popped":
        if history.entries:
            history.entries.pop()
        history._prune_usage()
    elif event.type == "items_replaced":
        if event.replaced is None:
            history.entries.clear()
        elif event.replaced:
            del history.entries[-event.replaced :]
        history.entries.extend(TurnEntry(item, event.ts) for item in event.items)
        history._prune_usage()
    elif event.type in ("session_cleared", "branch_deleted"):
        history.entries.clear()
        history.usage.clear()
        history.deleted = event.type == "branch_deleted"
    elif event.type == "usage_recorded":
        history.usage_events.append((event.ts, event.usage))
        if 0 < event.turn <= current_turn(history.items):
            history.usage[event.turn] = event.usage


async def branch_base(log: EventLog, first: StoredEvent, now: float | None = None) -> Snapshot:
    """The state a branch starts from (its parent's prefix), as a snapshot at seq 0.

    Args:
        log: The event log.
        first: The branch's ``branch_created`` event.
        now: Clock for TTL checks.
    """
    event = first.event
    if event.type != "branch_created":
        return Snapshot(0)
    parent = await _parent_entries(log, event.parent_session, event.parent_seq, now, 1)
    return Snapshot(0, tuple(parent[: event.keep]))


async def _parent_entries(
    log: EventLog, session_id: str, upto_seq: int, now: float | None, depth: int
) -> list[Entry]:
    if depth > MAX_BRANCH_DEPTH:
        raise CorruptEventError(f"session {session_id!r}: branches nested too deep")
    events = [e async for e in log.iter_events(session_id, upto_seq=upto_seq)]
    start = None
    if events and events[0].event.type == "branch_created":
        first = events[0].event
        parent = await _parent_entries(
            log, first.parent_session, first.parent_seq, now, depth + 1
        )
        start = Snapshot(0, tuple(parent[: first.keep]))
    return list(fold_forward(events, start, now=now).entries)
