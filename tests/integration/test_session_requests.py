"""Request counts of the session's operations (counted at botocore's ``before-send``).

The counts are deterministic: they are the design (DESIGN.md "Storage layout"), so they
are asserted exactly. A read is one newest-first ``Query``: the snapshot (its chunks for a
whole read, then its head), the meta item and the newest events.
"""

from __future__ import annotations

import uuid
from typing import Any

from eventstore import DynamoDBSession
from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash, now_iso
from eventstore.fold import NewestFirstFold
from eventstore.log import EventLog
from eventstore.records import encode_event


def bulk_history(client: Any, table: str, session_id: str, events: int) -> list[Any]:
    """Write a valid chain of one-item events with BatchWriteItem (fast set-up)."""
    items, prev, puts = [], GENESIS_HASH, []
    for seq in range(1, events + 1):
        item = {"role": "user", "content": f"message {seq}"}
        event = ItemsAdded(session_id=session_id, seq=seq, ts=now_iso(),
                           token=uuid.uuid4().hex, items=[item])
        digest = chain_hash(prev, event)
        puts.extend(encode_event(event, prev, digest, ttl=None))
        prev = digest
        items.append(item)
    for start in range(0, len(puts), 25):
        batch = [{"PutRequest": {"Item": i}} for i in puts[start : start + 25]]
        response = client.batch_write_item(RequestItems={table: batch})
        assert not response.get("UnprocessedItems")
    return items


async def test_append_on_a_session_that_has_written_is_one_request(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("counted", boto3_client, table)
    await session.add_items([{"role": "user", "content": "first"}])
    assert dict(counter.counts) == {"Query": 1, "PutItem": 1}  # learns the head once
    for n in range(3):
        counter.reset()
        await session.add_items([{"role": "user", "content": f"more {n}"}])
        assert dict(counter.counts) == {"PutItem": 1}
    counter.reset()
    await session.clear_session()  # the branch registry (none here), then one write
    assert dict(counter.counts) == {"Query": 1, "PutItem": 1}
    counter.reset()
    await session.add_items([])
    assert counter.total == 0


async def test_get_items_teaches_the_head(boto3_client: Any, table: str, counter: Any) -> None:
    bulk_history(boto3_client, table, "reader", 5)
    session = DynamoDBSession("reader", boto3_client, table)
    counter.reset()
    assert len(await session.get_items()) == 5
    await session.add_items([{"role": "user", "content": "sixth"}])
    assert dict(counter.counts) == {"Query": 1, "PutItem": 1}
    counter.reset()  # the object knows the newest items it wrote after its read: pops are writes
    assert await session.pop_item() == {"role": "user", "content": "sixth"}
    assert await session.pop_item() == {"role": "user", "content": "message 5"}
    assert dict(counter.counts) == {"PutItem": 2}
    counter.reset()
    other = DynamoDBSession("reader", boto3_client, table)
    assert await other.pop_item() == {"role": "user", "content": "message 4"}
    assert dict(counter.counts) == {"Query": 1, "PutItem": 1}
    counter.reset()  # the first object's cache is stale now: the conditional put finds out
    assert await session.pop_item() == {"role": "user", "content": "message 3"}
    assert dict(counter.counts) == {"PutItem": 2}
    assert await session.get_items() == [
        {"role": "user", "content": f"message {n}"} for n in (1, 2)
    ]


async def test_get_items_after_clear_on_1000_events_is_one_round_trip(
    boto3_client: Any, table: str, counter: Any
) -> None:
    bulk_history(boto3_client, table, "long", 1000)
    session = DynamoDBSession("long", boto3_client, table)
    assert len(await session.get_items()) == 1000
    await session.clear_session()
    counter.reset()
    assert await session.get_items() == []
    assert dict(counter.counts) == {"Query": 1}
    counter.reset()
    assert await DynamoDBSession("long", boto3_client, table).get_items(limit=10) == []
    assert dict(counter.counts) == {"Query": 1}
    await session.add_items([{"role": "user", "content": "fresh start"}])
    counter.reset()
    assert await session.get_items() == [{"role": "user", "content": "fresh start"}]
    assert counter.total == 1


# requests: the pages of events (no snapshot here); the first holds min(16, limit + 8) + 2
PAGES = [(1, 1), (16, 1), (17, 1), (18, 1), (19, 2), (64, 2), (65, 2), (100, 2), (300, 2),
         (5000, 2), (None, 3)]


async def test_limit_reads_no_more_pages_than_needed(
    boto3_client: Any, table: str, counter: Any
) -> None:
    items = bulk_history(boto3_client, table, "paged", 300)
    session = DynamoDBSession("paged", boto3_client, table)
    for limit, pages in PAGES:
        counter.reset()
        assert await session.get_items(limit=limit) == (items[-limit:] if limit else items)
        assert dict(counter.counts) == {"Query": pages}, limit
        result = await EventLog(boto3_client, table).read_newest("paged", NewestFirstFold(limit))
        assert result.requests == pages


async def test_limit_pages_follow_items_per_event(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("wide", boto3_client, table)
    items = [{"role": "user", "content": f"i{n}"} for n in range(2000)]
    for start in range(0, 2000, 20):  # 100 events of 20 items
        await session.add_items(items[start : start + 20])
    for _ in range(5):
        await session.pop_item()
    live = items[:-5]
    for limit, pages in [(15, 1), (200, 1), (400, 2), (1200, 2), (1995, 2)]:
        counter.reset()
        assert await session.get_items(limit=limit) == live[-limit:]
        assert dict(counter.counts) == {"Query": pages}, limit


async def test_remembered_state_is_not_used_when_it_can_expire(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("expiring", boto3_client, table, ttl_seconds=3600)
    await session.add_items([{"role": "user", "content": f"m{n}"} for n in range(3)])
    assert len(await session.get_items()) == 3
    counter.reset()  # items with a ttl may expire between calls: a pop reads first
    assert await session.pop_item() == {"role": "user", "content": "m2"}
    assert dict(counter.counts) == {"Query": 1, "PutItem": 1}
    counter.reset()
    await session.add_items([{"role": "user", "content": "m3"}])
    assert dict(counter.counts) == {"PutItem": 1}  # the head is still remembered


async def test_close_forgets_what_the_object_remembered(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("closing", boto3_client, table)
    await session.add_items([{"role": "user", "content": "a"}])
    await session.close()
    counter.reset()
    await session.add_items([{"role": "user", "content": "b"}])
    assert dict(counter.counts) == {"Query": 1, "PutItem": 1}
