"""Snapshots bound to the chain: reads and the projector use a snapshot only when the
event at its seq carries its hash (issue 10, cases 1 and 2, and three regressions)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from cli_helpers import run
from projection_support import make_pump

from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from eventstore.client import wrap_client
from eventstore.fold import Entry, Snapshot
from eventstore.keys import META_SK, SNAPSHOT_SK, session_pk
from eventstore.snapshots import decode_snapshot
from eventstore.views import SessionMeta, decode_meta, write_session_views


def msg(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def write(client: Any, table: str, sid: str, texts: list[str]) -> DynamoDBSession:
    session = DynamoDBSession(sid, client, table, user_id="ann")
    for text in texts:
        run(session.add_items([msg(text)]))
    return session


def views(client: Any, table: str, sid: str) -> dict[str, dict[str, Any]]:
    items = client.query(
        TableName=table, KeyConditionExpression="pk = :p AND sk >= :m", ConsistentRead=True,
        ExpressionAttributeValues={":p": {"S": session_pk(sid)}, ":m": {"S": META_SK}},
    )["Items"]
    return {i["sk"]["S"]: i for i in items}


def test_a_snapshot_copied_from_another_session_is_ignored_by_reads_and_projector(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    """Case 1: another session's SNAPSHOT, re-keyed at this session's head seq."""
    victim, other = f"a-{uuid.uuid4().hex[:6]}", f"b-{uuid.uuid4().hex[:6]}"
    write(boto3_client, table, victim, ["v1", "v2", "v3"])
    write(boto3_client, table, other, ["o1", "o2", "o3"])
    make_pump(endpoint, table).drain()
    forged = views(boto3_client, table, other)[SNAPSHOT_SK]
    forged["pk"] = {"S": session_pk(victim)}
    boto3_client.put_item(TableName=table, Item=forged)
    session = DynamoDBSession(victim, boto3_client, table)
    assert run(session.get_items()) == [msg("v1"), msg("v2"), msg("v3")]
    assert run(session.get_items(limit=1)) == [msg("v3")]
    run(session.add_items([msg("v4")]))
    make_pump(endpoint, table).drain()
    rebuilt = decode_snapshot(views(boto3_client, table, victim)[SNAPSHOT_SK])
    assert rebuilt.seq == 4 and rebuilt.items() == [msg(f"v{n}") for n in range(1, 5)]
    assert decode_meta(views(boto3_client, table, victim)[META_SK]).item_count == 4


def test_a_snapshot_with_flipped_bytes_is_ignored_and_only_its_session_rebuilds(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str
) -> None:
    """Case 2: a corrupt compressed snapshot: reads fold the events; nobody's views stall."""
    bad, good = f"c-{uuid.uuid4().hex[:6]}", f"d-{uuid.uuid4().hex[:6]}"
    texts = [f"long message {n} " + "words " * 300 for n in range(3)]
    write(boto3_client, table, bad, texts)
    write(boto3_client, table, good, ["g1"])
    make_pump(endpoint, table).drain()
    item = views(boto3_client, table, bad)[SNAPSHOT_SK]
    assert item["enc"] == {"S": "zlib"}
    body = bytearray(item["payload"]["B"])
    for i in range(10, 20):
        body[i] ^= 0xFF
    item["payload"] = {"B": bytes(body)}
    boto3_client.put_item(TableName=table, Item=item)
    session = DynamoDBSession(bad, boto3_client, table)
    assert run(session.get_items()) == [msg(t) for t in texts]
    assert run(session.get_items(limit=2)) == [msg(t) for t in texts[1:]]
    run(session.add_items([msg("after")]))
    write(boto3_client, table, good, ["g2"])
    pump = make_pump(endpoint, table)
    pump.drain()
    assert (pump.stats.retries, pump.stats.skipped) == (0, 0)  # no record failed
    assert decode_snapshot(views(boto3_client, table, bad)[SNAPSHOT_SK]).items() == [
        *[msg(t) for t in texts], msg("after")]
    assert decode_snapshot(views(boto3_client, table, good)[SNAPSHOT_SK]).items() == [
        msg("g1"), msg("g2")]


def test_fresh_bound_snapshot_read_is_one_round_trip(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, counter: Any
) -> None:
    sid = f"e-{uuid.uuid4().hex[:6]}"
    write(boto3_client, table, sid, [f"m{n}" for n in range(40)])
    make_pump(endpoint, table).drain()
    counter.reset()
    items = run(DynamoDBSession(sid, boto3_client, table).get_items())
    assert items == [msg(f"m{n}") for n in range(40)]
    assert dict(counter.counts) == {"Query": 1}  # snapshot, meta and newest events


def test_newest_event_exactly_one_past_the_snapshot(
    endpoint: EmbeddedEndpoint, boto3_client: Any, table: str, counter: Any
) -> None:
    """Regression: the read folds seq n+1 onto the snapshot at n (bound by seq n's hash)."""
    sid = f"f-{uuid.uuid4().hex[:6]}"
    session = write(boto3_client, table, sid, ["a", "b", "c"])
    make_pump(endpoint, table).drain()
    assert decode_snapshot(views(boto3_client, table, sid)[SNAPSHOT_SK]).seq == 3
    run(session.add_items([msg("d")]))
    run(session.pop_item())  # seq 5: two past the snapshot
    run(session.add_items([msg("e")]))  # seq 6
    make_pump(endpoint, table).drain()
    run(session.add_items([msg("f")]))  # seq 7: exactly one past the snapshot at 6
    counter.reset()
    assert run(DynamoDBSession(sid, boto3_client, table).get_items()) == [
        msg("a"), msg("b"), msg("c"), msg("e"), msg("f")]
    assert dict(counter.counts) == {"Query": 1}  # snapshot, meta and newest events
    assert run(DynamoDBSession(sid, boto3_client, table).get_items(limit=2)) == [
        msg("e"), msg("f")]


def test_an_older_view_write_arriving_after_a_newer_one_does_not_overwrite_it(
    boto3_client: Any, table: str
) -> None:
    """Regression: a late write for seq 3 after the views reached seq 5 changes nothing."""
    sid = f"g-{uuid.uuid4().hex[:6]}"
    db = wrap_client(boto3_client)

    def snap(seq: int) -> Snapshot:
        return Snapshot(seq, tuple(Entry(msg(f"m{n}"), n) for n in range(1, seq + 1)),
                        hash=f"{seq:064x}")

    def meta(seq: int) -> SessionMeta:
        return SessionMeta(sid, seq, "2026-01-01T00:00:00.000Z", f"2026-01-01T00:00:0{seq}Z",
                           seq, "ann", "t")

    async def go() -> tuple[bool, bool]:
        newer = await write_session_views(db, table, sid, snap(5), meta(5), ttl=None)
        older = await write_session_views(db, table, sid, snap(3), meta(3), ttl=None)
        return newer, older

    assert run(go()) == (True, False)
    stored = views(boto3_client, table, sid)
    assert decode_snapshot(stored[SNAPSHOT_SK]).seq == 5
    assert decode_snapshot(stored[SNAPSHOT_SK]).hash == f"{5:064x}"
    assert decode_meta(stored[META_SK]).seq == 5


def test_pop_after_adding_200_items_to_a_remembered_state(
    boto3_client: Any, table: str
) -> None:
    """Regression: the object's remembered newest items after a 200-item add."""
    sid = f"h-{uuid.uuid4().hex[:6]}"
    session = DynamoDBSession(sid, boto3_client, table)

    async def go() -> list[Any]:
        await session.add_items([msg("first")])
        assert await session.get_items() == [msg("first")]  # the object now remembers
        await session.add_items([msg(f"n{n}") for n in range(200)])
        popped = [await session.pop_item() for _ in range(3)]
        return [*popped, await session.get_items()]

    *popped, rest = asyncio.run(go())
    assert popped == [msg("n199"), msg("n198"), msg("n197")]
    assert rest == [msg("first"), *[msg(f"n{n}") for n in range(197)]]
