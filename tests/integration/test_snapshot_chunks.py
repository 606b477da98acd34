"""Snapshots in chunks: reads and projector work that follow what they need (issues 13, 14).

Deterministic figures only (requests, round trips, capacity, bytes, entries decoded),
measured on the embedded endpoint through ``benchmarks.meter.CapacityMeter``:

* ``get_items(limit=20)`` at 10,000 items reads and decodes about what it does at 100;
* ``get_items()`` at 1,000 items behind a fresh snapshot is one round trip and reads
  fewer capacity units than the single-item design's one ``GetItem``;
* the projector's writes per batch stay flat as one session grows to 10,000 items;
* removals deeper than the tail, clears and version 2 snapshots still read exactly.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from projection_support import History, expected_items, insert_records, put_events, ts_of

import eventstore.reader as reader_module
from benchmarks.meter import CapacityMeter
from convlog.deep import check_views
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.capacity import item_size, read_units
from eventstore.chunks import CHUNK_PREFIX
from eventstore.fold import NewestFirstFold
from eventstore.keys import SNAPSHOT_SK, is_event_sk, seq_of, session_pk
from eventstore.log import FIRST_PAGE, EventLog
from stream_handlers.projector import build_handler

TEXT = "the order shipped today and arrives tomorrow morning " * 5  # ~270 bytes


def turn(i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{i} {TEXT}"},
            {"role": "assistant", "content": f"{i} {TEXT}"}]


def grow(client: Any, table: str, history: History, turns: int, start: int = 0,
         batch: int = 100, meter: CapacityMeter | None = None) -> list[Any]:
    """Write ``turns`` one-turn events and project them in batches; per-batch usage."""
    events = [history.build(("add", turn(start + i)), ts_of(start + i)) for i in range(turns)]
    put_events(client, table, events)
    handler = build_handler(client, table)
    records = insert_records(events, first_id=start + 1)
    used = []
    for first in range(0, len(records), batch):
        with meter.measure() if meter else _nothing() as usage:
            assert handler({"Records": records[first : first + batch]}, None) == {
                "batchItemFailures": []}
        used.append(usage)
    return used


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *_: Any) -> None:
        return None


@pytest.fixture
def meter(boto3_client: Any, endpoint: EmbeddedEndpoint) -> CapacityMeter:
    return CapacityMeter(boto3_client, shadow=endpoint.client("dynamodb"))


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """How many snapshot entries each read decoded (the head's tail and every chunk)."""
    counts: list[int] = []
    head_rows, decode_rows = reader_module.head_rows, reader_module.decode_rows

    def count_head(head: Any) -> Any:
        rows = head_rows(head)
        counts.append(len(rows))
        return rows

    def count_chunk(*args: Any, **kwargs: Any) -> Any:
        rows, digest = decode_rows(*args, **kwargs)
        counts.append(len(rows))
        return rows, digest

    monkeypatch.setattr(reader_module, "head_rows", count_head)
    monkeypatch.setattr(reader_module, "decode_rows", count_chunk)
    yield counts


async def test_limit_20_at_10000_items_costs_what_it_costs_at_100(
    boto3_client: Any, table: str, meter: CapacityMeter, decoded: list[int]
) -> None:
    small, large = History("small"), History("large")
    grow(boto3_client, table, small, 50)
    grow(boto3_client, table, large, 5_000)
    figures = {}
    for name, length in (("small", 100), ("large", 10_000)):
        session = DynamoDBSession(name, boto3_client, table)
        decoded.clear()
        with meter.measure() as usage:
            items = await session.get_items(limit=20)
        assert items == [i for t in range(length // 2 - 10, length // 2) for i in turn(t)]
        assert usage.round_trips == 1 and usage.requests == 1  # the head, meta, 18 events
        figures[name] = (usage.rcu, usage.bytes_received, sum(decoded))
    (rcu_s, bytes_s, rows_s), (rcu_l, bytes_l, rows_l) = figures["small"], figures["large"]
    assert rcu_l <= 1.5 * rcu_s, figures
    assert bytes_l <= 1.5 * bytes_s, figures
    assert rows_l <= 1.5 * rows_s, figures  # the tail only: no chunk, at 10,000 items


async def test_full_read_at_1000_items_is_one_round_trip_under_the_single_items_rcu(
    boto3_client: Any, table: str, meter: CapacityMeter
) -> None:
    history = History("thousand")
    grow(boto3_client, table, history, 500)
    session = DynamoDBSession("thousand", boto3_client, table)
    with meter.measure() as usage:
        items = await session.get_items()
    assert items == [i for t in range(500) for i in turn(t)]
    assert (usage.round_trips, usage.requests) == (1, 1)
    # one page of 18 rows: 14 chunks, the head, the meta item and the newest events (the
    # one at the snapshot's seq proves it: no event the snapshot covers is decoded)
    peer_item = {"session_id": {"S": "thousand"}, "conversation_data": {"S": json.dumps(items)}}
    assert usage.rcu <= read_units(item_size(peer_item), consistent=False)


async def test_projector_work_per_batch_stays_flat_as_one_session_grows(
    boto3_client: Any, table: str, meter: CapacityMeter
) -> None:
    history = History("growing")
    used = grow(boto3_client, table, history, 5_000, meter=meter)  # 10,000 items
    first, last = used[1:11], used[-10:]  # batches 2-11 vs the last 10 (100 events each)
    for figure in ("wcu", "rcu", "bytes_sent", "bytes_received"):
        early = sum(getattr(u, figure) for u in first)
        late = sum(getattr(u, figure) for u in last)
        assert late <= 1.5 * early, (figure, early, late)
    session = DynamoDBSession("growing", boto3_client, table)
    with meter.measure() as usage:
        assert await session.get_items() == [i for t in range(5_000) for i in turn(t)]
    # about 155 chunks: the first page holds 16 rows of them; the others (from where the page
    # stopped) and the newest events are read at once; no row is read twice, and of the
    # events only the first page's, the newest of them proving the snapshot
    assert (usage.round_trips, usage.requests) == (2, 3)
    assert len(usage.read_keys) == len(set(usage.read_keys))
    assert len([k for k in usage.read_keys if is_event_sk(k)]) == FIRST_PAGE


async def test_pops_past_the_tail_clears_and_new_turns_read_exactly(
    boto3_client: Any, table: str, meter: CapacityMeter
) -> None:
    history = History("popper")
    events = [history.build(("add", turn(i)), ts_of(i)) for i in range(300)]
    n = 300
    for _ in range(200):  # deeper than any tail: the projector reads chunks back
        events.append(history.build(("pop", {"role": "user", "content": "gone"}), ts_of(n)))
        n += 1
    events += [history.build(("add", turn(n + i)), ts_of(n + i)) for i in range(50)]
    n += 50
    events.append(history.build(("clear", None), ts_of(n)))
    events += [history.build(("add", turn(n + 1 + i)), ts_of(n + 1 + i)) for i in range(150)]
    handler = build_handler(boto3_client, table)
    records = insert_records(events)
    checkpoints = {300: None, 500: None, 550: None, 551: None, len(events): None}
    for first in range(0, len(records), 50):
        put_events(boto3_client, table, events[first : first + 50])
        assert handler({"Records": records[first : first + 50]}, None) == {
            "batchItemFailures": []}
        done = min(first + 50, len(records))
        if done in checkpoints or first + 50 >= len(records):
            session = DynamoDBSession("popper", boto3_client, table)
            assert await session.get_items() == expected_items(events[:done]), done
            assert await session.get_items(limit=7) == expected_items(events[:done])[-7:]
    with meter.measure() as usage:
        items = await DynamoDBSession("popper", boto3_client, table).get_items()
    assert items == expected_items(events)
    # the chunks of the two older epochs (expired tombstones, until DynamoDB's TTL deletes
    # them) sort above the head: the first page is 14 of them, 3 chunks and the head; the
    # events come in a second request, and no chunk is read twice
    assert (usage.round_trips, usage.requests) == (2, 2)
    chunk_keys = [k for k in usage.read_keys if k.startswith("SNAPSHOT#C")]
    assert len(chunk_keys) == len(set(chunk_keys)) == 17
    events_read = [seq_of(k) for k in usage.read_keys if is_event_sk(k)]
    assert len(events_read) == FIRST_PAGE and max(events_read) == len(events)


async def test_a_version_2_snapshot_is_read_and_replaced(
    boto3_client: Any, table: str
) -> None:
    history = History("legacy")
    events = [history.build(("add", turn(i)), ts_of(i)) for i in range(30)]
    put_events(boto3_client, table, events)
    entries = [{"i": item, "s": e.event.seq, "t": None}
               for e in events for item in e.event.items]  # type: ignore[union-attr]
    boto3_client.put_item(TableName=table, Item={
        "pk": {"S": session_pk("legacy")}, "sk": {"S": SNAPSHOT_SK}, "v": {"N": "2"},
        "seq": {"N": "30"}, "hash": {"S": events[-1].hash}, "count": {"N": "60"},
        "enc": {"S": "json"},
        "payload": {"S": json.dumps({"entries": entries}, separators=(",", ":"))},
    })
    result = await EventLog(boto3_client, table).read_newest("legacy", NewestFirstFold())
    assert result.items == expected_items(events)
    assert result.snapshot_seq == 30 and result.requests == 1
    more = [history.build(("add", turn(30 + i)), ts_of(30 + i)) for i in range(100)]
    put_events(boto3_client, table, more)
    handler = build_handler(boto3_client, table)
    assert handler({"Records": insert_records(more, first_id=31)}, None) == {
        "batchItemFailures": []}
    head = boto3_client.get_item(TableName=table, Key={
        "pk": {"S": session_pk("legacy")}, "sk": {"S": SNAPSHOT_SK}})["Item"]
    assert head["v"] == {"N": "3"} and head["seq"] == {"N": "130"}
    assert await DynamoDBSession("legacy", boto3_client, table).get_items() == expected_items(
        events + more)


async def test_a_tampered_chunk_is_never_served_and_verify_deep_names_it(
    boto3_client: Any, table: str
) -> None:
    history = History("tampered")
    grow(boto3_client, table, history, 300)  # 600 items: the head and 7 chunks
    items = boto3_client.query(
        TableName=table, KeyConditionExpression="pk = :pk AND begins_with(sk, :c)",
        ExpressionAttributeValues={":pk": {"S": session_pk("tampered")},
                                   ":c": {"S": CHUNK_PREFIX}})["Items"]
    assert len(items) >= 7
    victim = dict(items[-1])  # the oldest chunk: a full read needs it, limit=20 does not
    forged = [{**e, "content": "forged"} for e in [turn(0)[0]]]
    victim["payload"] = {"S": json.dumps([[forged[0], 1, None]], separators=(",", ":"))}
    victim["enc"] = {"S": "json"}
    boto3_client.put_item(TableName=table, Item=victim)
    log = EventLog(boto3_client, table)
    whole = await log.read_newest("tampered", NewestFirstFold())
    assert whole.items == [i for t in range(300) for i in turn(t)]
    assert whole.snapshot_seq is None  # the events were folded instead
    newest = await log.read_newest("tampered", NewestFirstFold(limit=20))
    assert newest.snapshot_seq == 300  # the chunks it needs are intact
    problems = await check_views(log, "tampered")
    assert [p.view for p in problems] == ["SNAPSHOT"]
    assert "cannot be decoded" in problems[0].message


async def test_a_version_2_snapshot_in_parts_serves_a_limited_read(
    boto3_client: Any, table: str
) -> None:
    """A limited read reads from the head down; a version 2 head's parts sort above it,
    so they are read by their digest's key range (else the snapshot would be ignored)."""
    history = History("legacy-limited")
    events = [history.build(("add", turn(i)), ts_of(i)) for i in range(30)]
    put_events(boto3_client, table, events)
    entries = [{"i": item, "s": e.event.seq, "t": None}
               for e in events for item in e.event.items]  # type: ignore[union-attr]
    payload = json.dumps({"entries": entries}, separators=(",", ":")).encode()
    digest = hashlib.sha256(payload).hexdigest()
    pk = {"S": session_pk("legacy-limited")}
    half = len(payload) // 2
    boto3_client.put_item(TableName=table, Item={
        "pk": pk, "sk": {"S": SNAPSHOT_SK}, "v": {"N": "2"}, "seq": {"N": "30"},
        "hash": {"S": events[-1].hash}, "count": {"N": "60"}, "parts": {"N": "2"},
        "enc": {"S": "json"}, "payload_sha256": {"S": digest},
        "payload": {"B": payload[:half]}})
    boto3_client.put_item(TableName=table, Item={
        "pk": pk, "sk": {"S": f"{SNAPSHOT_SK}#{digest[:16]}#0001"}, "part": {"N": "1"},
        "payload": {"B": payload[half:]}})
    log = EventLog(boto3_client, table)
    newest = await log.read_newest("legacy-limited", NewestFirstFold(limit=30))
    assert newest.items == expected_items(events)[-30:]
    assert newest.snapshot_seq == 30 and newest.requests == 2  # the page, then the parts
    whole = await log.read_newest("legacy-limited", NewestFirstFold())
    assert whole.items == expected_items(events)
    assert whole.snapshot_seq == 30 and whole.requests == 1  # the parts came in the page


async def test_a_version_2_snapshots_parts_are_emptied_with_puts_only(
    boto3_client: Any, table: str
) -> None:
    """The projector's role has no DeleteItem: an older view's part is overwritten by a
    small expired item (before, a delete_item AWS would refuse, its error swallowed)."""
    history = History("legacy-parts")
    events = [history.build(("add", turn(i)), ts_of(i)) for i in range(3)]
    put_events(boto3_client, table, events)
    part = {"pk": {"S": session_pk("legacy-parts")}, "sk": {"S": f"{SNAPSHOT_SK}#{'a' * 16}#0001"},
            "seq": {"N": "2"}, "payload": {"S": "x" * 2000}}
    boto3_client.put_item(TableName=table, Item=part)
    boto3_client.put_item(TableName=table, Item={  # a version 2 head in two parts
        "pk": part["pk"], "sk": {"S": SNAPSHOT_SK}, "v": {"N": "2"}, "seq": {"N": "2"},
        "hash": {"S": events[1].hash}, "count": {"N": "4"}, "parts": {"N": "2"},
        "enc": {"S": "json"}, "payload": {"S": "{"}})
    sent: list[str] = []
    boto3_client.meta.events.register(
        "before-call.dynamodb.*", lambda model, **_: sent.append(model.name))
    handler = build_handler(boto3_client, table)
    assert handler({"Records": insert_records(events, first_id=1)}, None) == {
        "batchItemFailures": []}
    left = boto3_client.get_item(TableName=table, Key={"pk": part["pk"], "sk": part["sk"]})
    assert set(left["Item"]) == {"pk", "sk", "ttl", "stale"}
    assert int(left["Item"]["ttl"]["N"]) <= time.time() + 1
    assert "DeleteItem" not in sent
