"""Large payloads in S3 (issue 13): round trips, snapshots, lost commits, purge, TTL.

Everything talks HTTP to the embedded moto server (DynamoDB, Streams and S3).
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from faults import boto3_client_for
from projection_support import make_pump
from test_session_size_ttl import noise, scan_session

from convlog.purge import execute_purge, plan_purge
from eventstore import DynamoDBSession
from eventstore.client import wrap_client
from eventstore.errors import AccessDeniedError, CorruptEventError, PayloadTooLargeError
from eventstore.payloads import (
    EXPIRY_TAG,
    PayloadStore,
    referenced_keys,
    session_prefix,
)
from eventstore.views import read_views
from stream_handlers.projector import build_handler


def objects(s3: Any, bucket: str, session_id: str) -> list[str]:
    page = s3.list_objects_v2(Bucket=bucket, Prefix=session_prefix(session_id))
    return sorted(o["Key"] for o in page.get("Contents", []))


def project(endpoint: Any, table: str, bucket: str) -> None:
    handler = build_handler(endpoint.client("dynamodb"), table,
                            s3_client=endpoint.client("s3"), bucket_name=bucket)
    make_pump(endpoint, table, handler).drain()


async def snapshot_seq(client: Any, table: str, session_id: str, s3: Any, bucket: str) -> int:
    state = await read_views(wrap_client(client), table, session_id,
                             payloads=PayloadStore(s3, bucket))
    assert state.snapshot is not None, "the projector wrote no usable snapshot"
    return state.snapshot.seq


async def test_twenty_megabyte_incompressible_item_round_trips_and_is_snapshotted(
    endpoint: Any, boto3_client: Any, table: str, s3_client: Any, bucket: str,
    counter: Any, s3_counter: Any,
) -> None:
    big = {"role": "tool", "content": noise(20_000_000, seed=3)}
    session = DynamoDBSession("s20", boto3_client, table, s3_client=s3_client,
                              bucket_name=bucket)
    await session.add_items([{"role": "user", "content": "read the file"}])
    await session.add_items([big])
    rows = {i["sk"]["S"]: i for i in scan_session(boto3_client, table, "s20")}
    assert sorted(rows) == ["EVENT#000000000001", "EVENT#000000000002"], "no parts"
    assert "obj" in rows["EVENT#000000000002"] and "payload" not in rows["EVENT#000000000002"]
    assert len(objects(s3_client, bucket, "s20")) == 1
    project(endpoint, table, bucket)
    assert await snapshot_seq(boto3_client, table, "s20", s3_client, bucket) == 2
    assert len(objects(s3_client, bucket, "s20")) == 2  # the event's and the snapshot's

    reader = DynamoDBSession("s20", boto3_client, table, s3_client=s3_client,
                             bucket_name=bucket)
    counter.reset()
    s3_counter.reset()
    assert await reader.get_items() == [{"role": "user", "content": "read the file"}, big]
    # one Query (the chunk, the head, meta, the newest events) and the big chunk's object
    assert dict(counter.counts) == {"Query": 1} and dict(s3_counter.counts) == {"GET": 1}
    s3_counter.reset()
    assert await reader.get_items(limit=1) == [big]
    assert await reader.pop_item() == big
    assert await reader.get_items() == [{"role": "user", "content": "read the file"}]


async def test_fifty_megabytes_of_state_round_trip_and_are_snapshotted(
    endpoint: Any, boto3_client: Any, table: str, s3_client: Any, bucket: str,
    counter: Any, s3_counter: Any,
) -> None:
    items = [{"role": "tool", "content": noise(17_000_000, seed=10 + n)} for n in range(3)]
    session = DynamoDBSession("s50", boto3_client, table, s3_client=s3_client,
                              bucket_name=bucket)
    for item in items:
        await session.add_items([item])
    project(endpoint, table, bucket)
    assert await snapshot_seq(boto3_client, table, "s50", s3_client, bucket) == 3
    reader = DynamoDBSession("s50", boto3_client, table, s3_client=s3_client,
                             bucket_name=bucket)
    counter.reset()
    s3_counter.reset()
    assert await reader.get_items() == items
    # one Query, and one object per chunk (each large entry gets a chunk of its own),
    # fetched at once
    assert dict(counter.counts) == {"Query": 1} and dict(s3_counter.counts) == {"GET": 3}


async def test_a_lost_commit_leaves_no_visible_object_and_its_orphan_is_swept(
    proxy: Any, boto3_client: Any, table: str, s3_client: Any, bucket: str, s3_counter: Any,
) -> None:
    kept = {"role": "tool", "content": noise(600_000, seed=21)}
    lost = {"role": "tool", "content": noise(600_000, seed=22)}
    session = DynamoDBSession("race", boto3_client, table, s3_client=s3_client,
                              bucket_name=bucket)
    await session.add_items([kept])
    failing = boto3_client_for(proxy.url, retries={"max_attempts": 1})
    loser = DynamoDBSession("race", failing, table, s3_client=s3_client, bucket_name=bucket)
    proxy.error("PutItem", "AccessDeniedException")  # the commit never lands
    with pytest.raises(AccessDeniedError):
        await loser.add_items([lost])
    assert len(objects(s3_client, bucket, "race")) == 2  # written before the commit
    s3_counter.reset()
    assert await session.get_items() == [kept]
    assert s3_counter.counts["GET"] == 1  # only the committed object is ever read
    live = await referenced_keys(wrap_client(boto3_client), table, session_id="race")
    assert len(live) == 1
    store = PayloadStore(s3_client, bucket)
    assert await store.sweep(live, min_age_seconds=3600) == []  # may be a commit in flight
    swept = await store.sweep(live, min_age_seconds=0)
    assert len(swept) == 1 and swept[0] not in live
    assert objects(s3_client, bucket, "race") == sorted(live)
    assert await session.get_items() == [kept]
    everywhere = await referenced_keys(wrap_client(boto3_client), table)
    assert everywhere == live


async def test_purge_leaves_no_object(
    endpoint: Any, boto3_client: Any, table: str, s3_client: Any, bucket: str
) -> None:
    for sid in ("gone", "stays"):
        session = DynamoDBSession(sid, boto3_client, table, s3_client=s3_client,
                                  bucket_name=bucket, user_id="u")
        await session.add_items([{"role": "tool", "content": noise(700_000, seed=len(sid))}])
    project(endpoint, table, bucket)
    assert objects(s3_client, bucket, "gone")
    db = wrap_client(boto3_client)
    plan = await plan_purge(db, table, session_id="gone")
    await execute_purge(db, table, plan, payloads=PayloadStore(s3_client, bucket))
    assert objects(s3_client, bucket, "gone") == []
    # only the content-free purge tombstones (META, SNAPSHOT) stay, for 25 h (issue 11)
    assert [i for i in scan_session(boto3_client, table, "gone") if "purged" not in i] == []
    assert len(objects(s3_client, bucket, "stays")) == 2  # its event and its snapshot


async def test_objects_of_ttl_sessions_are_tagged_to_expire_with_them(
    boto3_client: Any, table: str, s3_client: Any, bucket: str
) -> None:
    session = DynamoDBSession("ttl", boto3_client, table, ttl_seconds=3 * 86400,
                              s3_client=s3_client, bucket_name=bucket)
    await session.add_items([{"role": "tool", "content": noise(500_000, seed=5)}])
    (key,) = objects(s3_client, bucket, "ttl")
    tags = s3_client.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]
    assert tags == [{"Key": EXPIRY_TAG, "Value": "7"}]
    rules = s3_client.get_bucket_lifecycle_configuration(Bucket=bucket)["Rules"]
    rule = next(r for r in rules if r.get("Filter", {}).get("Tag", {}).get("Value") == "7")
    assert rule["Expiration"]["Days"] >= 7 and rule["Status"] == "Enabled"
    # an item whose ttl is past references nothing: its object is the sweeper's too
    later = time.time() + 4 * 86400
    assert await referenced_keys(wrap_client(boto3_client), table, now=later) == set()


async def test_reads_verify_what_they_fetch(
    boto3_client: Any, table: str, s3_client: Any, bucket: str
) -> None:
    session = DynamoDBSession("tamper", boto3_client, table, s3_client=s3_client,
                              bucket_name=bucket)
    await session.add_items([{"role": "tool", "content": noise(500_000, seed=6)}])
    (key,) = objects(s3_client, bucket, "tamper")
    import zlib

    forged = zlib.compress(b'{"items":[{"role":"tool","content":"forged"}]}')
    s3_client.put_object(Bucket=bucket, Key=key, Body=forged)
    with pytest.raises(CorruptEventError, match="does not match its digest"):
        await session.get_items()
    s3_client.delete_object(Bucket=bucket, Key=key)
    with pytest.raises(CorruptEventError, match="missing"):
        await session.get_items()


async def test_without_a_bucket_the_limit_stays_and_says_how_to_lift_it(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("no-bucket", boto3_client, table)
    counter.reset()
    with pytest.raises(PayloadTooLargeError, match="s3_client and bucket_name"):
        await session.add_items([{"role": "tool", "content": noise(6_000_000, seed=7)}])
    assert counter.total == 0


async def test_aiobotocore_clients_for_both(
    endpoint: Any, aio_client: Any, table: str, bucket: str
) -> None:
    from aiobotocore.session import get_session

    big = {"role": "tool", "content": noise(1_000_000, seed=8)}
    async with get_session().create_client("s3", **endpoint.client_kwargs("s3")) as s3:
        session = DynamoDBSession("aio", aio_client, table, s3_client=s3, bucket_name=bucket)
        await session.add_items([big])
        fresh = DynamoDBSession("aio", aio_client, table, s3_client=s3, bucket_name=bucket)
        assert await fresh.get_items() == [big]


async def test_verify_walks_events_whose_payload_is_in_s3(
    boto3_client: Any, table: str, s3_client: Any, bucket: str
) -> None:
    from convlog.audit import replay, verify_session
    from eventstore.log import EventLog

    big = {"role": "tool", "content": noise(500_000, seed=9)}
    session = DynamoDBSession("audit", boto3_client, table, s3_client=s3_client,
                              bucket_name=bucket)
    await session.add_items([{"role": "user", "content": "hi"}])
    await session.add_items([big])
    log = EventLog(boto3_client, table, payloads=PayloadStore(s3_client, bucket))
    report = await verify_session(log, "audit")
    assert report.ok and report.events == 2
    assert (await replay(log, "audit")).items == [{"role": "user", "content": "hi"}, big]
    (key,) = objects(s3_client, bucket, "audit")
    s3_client.delete_object(Bucket=bucket, Key=key)
    report = await verify_session(log, "audit")
    assert report.problem is not None and report.problem.seq == 2
    assert report.problem.kind == "corrupt" and "missing" in report.problem.message
