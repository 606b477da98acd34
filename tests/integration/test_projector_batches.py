"""Projector batches through the local pump: coalescing, idempotence, gaps, poison records."""

from __future__ import annotations

import random
import re
import time
from typing import Any

import pytest
from projection_support import (
    History,
    dump,
    expected_items,
    make_pump,
    put_events,
    stream_records,
    ts_of,
    view_items,
)

from convlog.rebuild import rebuild_session
from eventstore import DynamoDBSession
from eventstore.log import EventLog
from eventstore.records import StoredEvent, encode_event
from eventstore.snapshots import decode_snapshot
from eventstore.views import decode_meta
from stream_handlers.projector import build_handler

SESSIONS = ("alpha", "beta", "gamma")


def tool_history() -> tuple[list[StoredEvent], dict[str, list[StoredEvent]], int]:
    """100 events over 3 sessions; every 10th is a tool call answered 3 events later."""
    histories = {s: History(s, user_id="u1") for s in SESSIONS}
    events: list[StoredEvent] = []
    pending: dict[int, str] = {}
    for i in range(100):
        session = SESSIONS[i % 3]
        if i % 10 == 0:
            item: dict[str, Any] = {"type": "function_call", "call_id": f"c{i}", "name": "lookup",
                                    "arguments": f'{{"n": {i}, "scope": "all"}}'}
            pending[i + 3] = f"c{i}"
        elif i in pending:
            item = {"type": "function_call_output", "call_id": pending[i], "output": f"result {i}"}
        else:
            item = {"role": "user" if i % 2 else "assistant", "content": f"message {i}"}
        events.append(histories[session].build(("add", [item]), ts_of(i)))
    by_session = {s: [e for e in events if e.event.session_id == s] for s in SESSIONS}
    return events, by_session, len(pending)


async def test_batch_of_100_over_3_sessions_writes_each_view_once(
    endpoint: Any, boto3_client: Any, table: str, counter: Any
) -> None:
    events, by_session, tools = tool_history()
    put_events(boto3_client, table, events)
    counter.reset()
    pump = make_pump(endpoint, table, handler_client=boto3_client)
    assert pump.drain() == 100
    assert pump.stats.batches == 1
    # one BatchGetItem (the views of all 3 sessions), one PutItem each for snapshot and
    # meta per session; the tool-cache entries, without a transaction: per session one
    # BatchGetItem (the tool's mark, the session's purge tombstone), per entry a PutItem
    # (its owner record), a staging and a committing UpdateItem
    assert counter.counts == {"BatchGetItem": 1 + 3, "PutItem": 6 + tools,
                              "UpdateItem": 2 * tools}
    views = view_items(boto3_client, table)
    session_views = [i["sk"]["S"] for i in views if i["pk"]["S"].startswith("SESSION#")]
    assert sorted(sk for sk in session_views if not sk.startswith("CACHE#")) == [
        "META", "META", "META", "SNAPSHOT", "SNAPSHOT", "SNAPSHOT"]
    assert len([sk for sk in session_views if sk.startswith("CACHE#")]) == tools  # owners
    assert len([i for i in views if i["pk"]["S"] == "TOOL#lookup"]) == tools == 10
    for session in SESSIONS:
        reader = DynamoDBSession(session, boto3_client, table)
        assert await reader.get_items() == expected_items(by_session[session])


def _undated(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Views without the stream-clock attributes of tool entries and their owner records."""
    def strip(item: dict[str, Any]) -> dict[str, Any]:
        if item["pk"]["S"].startswith("TOOL#") or item["sk"]["S"].startswith("CACHE#"):
            return {k: v for k, v in item.items() if k not in ("created", "ttl")}
        return item
    return [strip(i) for i in items]


def mixed_history(big: bool = True) -> list[StoredEvent]:
    """Deterministic events of 3 sessions: adds, pops, a clear, tool calls, a huge event."""
    rng = random.Random(7)
    histories = {s: History(s, user_id=f"user-{s[0]}") for s in SESSIONS}
    events: list[StoredEvent] = []
    for i in range(60):
        session = SESSIONS[rng.randrange(3)]
        h = histories[session]
        roll = rng.random()
        if i == 55 and big:  # compressed it still needs two parts, and so does the snapshot
            noise = rng.randbytes(450_000).hex()
            spec: tuple[str, Any] = ("add", [{"role": "user", "content": noise}])
        elif roll < 0.1 and h.seq:
            spec = ("pop", {"role": "assistant", "content": "popped"})
        elif roll < 0.13 and h.seq:
            spec = ("clear", None)
        elif roll < 0.3:
            spec = ("add", [{"type": "function_call", "call_id": f"call{i}", "name": "add",
                             "arguments": f'{{"a": {i % 4}, "b": 1}}'},
                            {"type": "function_call_output", "call_id": f"call{i}",
                             "output": str(i % 4 + 1)}])
        else:
            spec = ("add", [{"role": "user", "content": f"turn {i}"}])
        events.append(h.build(spec, ts_of(i)))
    return events


async def test_redelivery_and_replay_leave_views_byte_identical(
    endpoint: Any, boto3_client: Any
) -> None:
    from eventstore import create_table_if_not_exists

    events = mixed_history()
    tables = {"once": "proj-once", "twice": "proj-twice"}
    for name in tables.values():
        await create_table_if_not_exists(boto3_client, name)
    handler_twice = build_handler(boto3_client, tables["twice"])

    def deliver_twice(event: dict[str, Any], context: Any) -> Any:
        first = handler_twice(event, context)
        assert handler_twice(event, context) == first
        return first

    pumps = {
        "once": make_pump(endpoint, tables["once"], batch_size=7),
        "twice": make_pump(endpoint, tables["twice"], deliver_twice, batch_size=7),
    }
    for part in (events[:25], events[25:]):  # the second half builds on stored views
        for key, name in tables.items():
            put_events(boto3_client, name, part)
            pumps[key].drain()
    once = dump(view_items(boto3_client, tables["once"]))
    # tool entries are dated by each table's own stream clock: compare them without it
    assert dump(_undated(view_items(boto3_client, tables["once"]))) == dump(
        _undated(view_items(boto3_client, tables["twice"])))
    # the large entry's chunk has parts
    assert re.search(r"SNAPSHOT#C[0-9]{12}#[0-9]{6}#[0-9a-f]{16}#0001", once)

    replay = make_pump(endpoint, tables["once"])  # a new reader starts at TRIM_HORIZON
    assert replay.drain() == len(stream_records(endpoint, tables["once"]))
    assert dump(view_items(boto3_client, tables["once"])) == once

    for session in SESSIONS:
        mine = [e for e in events if e.event.session_id == session]
        reader = DynamoDBSession(session, boto3_client, tables["once"])
        assert await reader.get_items() == expected_items(mine)
        meta = decode_meta(next(i for i in view_items(boto3_client, tables["once"])
                                if i["pk"]["S"] == f"SESSION#{session}" and i["sk"]["S"] == "META"))
        assert (meta.seq, meta.created, meta.last_active) == (
            mine[-1].event.seq, mine[0].event.ts, mine[-1].event.ts)


async def test_a_gap_is_filled_by_reading_the_missing_events(
    endpoint: Any, boto3_client: Any, table: str, counter: Any
) -> None:
    h = History("gappy")
    events = [h.build(("add", [{"role": "user", "content": f"m{i}"}]), ts_of(i)) for i in range(6)]
    put_events(boto3_client, table, events)
    records = stream_records(endpoint, table)
    handler = build_handler(boto3_client, table)
    assert handler({"Records": records[:1]}, None) == {"batchItemFailures": []}
    counter.reset()
    assert handler({"Records": [records[5], records[3]]}, None) == {"batchItemFailures": []}
    assert counter.counts == {"BatchGetItem": 1, "Query": 1, "PutItem": 2}  # views, seq 2..6
    snapshot = decode_snapshot(next(i for i in view_items(boto3_client, table)
                                    if i["sk"]["S"] == "SNAPSHOT"))
    assert (snapshot.seq, snapshot.items()) == (6, expected_items(events))


def poison_item(h: History, ts: str) -> dict[str, Any]:
    """An event item of a schema version this code does not know (written by a 'future' writer)."""
    stored = h.build(("add", [{"role": "user", "content": "from the future"}]), ts)
    item = encode_event(stored.event, stored.prev_hash, stored.hash, ttl=None)[0]
    item["v"] = {"N": "99"}
    return item


async def test_poison_record_in_a_batch_of_100(
    endpoint: Any, boto3_client: Any, table: str, caplog: pytest.LogCaptureFixture
) -> None:
    histories = {s: History(s) for s in SESSIONS}
    before = [histories[SESSIONS[i % 3]].build(("add", [{"role": "user", "content": f"b{i}"}]),
                                               ts_of(i)) for i in range(49)]
    poison = poison_item(histories["gamma"], ts_of(49))
    after = [histories[SESSIONS[i % 2]].build(("add", [{"role": "user", "content": f"a{i}"}]),
                                              ts_of(50 + i)) for i in range(50)]
    put_events(boto3_client, table, before)
    boto3_client.put_item(TableName=table, Item=poison)
    put_events(boto3_client, table, after)

    handler = build_handler(boto3_client, table)
    calls: list[tuple[str, int, list[str]]] = []

    def recording(event: dict[str, Any], context: Any) -> Any:
        response = handler(event, context)
        first = event["Records"][0]["dynamodb"]["SequenceNumber"]
        calls.append((first, len(event["Records"]),
                      [f["itemIdentifier"] for f in response["batchItemFailures"]]))
        return response

    records = stream_records(endpoint, table)
    poison_id = records[49]["dynamodb"]["SequenceNumber"]
    pump = make_pump(endpoint, table, recording, max_retries=2)
    assert pump.drain() == 99
    assert calls[0] == (records[0]["dynamodb"]["SequenceNumber"], 100, [poison_id])
    assert calls[1] == calls[2] == (poison_id, 51, [poison_id])  # retried from the poison
    assert calls[3] == (records[50]["dynamodb"]["SequenceNumber"], 50, [])
    assert len(calls) == 4
    assert (pump.stats.skipped, pump.stats.retries) == (1, 2)

    views = {(i["pk"]["S"], i["sk"]["S"]): i for i in view_items(boto3_client, table)}
    for session in SESSIONS:
        mine = [e for e in before + after if e.event.session_id == session]
        snapshot = decode_snapshot(views[(f"SESSION#{session}", "SNAPSHOT")])
        assert (snapshot.seq, snapshot.items()) == (mine[-1].event.seq, expected_items(mine))
    rejected = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("session gamma blocked at seq 17" in m for m in rejected)  # table copy bad too
    assert any("giving up" in m and "SESSION#gamma EVENT#000000000017" in m for m in rejected)


async def test_views_stop_before_an_unreadable_event(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    h = History("blocked")
    good = [h.build(("add", [{"role": "user", "content": f"m{i}"}]), ts_of(i)) for i in range(2)]
    put_events(boto3_client, table, good)
    boto3_client.put_item(TableName=table, Item=poison_item(h, ts_of(2)))
    later = [h.build(("add", [{"role": "user", "content": f"m{i}"}]), ts_of(i)) for i in (3, 4)]
    put_events(boto3_client, table, later)
    records = stream_records(endpoint, table)
    ids = [r["dynamodb"]["SequenceNumber"] for r in records]
    handler = build_handler(boto3_client, table)
    response = handler({"Records": records}, None)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ids[2:]
    snapshot = decode_snapshot(next(i for i in view_items(boto3_client, table)
                                    if i["sk"]["S"] == "SNAPSHOT"))
    assert (snapshot.seq, snapshot.items()) == (2, expected_items(good))
    # redelivering only the records after the bad one still cannot skip it
    response = handler({"Records": records[3:]}, None)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == ids[3:]


async def test_chunks_of_a_cleared_state_are_tombstoned_and_rebuild_removes_the_rest(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    h = History("shrinks")
    noise = random.Random(5).randbytes(450_000).hex()
    big = [h.build(("add", [{"role": "user", "content": noise}]), ts_of(0))]
    put_events(boto3_client, table, big)
    pump = make_pump(endpoint, table)
    pump.drain()
    keys = [i["sk"]["S"] for i in view_items(boto3_client, table)]
    assert keys[:2] == ["META", "SNAPSHOT"] and len(keys) == 4
    assert re.fullmatch(r"SNAPSHOT#C[0-9]{12}#[0-9]{6}", keys[2])  # its chunk...
    assert keys[3].startswith(keys[2] + "#") and keys[3].endswith("#0001")  # ...in parts
    small = [h.build(("clear", None), ts_of(1)),
             h.build(("add", [{"role": "user", "content": "fresh start"}]), ts_of(2))]
    put_events(boto3_client, table, small)
    pump.drain()
    views = view_items(boto3_client, table)
    assert [i["sk"]["S"] for i in views] == keys  # the projector deletes nothing...
    assert set(views[2]) == {"pk", "sk", "ttl", "stale"}  # ...but empties the old chunk
    assert int(views[2]["ttl"]["N"]) <= time.time()  # and DynamoDB's TTL removes it
    assert decode_snapshot(views[1]).items() == [{"role": "user", "content": "fresh start"}]
    reader = DynamoDBSession("shrinks", boto3_client, table)
    assert await reader.get_items() == [{"role": "user", "content": "fresh start"}]
    log = EventLog(boto3_client, table)  # convlog rebuild --reset: what remains goes
    assert await rebuild_session(log, "shrinks", build_handler(boto3_client, table),
                                 reset=True) == 3
    assert [i["sk"]["S"] for i in view_items(boto3_client, table)] == ["META", "SNAPSHOT"]
    assert await reader.get_items() == [{"role": "user", "content": "fresh start"}]
