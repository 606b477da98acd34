"""The state fold: events in, the current list of conversation items out.

Two directions, one meaning:

* ``apply_event`` folds oldest-first (projections, replay, rebuild);
* ``removal_ttl`` is the TTL rule: an event that removes items never expires before
  the items it removes (a pop expires exactly with its item, so neither resurrects it
  nor, once the item is gone, removes an older one in its place);
* ``NewestFirstFold`` folds newest-first, the order of a descending ``Query``, and says
  as soon as the answer is known: a ``session_cleared`` ends the walk, and with
  ``limit=N`` it stops once N live items are found. It can start from (end at) a
  ``Snapshot`` -- the state after ``snapshot.seq``.

Example:
    ```python
    fold = NewestFirstFold(limit=10)
    for stored in newest_first_events:
        fold.feed(stored)
        if fold.done:
            break
    items = fold.items()
    ```
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .events import Event, JsonItem
from .records import StoredEvent


@dataclass(frozen=True)
class Entry:
    """One live item, the seq of the event that added it, and when it expires."""

    item: JsonItem
    seq: int
    ttl: int | None = None

    def expired(self, now: float) -> bool:
        """Whether the entry's ``ttl`` is in the past."""
        return self.ttl is not None and self.ttl <= now


@dataclass(frozen=True)
class Sealed:
    """The older entries of a snapshot, kept in sealed chunks the projector never rewrites.

    Chunk ``i`` (``0 <= i < chunks``) of ``epoch`` holds entries in order; ``chain`` is
    the hash chain over the chunks' digests (``eventstore.chunks``), so a reader checks
    each chunk it reads against the head. ``ttl``: the latest expiry among the sealed
    entries (``None``: some never expire).
    """

    epoch: int
    chunks: int
    count: int
    chain: str
    ttl: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """The state after applying every event up to and including ``seq``.

    ``hash`` is the hash of the event at ``seq`` (the last one folded): a reader uses a
    stored snapshot only when the event it reads at ``seq`` carries that hash.
    ``sealed``: when set, ``entries`` is only the tail, the newest entries; the older
    ones are in sealed chunks (the projector's view of a chunked snapshot).
    """

    seq: int
    entries: tuple[Entry, ...] = ()
    ttl: int | None = field(default=None, compare=False)  # as stored: its newest event's
    hash: str | None = field(default=None, compare=False)
    sealed: Sealed | None = field(default=None, compare=False)

    @property
    def count(self) -> int:
        """How many entries the state holds, sealed ones included."""
        return len(self.entries) + (self.sealed.count if self.sealed else 0)

    def bound_to(self, stored: StoredEvent) -> bool:
        """Whether ``stored`` proves this snapshot: same seq, same hash."""
        return (
            self.hash is not None
            and stored.event.seq == self.seq
            and stored.hash == self.hash
        )

    def expired(self, now: float) -> bool:
        """Whether the stored snapshot's ``ttl`` is past: every event it folded expired."""
        return self.ttl is not None and self.ttl <= now

    def items(self, now: float | None = None) -> list[JsonItem]:
        """The live items, oldest first, without expired ones."""
        at = time.time() if now is None else now
        return [e.item for e in self.entries if not e.expired(at)]


def apply_event(entries: list[Entry], event: Event, ttl: int | None = None) -> list[Entry]:
    """Apply one event, oldest-first, to a list of entries (mutated and returned)."""
    if event.type == "items_added":
        entries.extend(Entry(item, event.seq, ttl) for item in event.items)
    elif event.type == "item_popped":
        if entries:
            entries.pop()
    elif event.type == "items_replaced":
        if event.replaced is None:
            entries.clear()
        else:
            del entries[max(0, len(entries) - event.replaced) :]
        entries.extend(Entry(item, event.seq, ttl) for item in event.items)
    elif event.type in ("session_cleared", "branch_deleted"):
        entries.clear()
    # usage_recorded changes no item; branch_created starts from the parent's prefix,
    # which the caller supplies as the start snapshot (eventstore.history.branch_base)
    return entries


def removal_ttl(removed: Sequence[int | None], own: int | None, *, pop: bool) -> int | None:
    """The ``ttl`` of an event that removes items whose expiries are ``removed``.

    A pop expires exactly when the item it removes does (``None``: never), whatever
    the writer's clock or TTL setting: earlier would bring the item back, later would
    make the pop remove an older item once its own has expired. A clear expires no
    earlier than the latest of the items it removes and of its writer's own ``ttl``
    (``None`` if any of them never expires).

    Args:
        removed: Expiry of each removed item (a pop removes one).
        own: The ``ttl`` the writer would give the event by its own clock and setting.
        pop: Whether the event is a pop (else a clear).
    """
    if pop:
        return removed[-1] if removed else own
    ttls = [*removed, own]
    if any(t is None for t in ttls):
        return None
    return max(t for t in ttls if t is not None)


CLEARING = ("session_cleared", "branch_deleted")


def fold_forward(
    events: Iterable[StoredEvent], start: Snapshot | None = None, *, now: float | None = None
) -> Snapshot:
    """Fold events (oldest first) onto ``start``; expired events are skipped.

    Events at or below ``start.seq`` are ignored, so a redelivered event changes nothing.
    A ``start`` with sealed chunks is folded on its tail (``entries``); an event that
    clears the state drops the sealed chunks too. The caller checks first
    (``reaches_sealed``) that no event removes more than the tail holds.
    """
    at = time.time() if now is None else now
    entries = list(start.entries) if start else []
    seq = start.seq if start else 0
    digest = start.hash if start else None
    sealed = start.sealed if start else None
    for stored in events:
        if stored.event.seq <= seq:
            continue
        seq, digest = stored.event.seq, stored.hash
        if stored.ttl is not None and stored.ttl <= at:
            continue
        event = stored.event
        if event.type in CLEARING or (event.type == "items_replaced" and event.replaced is None):
            sealed = None
        apply_event(entries, event, stored.ttl)
    return Snapshot(seq, tuple(entries), hash=digest, sealed=sealed)


def reaches_sealed(start: Snapshot, events: Iterable[StoredEvent], now: float) -> bool:
    """Whether folding ``events`` onto ``start`` removes entries beyond its tail.

    A pop or a partial ``items_replaced`` deeper than the tail needs the sealed chunks
    read back (the projector then folds the whole state and seals it anew).
    """
    if start.sealed is None:
        return False
    live = len(start.entries)
    for stored in events:
        event = stored.event
        if event.seq <= start.seq or (stored.ttl is not None and stored.ttl <= now):
            continue
        if event.type in CLEARING or (event.type == "items_replaced" and event.replaced is None):
            return False  # everything before is gone: no chunk is needed any more
        if event.type == "item_popped":
            if live == 0:
                return True
            live -= 1
        elif event.type == "items_replaced":
            if event.replaced is not None and event.replaced > live:
                return True
            live += len(event.items) - (event.replaced or 0)
        elif event.type == "items_added":
            live += len(event.items)
    return False


@dataclass
class NewestFirstFold:
    """Fold events newest-first and stop as soon as the answer is known.

    Args:
        limit: Return at most the newest ``limit`` live items (``None``: all).
        now: Clock for TTL checks (epoch seconds); defaults to the current time.

    ``expiring`` tells afterwards whether anything that was folded carries a ``ttl`` (the
    answer may then change with time alone).
    """

    limit: int | None = None
    now: float = field(default_factory=time.time)
    done: bool = False
    newest_seq: int | None = None
    expiring: bool = False
    branch_start: StoredEvent | None = None
    """The ``branch_created`` event the walk reached, if any: the parent's prefix is next."""
    _pending_pops: int = 0
    _collected: list[JsonItem] = field(default_factory=list)
    _ttls: list[int | None] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.limit is not None and self.limit <= 0:
            self.done = True

    def feed(self, stored: StoredEvent) -> None:
        """Consume the next older event."""
        event = stored.event
        if self.newest_seq is None:
            self.newest_seq = event.seq
        if self.done or (stored.ttl is not None and stored.ttl <= self.now):
            return
        self.expiring = self.expiring or stored.ttl is not None
        if event.type in ("session_cleared", "branch_deleted"):
            self.done = True
        elif event.type == "item_popped":
            self._pending_pops += 1
        elif event.type == "items_added":
            self._take(event.items, [stored.ttl] * len(event.items))
        elif event.type == "items_replaced":
            self._take(event.items, [stored.ttl] * len(event.items))
            if event.replaced is None:
                self.done = True
            else:
                self._pending_pops += event.replaced
        elif event.type == "branch_created":
            self.branch_start = stored  # the parent's prefix comes next (the caller's)

    def feed_snapshot(self, snapshot: Snapshot) -> None:
        """Consume the state every older event folds to; the walk is then complete."""
        if not self.done:
            now, entries = self.now, snapshot.entries
            expiring = any(e.ttl is not None for e in entries)
            live = [e for e in entries if e.ttl is None or e.ttl > now] if expiring else entries
            self.expiring = self.expiring or expiring
            self._take([e.item for e in live], [e.ttl for e in live])
        self.done = True

    def feed_rows(self, rows: Sequence[Sequence[Any]]) -> None:
        """Like ``feed_snapshot``, from decoded ``[item, seq, ttl]`` rows, oldest first."""
        if not self.done:
            now = self.now
            ttls = [r[2] for r in rows]
            if ttls.count(None) == len(ttls):
                self._take([r[0] for r in rows], ttls)
            else:
                self.expiring = True
                live = [r for r in rows if r[2] is None or r[2] > now]
                self._take([r[0] for r in live], [r[2] for r in live])
        self.done = True

    def finish(self) -> None:
        """Mark the walk complete (the oldest event has been fed)."""
        self.done = True

    def feed_base(self, base: Snapshot) -> None:
        """Consume a branch's starting state (its parent's prefix) after its own events."""
        self.done = False
        self.feed_snapshot(base)

    @property
    def collected(self) -> int:
        """How many live items have been found so far."""
        return len(self._collected)

    @property
    def pending_pops(self) -> int:
        """Pops seen whose item has not been reached yet (older items they remove)."""
        return self._pending_pops

    def items(self) -> list[JsonItem]:
        """The answer: live items, oldest first."""
        return list(reversed(self._collected))

    def ttls(self) -> list[int | None]:
        """The expiry of each item of ``items()`` (that of the event that added it)."""
        return list(reversed(self._ttls))

    def _take(self, items: Sequence[JsonItem], ttls: Sequence[int | None]) -> None:
        """Collect ``items`` newest first, after the pending pops remove the newest ones.

        Slices, not one step per item: a snapshot hands over thousands at once.
        """
        popped = min(self._pending_pops, len(items))
        self._pending_pops -= popped
        end = len(items) - popped
        kept = end
        if self.limit is not None and kept >= self.limit - len(self._collected):
            kept = self.limit - len(self._collected)
            self.done = True
        self._collected.extend(items[end - kept : end][::-1])
        self._ttls.extend(ttls[end - kept : end][::-1])
