"""The per-user session index (GSI by_user), filled by the projector."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import RequestCounter
from projection_support import History, make_pump, put_events, ts_of

from eventstore import SessionInfo, SessionPage, list_sessions
from eventstore.errors import InvalidInputError


async def seed(endpoint: Any, boto3_client: Any, table: str) -> dict[str, History]:
    """30 sessions of ann and 5 of bob, interleaved in time; ann-07 has a tool-only tail."""
    histories: dict[str, History] = {}
    events = []
    for n in range(35):
        user = "bob" if n % 7 == 3 else "ann"
        session_id = f"{user}-{n:02d}"
        h = histories[session_id] = History(session_id, user_id=user)
        events.append(h.build(("add", [{"role": "user", "content": f"Question {n} from {user}"}]),
                              ts_of(n)))
        events.append(h.build(("add", [{"role": "assistant", "content": "Answer"}]), ts_of(n)))
    put_events(boto3_client, table, events)
    make_pump(endpoint, table).drain()
    return histories


async def test_pages_of_a_users_sessions_newest_first(
    endpoint: Any, boto3_client: Any, aio_client: Any, table: str
) -> None:
    histories = await seed(endpoint, boto3_client, table)
    ann = sorted((s for s in histories if s.startswith("ann")), reverse=True)
    assert len(ann) == 30
    counter = RequestCounter(boto3_client)
    first = await list_sessions(boto3_client, table, "ann")
    assert isinstance(first, SessionPage) and first.cursor is not None
    assert [s.session_id for s in first.sessions] == ann[:20]
    second = await list_sessions(aio_client, table, "ann", cursor=first.cursor)
    assert [s.session_id for s in second.sessions] == ann[20:]
    assert second.cursor is None
    assert counter.counts == {"Query": 2}  # the index page and the user's usage totals
    newest = first.sessions[0]
    assert newest == SessionInfo(
        session_id="ann-34", title="Question 34 from ann", last_active=ts_of(34),
        item_count=2, created=ts_of(34),
    )
    bob = await list_sessions(boto3_client, table, "bob", limit=20)
    assert [s.session_id for s in bob.sessions] == ["bob-31", "bob-24", "bob-17", "bob-10",
                                                    "bob-03"]
    assert (await list_sessions(boto3_client, table, "nobody")).sessions == []


async def test_new_activity_moves_a_session_to_the_top(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    histories = await seed(endpoint, boto3_client, table)
    old = histories["ann-00"]
    put_events(boto3_client, table, [old.build(("add", [{"role": "user", "content": "back"}]),
                                               ts_of(100))])
    make_pump(endpoint, table).drain()
    page = await list_sessions(boto3_client, table, "ann", limit=3)
    assert [s.session_id for s in page.sessions] == ["ann-00", "ann-34", "ann-33"]
    top = page.sessions[0]
    assert (top.title, top.item_count, top.created, top.last_active) == (
        "Question 0 from ann", 3, ts_of(0), ts_of(100))
    everything = []
    cursor = None
    while True:
        page = await list_sessions(boto3_client, table, "ann", limit=7, cursor=cursor)
        everything += [s.session_id for s in page.sessions]
        cursor = page.cursor
        if cursor is None:
            break
    assert len(everything) == len(set(everything)) == 30  # the old index row is gone


async def test_bad_arguments_are_rejected_before_any_request(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    histories = await seed(endpoint, boto3_client, table)
    assert histories
    page = await list_sessions(boto3_client, table, "ann", limit=5)
    counter = RequestCounter(boto3_client)
    for kwargs in ({"limit": 0}, {"limit": 1001}, {"limit": True}, {"cursor": "garbage!"},
                   {"cursor": ""}):
        with pytest.raises(InvalidInputError):
            await list_sessions(boto3_client, table, "ann", **kwargs)
    with pytest.raises(InvalidInputError, match="another user"):
        await list_sessions(boto3_client, table, "bob", cursor=page.cursor)
    with pytest.raises(InvalidInputError):
        await list_sessions(boto3_client, table, "")
    assert counter.total == 0
