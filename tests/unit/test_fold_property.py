"""Property tests of ``eventstore.fold``: newest-first equals oldest-first, with snapshots."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from eventstore.events import GENESIS_HASH, Event, ItemPopped, ItemsAdded, SessionCleared
from eventstore.fold import NewestFirstFold, Snapshot, fold_forward
from eventstore.records import StoredEvent

NOW = 1_800_000_000.0

step = st.one_of(
    st.tuples(st.just("add"), st.integers(min_value=1, max_value=4)),
    st.tuples(st.just("pop"), st.just(0)),
    st.tuples(st.just("clear"), st.just(0)),
)
ttl = st.one_of(st.none(), st.sampled_from([int(NOW) - 10, int(NOW) + 10]))


def build(steps: list[tuple[str, int]], ttls: list[int | None]) -> list[StoredEvent]:
    events: list[StoredEvent] = []
    counter = 0
    for seq, ((kind, size), expiry) in enumerate(zip(steps, ttls, strict=True), start=1):
        common: dict[str, Any] = {"session_id": "s", "seq": seq, "ts": "t", "token": f"k{seq}"}
        event: Event
        if kind == "add":
            items = [{"n": counter + i} for i in range(size)]
            counter += size
            event = ItemsAdded(items=items, **common)
        elif kind == "pop":
            event = ItemPopped(item={"popped": seq}, **common)
        else:
            event = SessionCleared(**common)
        events.append(StoredEvent(event, GENESIS_HASH, GENESIS_HASH, expiry))
    return events


def newest_first(events: list[StoredEvent], limit: int | None,
                 snapshot: Snapshot | None = None) -> list[Any]:
    fold = NewestFirstFold(limit=limit, now=NOW)
    for stored in reversed(events):
        if fold.done:
            break
        if snapshot is not None and stored.event.seq <= snapshot.seq:
            fold.feed_snapshot(snapshot)
            break
        fold.feed(stored)
    if snapshot is not None:
        fold.feed_snapshot(snapshot)
    fold.finish()
    return fold.items()


def forward(events: list[StoredEvent], limit: int | None) -> list[Any]:
    items = fold_forward(events, now=NOW).items(now=NOW)
    if limit is None:
        return items
    return items[-limit:] if limit > 0 else []


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[StoredEvent], int | None, int]:
    steps = draw(st.lists(step, max_size=25))
    ttls = draw(st.lists(ttl, min_size=len(steps), max_size=len(steps)))
    limit = draw(st.one_of(st.none(), st.integers(min_value=0, max_value=10)))
    cut = draw(st.integers(min_value=0, max_value=len(steps)))
    return build(steps, ttls), limit, cut


@settings(max_examples=200, deadline=None)
@given(histories())
def test_newest_first_equals_forward_fold(case: tuple[list[StoredEvent], int | None, int]) -> None:
    events, limit, _ = case
    assert newest_first(events, limit) == forward(events, limit)


@settings(max_examples=200, deadline=None)
@given(histories())
def test_snapshot_then_tail_equals_forward_fold(
    case: tuple[list[StoredEvent], int | None, int],
) -> None:
    events, limit, cut = case
    snapshot = fold_forward(events[:cut], now=NOW)
    assert snapshot.seq == cut
    assert newest_first(events, limit, snapshot) == forward(events, limit)
    # folding the tail forward onto the snapshot is the same as folding everything
    assert fold_forward(events, snapshot, now=NOW).items(now=NOW) == forward(events, None)


def test_redelivered_events_change_nothing() -> None:
    events = build([("add", 2), ("pop", 0), ("add", 1)], [None, None, None])
    once = fold_forward(events, now=NOW)
    again = fold_forward(events + events[1:], once, now=NOW)
    assert again == once
    assert once.items(now=NOW) == [{"n": 0}, {"n": 2}]
