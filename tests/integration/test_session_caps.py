"""Caps on one add (issue 13): typed errors before any request, reads that never inflate
beyond the cap. Against moto over HTTP."""

from __future__ import annotations

import zlib
from typing import Any

import pytest
from test_session_size_ttl import scan_session

from eventstore import DynamoDBSession
from eventstore.errors import (
    CorruptEventError,
    InvalidInputError,
    InvalidItemError,
    PayloadTooLargeError,
)
from eventstore.keys import event_sk, session_pk
from eventstore.limits import DEFAULT_MAX_ADD_BYTES, MIB


async def test_two_hundred_megabytes_of_compressible_text_is_refused_unwritten(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("cap-200mb", boto3_client, table)
    await session.add_items([{"role": "user", "content": "kept"}])
    before = scan_session(boto3_client, table, "cap-200mb")
    huge = [{"role": "user", "content": "a" * 200_000_000}]
    counter.reset()
    with pytest.raises(PayloadTooLargeError, match="max_add_bytes") as caught:
        await session.add_items(huge)
    assert f"{DEFAULT_MAX_ADD_BYTES:,}" in str(caught.value)
    assert counter.total == 0, "refused before any request"
    assert scan_session(boto3_client, table, "cap-200mb") == before
    assert await session.get_items() == [{"role": "user", "content": "kept"}]


async def test_the_exact_byte_cap_counts_the_canonical_json(
    boto3_client: Any, table: str, counter: Any
) -> None:
    session = DynamoDBSession("cap-exact", boto3_client, table, max_add_bytes=1000)
    await session.add_items([{"c": "x" * 900}])  # {"items":[{"c":"xxx…"}]} is 918 bytes
    counter.reset()
    with pytest.raises(PayloadTooLargeError, match="1,000 bytes"):
        await session.add_items([{"c": "é" * 600}])  # 600 characters, 1,200 bytes in UTF-8
    assert counter.total == 0
    assert len(await session.get_items()) == 1


async def test_items_per_add_and_depth_caps(boto3_client: Any, table: str, counter: Any) -> None:
    session = DynamoDBSession("cap-shape", boto3_client, table, max_items_per_add=3,
                              max_depth=4)
    counter.reset()
    with pytest.raises(PayloadTooLargeError, match="max_items_per_add"):
        await session.add_items([{"n": i} for i in range(4)])
    deep: Any = "leaf"
    for _ in range(100_000):  # far deeper than recursion allows
        deep = [deep]
    with pytest.raises(InvalidItemError, match="max_depth"):
        await session.add_items([{"d": deep}])
    with pytest.raises(InvalidItemError, match="max_depth"):
        await session.add_items([{"a": {"b": {"c": {"d": {"e": 1}}}}}])  # 5 levels
    assert counter.total == 0
    await session.add_items([{"a": {"b": {"c": {"d": 1}}}}, {"n": 2}, {"n": 3}])
    assert await session.get_items() == [{"a": {"b": {"c": {"d": 1}}}}, {"n": 2}, {"n": 3}]


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "10"])
def test_caps_must_be_positive_ints(boto3_client: Any, table: str, bad: Any) -> None:
    for name in ("max_add_bytes", "max_items_per_add", "max_depth"):
        with pytest.raises(InvalidInputError, match=name):
            DynamoDBSession("s", boto3_client, table, **{name: bad})


async def test_reads_never_inflate_beyond_the_cap(boto3_client: Any, table: str) -> None:
    """A table writer stores a zlib bomb by hand: the read fails typed, within the cap."""
    bomb = zlib.compress(b'{"items":[{"c":"' + b"a" * (64 * MIB) + b'"}]}', 9)
    assert len(bomb) < 100_000
    boto3_client.put_item(TableName=table, Item={
        "pk": {"S": session_pk("bomb")}, "sk": {"S": event_sk(1)}, "seq": {"N": "1"},
        "type": {"S": "items_added"}, "ts": {"S": "2026-01-01T00:00:00.000Z"},
        "token": {"S": "t"}, "v": {"N": "1"}, "prev_hash": {"S": "0" * 64},
        "hash": {"S": "0" * 64}, "enc": {"S": "zlib"}, "payload": {"B": bomb},
    })
    session = DynamoDBSession("bomb", boto3_client, table, max_add_bytes=MIB)
    with pytest.raises(CorruptEventError, match="inflates to more than 1,048,576 bytes"):
        await session.get_items()
