"""Big sessions, big items, and expiry (DESIGN rules 6 and 7), against moto over HTTP."""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import pytest

from eventstore import DynamoDBSession
from eventstore.errors import PayloadTooLargeError
from eventstore.keys import session_pk
from eventstore.records import ITEM_LIMIT_BYTES

_TEXT = (
    "the agent asked for weather report and tool returned a forecast with rain expected in "
    "afternoon while user wanted to know whether an umbrella would be needed walk station "
    "before meeting about quarterly numbers"
)
WORDS = _TEXT.split(" ")


def prose(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


def noise(size: int, seed: int) -> str:
    """``size`` characters of base64 text: compresses poorly (about 3:4 at best)."""
    raw = random.Random(seed).randbytes(size * 3 // 4 + 3)
    return base64.b64encode(raw).decode()[:size]


def scan_session(client: Any, table: str, session_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {
        "TableName": table,
        "FilterExpression": "pk = :pk",
        "ExpressionAttributeValues": {":pk": {"S": session_pk(session_id)}},
    }
    while True:
        page = client.scan(**params)
        items.extend(page["Items"])
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


async def test_ten_thousand_item_session(boto3_client: Any, table: str, counter: Any) -> None:
    rng = random.Random(7)
    items = [{"role": "user" if i % 2 else "assistant", "content": f"{i}: {prose(rng, 12)}"}
             for i in range(10_000)]
    session = DynamoDBSession("ten-thousand", boto3_client, table)
    for start in range(0, 10_000, 2_000):
        await session.add_items(items[start : start + 2_000])
    counter.reset()
    assert await session.get_items() == items
    assert counter.total == 1  # five events: one page (no snapshot: the projector is off)
    assert await session.get_items(limit=3) == items[-3:]
    assert await session.get_items(limit=2_500) == items[-2_500:]
    assert await session.get_items(limit=20_000) == items
    assert await session.pop_item() == items[-1]
    assert await DynamoDBSession("ten-thousand", boto3_client, table).get_items() == items[:-1]


async def test_one_megabyte_item_round_trips_in_parts(boto3_client: Any, table: str) -> None:
    big = {"role": "user", "content": noise(1_000_000, seed=1)}
    session = DynamoDBSession("one-mb", boto3_client, table)
    await session.add_items([{"role": "user", "content": "small first"}])
    await session.add_items([big])
    stored = scan_session(boto3_client, table, "one-mb")
    rows = [i for i in stored if i["sk"]["S"].startswith("EVENT#000000000002")]
    assert len(rows) >= 2, "a 1 MB poorly compressible item must be split into parts"
    assert rows[0]["sk"]["S"] == "EVENT#000000000002" and int(rows[0]["parts"]["N"]) == len(rows)
    assert all(len(i["payload"]["B"]) < ITEM_LIMIT_BYTES for i in rows)
    reader = DynamoDBSession("one-mb", boto3_client, table)
    assert await reader.get_items() == [{"role": "user", "content": "small first"}, big]
    assert await reader.get_items(limit=1) == [big]
    assert await reader.pop_item() == big
    assert await reader.get_items() == [{"role": "user", "content": "small first"}]


async def test_four_megabytes_of_text_in_one_add_items(aio_client: Any, table: str) -> None:
    rng = random.Random(11)
    items = [{"role": "assistant", "content": prose(rng, 1_700)} for _ in range(400)]
    assert sum(len(i["content"]) for i in items) > 3_900_000
    session = DynamoDBSession("four-mb", aio_client, table)
    await session.add_items(items)
    await session.add_items([{"role": "user", "content": "thanks"}])
    got = await DynamoDBSession("four-mb", aio_client, table).get_items()
    assert got == [*items, {"role": "user", "content": "thanks"}]


async def test_too_large_even_for_parts_writes_nothing(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("too-big", boto3_client, table)
    await session.add_items([{"role": "user", "content": "kept"}])
    before = scan_session(boto3_client, table, "too-big")
    huge = [{"role": "user", "content": noise(1_500_000, seed=s)} for s in range(4)]
    counter.reset()
    with pytest.raises(PayloadTooLargeError, match="split it into several add_items"):
        await session.add_items(huge)
    assert counter.total == 0, "rejected before any request"
    fresh = DynamoDBSession("too-big-fresh", boto3_client, table)
    with pytest.raises(PayloadTooLargeError):
        await fresh.add_items(huge)
    assert scan_session(boto3_client, table, "too-big") == before
    assert scan_session(boto3_client, table, "too-big-fresh") == []
    assert await session.get_items() == [{"role": "user", "content": "kept"}]


async def test_every_item_carries_ttl(boto3_client: Any, table: str) -> None:
    session = DynamoDBSession("ttl-all", boto3_client, table, ttl_seconds=3600)
    started = int(time.time())
    await session.add_items([{"role": "user", "content": "a"}])
    await session.add_items([{"role": "user", "content": noise(900_000, seed=3)}])
    assert await session.pop_item() is not None
    await session.clear_session()
    await session.add_items([{"role": "user", "content": "b"}])
    stored = scan_session(boto3_client, table, "ttl-all")
    assert len(stored) >= 6  # five events, one of them with parts
    for item in stored:
        assert started + 3600 <= int(item["ttl"]["N"]) <= int(time.time()) + 3600, item["sk"]
    plain = DynamoDBSession("no-ttl", boto3_client, table)
    await plain.add_items([{"role": "user", "content": "c"}])
    assert all("ttl" not in i for i in scan_session(boto3_client, table, "no-ttl"))


def expire(client: Any, table: str, session_id: str, seq: int) -> None:
    """Move an event's ``ttl`` (head and parts) into the past, as time would."""
    for item in scan_session(client, table, session_id):
        if int(item["seq"]["N"]) == seq:
            client.update_item(
                TableName=table, Key={"pk": item["pk"], "sk": item["sk"]},
                UpdateExpression="SET #t = :past", ExpressionAttributeNames={"#t": "ttl"},
                ExpressionAttributeValues={":past": {"N": str(int(time.time()) - 60)}},
            )


async def test_expired_events_are_not_returned(boto3_client: Any, aio_client: Any,
                                               table: str) -> None:
    session = DynamoDBSession("ttl-read", boto3_client, table, ttl_seconds=86400)
    old = [{"role": "user", "content": "old 1"}, {"role": "assistant", "content": "old 2"}]
    await session.add_items(old)
    await session.add_items([{"role": "user", "content": "mid"}])
    await session.add_items([{"role": "user", "content": "new"}])
    expire(boto3_client, table, "ttl-read", 1)
    assert len(scan_session(boto3_client, table, "ttl-read")) == 3  # still stored
    for client in (boto3_client, aio_client):
        reader = DynamoDBSession("ttl-read", client, table, ttl_seconds=86400)
        assert await reader.get_items() == [{"role": "user", "content": "mid"},
                                            {"role": "user", "content": "new"}]
        assert await reader.get_items(limit=5) == await reader.get_items()
    expire(boto3_client, table, "ttl-read", 3)
    assert await session.get_items() == [{"role": "user", "content": "mid"}]
    assert await session.pop_item() == {"role": "user", "content": "mid"}
    assert await session.pop_item() is None
    await session.add_items([{"role": "user", "content": "after"}])  # seq continues
    assert await session.get_items() == [{"role": "user", "content": "after"}]
