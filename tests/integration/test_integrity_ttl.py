"""The TTL rule (issue 10, case 7): an event that removes items never expires before
the items it removes, whatever the writer's clock or TTL setting.

Each test reads the session as it will be at a later moment (``NewestFirstFold(now=)``,
the clock every read uses for TTL) instead of waiting for it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from cli_helpers import run

import eventstore.session as session_module
from convlog.audit import replay
from eventstore import DynamoDBSession
from eventstore.fold import NewestFirstFold
from eventstore.log import EventLog


def msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def sid() -> str:
    return f"ttl-{uuid.uuid4().hex[:8]}"


def items_at(client: Any, table: str, session_id: str, moment: float) -> list[Any]:
    """``get_items()`` as it will answer at ``moment`` (and replay agrees)."""
    log = EventLog(client, table)
    read = run(log.read_newest(session_id, NewestFirstFold(now=moment))).items
    assert run(replay(log, session_id)).events  # the history is there
    return read


def ttls(client: Any, table: str, session_id: str) -> list[int | None]:
    async def go() -> list[int | None]:
        return [s.ttl async for s in EventLog(client, table).iter_events(session_id)]
    return run(go())


def skew(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    real = time.time
    monkeypatch.setattr(session_module.time, "time", lambda: real() + seconds)


def test_a_pop_by_a_writer_whose_clock_is_behind_does_not_resurrect_the_item(
    boto3_client: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sid()
    writer = DynamoDBSession(s, boto3_client, table, ttl_seconds=600)
    run(writer.add_items([msg("keep")]))
    run(writer.add_items([msg("popped")]))
    skew(monkeypatch, -2)  # the popping worker's clock is 2 s behind
    late = DynamoDBSession(s, boto3_client, table, ttl_seconds=600)
    assert run(late.pop_item()) == msg("popped")
    added, popped = ttls(boto3_client, table, s)[1:]
    assert popped == added  # the pop expires exactly with its item
    assert added is not None
    for moment in (added - 2, added - 1):  # after the pop's own clock ran out
        assert items_at(boto3_client, table, s, moment) == [msg("keep")]


def test_a_permanent_pop_of_an_expiring_item_does_not_remove_an_older_item_later(
    boto3_client: Any, table: str
) -> None:
    s = sid()
    run(DynamoDBSession(s, boto3_client, table).add_items([msg("permanent")]))
    run(DynamoDBSession(s, boto3_client, table, ttl_seconds=60).add_items([msg("short")]))
    assert run(DynamoDBSession(s, boto3_client, table).pop_item()) == msg("short")
    expiry = ttls(boto3_client, table, s)[1]
    assert expiry is not None and ttls(boto3_client, table, s)[2] == expiry
    assert items_at(boto3_client, table, s, expiry + 3600) == [msg("permanent")]


def test_an_expiring_pop_of_a_permanent_item_never_expires(
    boto3_client: Any, table: str
) -> None:
    s = sid()
    run(DynamoDBSession(s, boto3_client, table).add_items([msg("a"), msg("b")]))
    assert run(DynamoDBSession(s, boto3_client, table, ttl_seconds=60).pop_item()) == msg("b")
    assert ttls(boto3_client, table, s) == [None, None]
    assert items_at(boto3_client, table, s, time.time() + 86400) == [msg("a")]


def test_a_clear_with_a_short_ttl_does_not_expire_before_what_it_cleared(
    boto3_client: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = sid()
    run(DynamoDBSession(s, boto3_client, table, ttl_seconds=3600).add_items([msg("long")]))
    skew(monkeypatch, -30)
    run(DynamoDBSession(s, boto3_client, table, ttl_seconds=10).clear_session())
    long_ttl, clear_ttl = ttls(boto3_client, table, s)
    assert long_ttl is not None and clear_ttl is not None and clear_ttl >= long_ttl
    assert items_at(boto3_client, table, s, time.time() + 60) == []
    assert items_at(boto3_client, table, s, long_ttl + 1) == []


def test_a_clear_of_a_permanent_item_never_expires(boto3_client: Any, table: str) -> None:
    s = sid()
    run(DynamoDBSession(s, boto3_client, table).add_items([msg("forever")]))
    run(DynamoDBSession(s, boto3_client, table, ttl_seconds=10).clear_session())
    assert ttls(boto3_client, table, s) == [None, None]
    assert items_at(boto3_client, table, s, time.time() + 86400) == []


def test_a_clear_of_an_empty_session_uses_the_writers_ttl(boto3_client: Any, table: str) -> None:
    s = sid()
    before = int(time.time())
    run(DynamoDBSession(s, boto3_client, table, ttl_seconds=10).clear_session())
    (clear_ttl,) = ttls(boto3_client, table, s)
    assert clear_ttl is not None and before + 10 <= clear_ttl <= int(time.time()) + 10
