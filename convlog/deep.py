"""``verify --deep``: fold the log and compare it with the session's views.

The views (``SNAPSHOT``, ``META``) are derived, so a table writer can forge them: reads
already ignore a snapshot the chain does not prove, but a forged snapshot bound to the
right head, or a wrong ``META``, is only found by folding the log again. ``check_views``
streams the events once, oldest first, captures the fold at the seq each view claims,
and names every view that disagrees (seq ahead of the log, content, hash, item count),
or that cannot be decoded. ``convlog rebuild`` uses it to decide to replace the views.

Example:
    ```python
    problems = await check_views(EventLog(client, "agent_sessions"), "user-123")
    for problem in problems:
        print(problem.view, problem.message)
    ```
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from eventstore.chunks import chunk_place
from eventstore.errors import CorruptEventError, PayloadStoreRequiredError
from eventstore.fold import Entry, apply_event
from eventstore.keys import SNAPSHOT_SK
from eventstore.log import EventLog
from eventstore.records import object_ref
from eventstore.snapshots import decode_snapshot
from eventstore.views import decode_meta, read_view_items


@dataclass(frozen=True)
class ViewProblem:
    """A view that disagrees with the log."""

    view: str  # "SNAPSHOT" or "META"
    message: str


@dataclass
class _State:
    seq: int
    hash: str | None
    items: list[Entry]


async def check_views(
    log: EventLog, session_id: str, *, now: float | None = None
) -> list[ViewProblem]:
    """Compare ``SNAPSHOT`` and ``META`` with the fold of the log; ``[]`` when they agree.

    A view behind the log (the projector lags) agrees when it matches the fold at its
    own seq; one ahead of the log, or holding other items, a hash of another event, or
    another item count, does not.
    """
    at = time.time() if now is None else now
    meta_item, snapshot_head, snapshot_parts = await read_view_items(
        log.db, log.table_name, session_id)
    problems: list[ViewProblem] = []
    wanted: set[int] = set()
    snapshot = meta = None
    if snapshot_head is not None:
        try:
            fetched = {}  # chunks of the head's epoch (or a version 2 body) kept in S3
            epoch = snapshot_head.get("epoch", {}).get("N")
            for item in [snapshot_head, *snapshot_parts]:
                place = chunk_place(item["sk"]["S"])
                if object_ref(item) is not None and (place is None or str(place[0]) == epoch):
                    fetched[item["sk"]["S"]] = await log.fetch_state(item) or b""
            snapshot = decode_snapshot(snapshot_head, snapshot_parts, fetched=fetched,
                                       raw=fetched.get(SNAPSHOT_SK))
            wanted.add(snapshot.seq)
        except (CorruptEventError, PayloadStoreRequiredError) as exc:
            problems.append(ViewProblem("SNAPSHOT", f"SNAPSHOT cannot be decoded: {exc}"))
    if meta_item is not None:
        try:
            meta = decode_meta(meta_item)
            wanted.add(meta.seq)
        except CorruptEventError as exc:
            problems.append(ViewProblem("META", f"META cannot be decoded: {exc}"))
    states, head = await _fold_at(log, session_id, wanted, at)
    if snapshot is not None:
        state = states.get(snapshot.seq)
        if state is None:
            problems.append(ViewProblem("SNAPSHOT", _absent("SNAPSHOT", snapshot.seq, head)))
        elif snapshot.hash != state.hash:
            problems.append(ViewProblem(
                "SNAPSHOT", f"SNAPSHOT names another hash than seq {snapshot.seq} of the log"))
        elif snapshot.items(at) != [e.item for e in state.items if not e.expired(at)]:
            problems.append(ViewProblem(
                "SNAPSHOT", f"SNAPSHOT at seq {snapshot.seq} holds other items than the log"))
    if meta is not None:
        state = states.get(meta.seq)
        if state is None:
            problems.append(ViewProblem("META", _absent("META", meta.seq, head)))
        elif all(e.ttl is None for e in state.items) and meta.item_count != len(state.items):
            problems.append(ViewProblem(
                "META", f"META counts {meta.item_count} items at seq {meta.seq}, the log "
                f"{len(state.items)}"))
    return problems


def _absent(view: str, seq: int, head: int) -> str:
    if seq > head:
        return f"{view} is at seq {seq}, ahead of the log (seq {head})"
    return f"{view} is at seq {seq}, which the log does not hold"


async def _fold_at(
    log: EventLog, session_id: str, wanted: set[int], now: float
) -> tuple[dict[int, _State], int]:
    """The fold (live entries as the projector keeps them) at each wanted seq."""
    entries: list[Entry] = []
    states: dict[int, _State] = {}
    head = 0
    async for stored in log.iter_events(session_id):
        head = stored.event.seq
        if stored.ttl is None or stored.ttl > now:
            apply_event(entries, stored.event, stored.ttl)
        if head in wanted:
            states[head] = _State(head, stored.hash, list(entries))
    return states, head
