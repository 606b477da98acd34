"""Reads with the projector's snapshot: one request when fresh, exact when it lags."""

from __future__ import annotations

import random
from typing import Any

from conftest import RequestCounter
from projection_support import History, expected_items, insert_records, put_events, ts_of

from eventstore import DynamoDBSession
from stream_handlers.projector import build_handler


def project(handler: Any, records: list[dict[str, Any]], batch: int) -> None:
    """Deliver records to the projector in batches (moto's GetRecords on 5,000 images is slow;
    the pump's own batching is covered in test_pump.py and test_projector_batches.py)."""
    for start in range(0, len(records), batch):
        assert handler({"Records": records[start : start + batch]}, None) == {
            "batchItemFailures": []}


async def test_snapshot_read_of_5000_events_is_two_round_trips_and_exact_when_behind(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    h = History("long", user_id="reader")
    events = [h.build(("add", [{"role": "user" if i % 2 else "assistant",
                                "content": f"message {i}"}]), ts_of(i)) for i in range(5000)]
    put_events(boto3_client, table, events)
    handler = build_handler(boto3_client, table)
    project(handler, insert_records(events), 1000)

    reader_client = endpoint.client("dynamodb")
    counter = RequestCounter(reader_client)
    session = DynamoDBSession("long", reader_client, table)
    assert await session.get_items() == expected_items(events)
    # the first page holds 16 of its 77 chunks; then the others and the newest events, at once
    assert counter.counts == {"Query": 3}
    counter.reset()
    assert await session.get_items(limit=3) == expected_items(events)[-3:]
    assert counter.total == 1  # the head, the meta item and the newest events

    # the projector stops; 500 more events, with pops and a clear, go unprojected
    rng = random.Random(3)
    later = []
    for i in range(500):
        roll = rng.random()
        spec: tuple[str, Any]
        if i == 250:
            spec = ("clear", None)
        elif roll < 0.2:
            spec = ("pop", {"role": "user", "content": "gone"})
        else:
            spec = ("add", [{"role": "user", "content": f"later {i}"}])
        later.append(h.build(spec, ts_of(5000 + i)))
    put_events(boto3_client, table, later)
    counter.reset()
    assert await session.get_items() == expected_items(events + later)
    assert counter.total <= 4  # 16 chunks, the other chunks beside 16 events, then 128 events
    before_clear = events + later[:250]
    assert expected_items(before_clear) != expected_items(events + later)

    project(handler, insert_records(later, first_id=5001), 100)
    counter.reset()
    assert await session.get_items() == expected_items(events + later)
    # the clear started a new epoch: the old one's 77 chunks, overwritten by expired
    # tombstones, sort above the new head until DynamoDB's TTL deletes them (moto never
    # does), so the first page holds tombstones; the rest comes beside the events
    assert counter.total == 3
    boto3_client.delete_table(TableName=table)
