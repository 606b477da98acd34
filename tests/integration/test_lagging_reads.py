"""Reads behind a lagging projector: two round trips, no event the snapshot covers (issue 14).

The first page shows the snapshot and the newest events; the events from the snapshot's
seq (the event at that seq proves the snapshot: same seq, same hash) up to the page are
then read in one round of concurrent range queries, whatever the lag.
"""

from __future__ import annotations

from typing import Any

from conftest import RequestCounter
from projection_support import (
    History,
    WatchedClient,
    expected_items,
    insert_records,
    put_events,
    ts_of,
)

from eventstore import DynamoDBSession
from eventstore.fold import NewestFirstFold
from eventstore.keys import event_sk, is_event_sk, seq_of
from eventstore.log import EventLog
from stream_handlers.projector import build_handler

PROJECTED, LAG = 200, 1_000
TEXT = "the order shipped today and arrives tomorrow morning " * 5  # ~270 bytes


def turn(i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{i} {TEXT}"},
            {"role": "assistant", "content": f"{i} {TEXT}"}]


def lagging_session(
    client: Any, table: str, session_id: str, projected: int = PROJECTED, lag: int = LAG
) -> list[Any]:
    """``projected`` projected events, then ``lag`` the projector has not seen."""
    h = History(session_id, user_id="reader")
    events = [h.build(("add", turn(i)), ts_of(i)) for i in range(projected + lag)]
    put_events(client, table, events)
    handler = build_handler(client, table)
    records = insert_records(events[:projected])
    for start in range(0, projected, 100):
        assert handler({"Records": records[start : start + 100]}, None) == {
            "batchItemFailures": []}
    return events


async def test_a_snapshot_1000_events_behind_costs_two_round_trips(
    endpoint: Any, boto3_client: Any, table: str
) -> None:
    events = lagging_session(boto3_client, table, "lagging")
    watched = WatchedClient(boto3_client, threads=8)
    result = await EventLog(watched, table).read_newest("lagging", NewestFirstFold())
    assert result.items == expected_items(events)
    assert result.snapshot_seq == PROJECTED  # the snapshot was used, proven by its event
    assert watched.round_trips == 2  # the first page, then the range pieces together
    assert watched.calls["query"] == result.requests == watched.peak + 1
    assert watched.peak >= 2  # ~1.2 MB of events: more than one 1 MB page, sent at once
    read = sorted(seq_of(i["sk"]["S"]) for i in watched.items if is_event_sk(i["sk"]["S"]))
    assert read == list(range(PROJECTED, PROJECTED + LAG + 1))  # each once, none older

    reader = endpoint.client("dynamodb")
    counter = RequestCounter(reader)
    session = DynamoDBSession("lagging", reader, table)
    assert await session.get_items() == expected_items(events)
    assert counter.counts == {"Query": watched.calls["query"]}
    counter.reset()
    assert await session.get_items(limit=20) == expected_items(events)[-20:]
    assert counter.counts == {"Query": 1}


async def test_a_lagging_snapshot_the_chain_does_not_prove_is_not_used(
    boto3_client: Any, table: str
) -> None:
    events = lagging_session(boto3_client, table, "unproven", projected=40, lag=60)
    # the event at the snapshot's seq is gone: the snapshot proves nothing, the events
    # below it are read instead (more requests, the same answer as without a snapshot)
    boto3_client.delete_item(TableName=table, Key={
        "pk": {"S": "SESSION#unproven"}, "sk": {"S": event_sk(40)}})
    remaining = [e for e in events if e.event.seq != 40]
    watched = WatchedClient(boto3_client, threads=8)
    result = await EventLog(watched, table).read_newest("unproven", NewestFirstFold())
    assert result.items == expected_items(remaining)
    assert result.snapshot_seq is None
    assert result.requests >= 3  # the first page, the range, then older events
