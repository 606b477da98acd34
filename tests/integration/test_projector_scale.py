"""The projector scales with the sessions in a batch (issue 14).

A batch touching 100 sessions reads their views with two consistent ``BatchGetItem``
requests (100 keys each: meta and snapshot per session) instead of 100 ``Query``s, and
sends the view writes of all sessions concurrently, at most ``max_in_flight`` at a time.
Request counts and the peak number of requests in flight are deterministic; wall time
is measured in ``python -m benchmarks`` (5 ms per request through a delaying proxy).
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from projection_support import (
    History,
    WatchedClient,
    expected_items,
    insert_records,
    put_events,
    ts_of,
)

from eventstore import DynamoDBSession, viewbatch
from eventstore.client import DynamoClient
from eventstore.records import StoredEvent
from stream_handlers.batch import ProjectionBatch
from stream_handlers.projector import build_handler

SESSIONS = 100


def interleaved(rounds: int) -> tuple[list[StoredEvent], dict[str, list[StoredEvent]]]:
    histories = {f"user-{n:03d}": History(f"user-{n:03d}", user_id=f"u{n}")
                 for n in range(SESSIONS)}
    events = [h.build(("add", [{"role": "user", "content": f"{sid} turn {r}"}]), ts_of(r))
              for r in range(rounds) for sid, h in histories.items()]
    by_session = {sid: [e for e in events if e.event.session_id == sid] for sid in histories}
    return events, by_session


async def flush(db: DynamoClient, table: str, records: list[dict[str, Any]],
                **options: Any) -> dict[str, Any]:
    batch = ProjectionBatch(db, table, logging.getLogger("test"), **options)
    for record in records:
        batch.collect(DynamoDBRecord(record))
    response, _ = await batch.flush({"batchItemFailures": []})
    return response


async def test_a_batch_over_100_sessions_reads_views_in_two_requests_and_writes_at_once(
    boto3_client: Any, table: str, counter: Any
) -> None:
    events, _ = interleaved(3)
    put_events(boto3_client, table, events)
    records = insert_records(events)
    handler = build_handler(boto3_client, table)
    for start in range(0, len(records), 100):  # each batch: 100 sessions, one event each
        counter.reset()
        assert handler({"Records": records[start : start + 100]}, None) == {
            "batchItemFailures": []}
        # was: one Query per session (100), then its two writes, one session after another
        assert counter.counts == {"BatchGetItem": 2, "PutItem": 2 * SESSIONS}

    db = WatchedClient(boto3_client, threads=32)
    more, _ = interleaved(4)
    put_events(boto3_client, table, more[3 * SESSIONS :])
    assert await flush(db, table, insert_records(more[3 * SESSIONS :], 301),
                       max_in_flight=32) == {"batchItemFailures": []}
    assert db.calls == {"batch_get_item": 2, "put_item": 2 * SESSIONS}
    assert db.peak == 32  # bounded, and not one at a time
    for sid in ("user-000", "user-057", "user-099"):
        session = DynamoDBSession(sid, boto3_client, table)
        expected = expected_items([e for e in more if e.event.session_id == sid])
        assert await session.get_items() == expected
        assert len(expected) == 4


async def test_the_pool_of_the_client_bounds_requests_in_flight(
    boto3_client: Any, table: str
) -> None:
    events, _ = interleaved(1)
    put_events(boto3_client, table, events)
    db = WatchedClient(boto3_client, threads=32)
    assert boto3_client.meta.config.max_pool_connections == 10
    assert await flush(db, table, insert_records(events)) == {"batchItemFailures": []}
    assert db.peak == 10


async def test_unprocessed_keys_are_asked_for_again(boto3_client: Any, table: str) -> None:
    events, by_session = interleaved(2)
    put_events(boto3_client, table, events)
    db = WatchedClient(boto3_client, threads=8)
    assert await flush(db, table, insert_records(events[:SESSIONS])) == {"batchItemFailures": []}
    faulty = WatchedClient(boto3_client, threads=8, unprocess=30)
    assert await flush(faulty, table, insert_records(events[SESSIONS:], 101)) == {
        "batchItemFailures": []}
    # two chunks of 100 keys; the 30 keys left unprocessed are asked for once more, so
    # every session sees its snapshot at seq 1 and applies only seq 2
    assert faulty.calls == {"batch_get_item": 3, "put_item": 2 * SESSIONS}
    for sid in ("user-000", "user-099"):
        session = DynamoDBSession(sid, boto3_client, table)
        assert await session.get_items() == expected_items(by_session[sid])


async def test_keys_never_processed_fail_the_batch_for_a_retry(
    boto3_client: Any, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(viewbatch, "FIRST_PAUSE_SECONDS", 0.0)
    events, _ = interleaved(1)
    put_events(boto3_client, table, events[:3])
    stuck = WatchedClient(boto3_client, threads=4, unprocess=1, times=100)
    records = insert_records(events[:3])
    response = await flush(stuck, table, records)
    assert [f["itemIdentifier"] for f in response["batchItemFailures"]] == [
        r["dynamodb"]["SequenceNumber"] for r in records]
    assert stuck.calls == {"batch_get_item": viewbatch.UNPROCESSED_RETRIES + 1}
