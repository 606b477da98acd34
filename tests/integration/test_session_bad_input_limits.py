"""Issue 12, item 4: inputs at Python's and JSON's edges are typed errors, nothing written.

An int beyond Python's int/str conversion limit, a mapping that is not a dict, nesting
deeper than ``MAX_NESTING``, a lone surrogate in an id, a ``limit`` that is not an int:
each is an ``eventstore.errors`` error raised before any request (moto over HTTP).
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest

from eventstore import DynamoDBSession
from eventstore.errors import InvalidInputError, InvalidItemError, InvalidSessionIdError
from eventstore.events import MAX_NESTING


def _nested(depth: int) -> dict[str, Any]:
    """An item whose containers nest ``depth`` levels deep (the item itself is level 1)."""
    item: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        item = {"x": item}
    return item


def _nested_list(depth: int) -> Any:
    """Lists nested ``depth`` levels deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


BAD_ITEMS = {
    "huge-int": ([{"n": 10 ** (sys.get_int_max_str_digits() + 5)}], "digits"),
    "mappingproxy-nested": ([{"meta": types.MappingProxyType({"a": 1})}], "mappingproxy"),
    "mappingproxy-item": ([types.MappingProxyType({"role": "user"})], "mappingproxy"),
    "too-deep": ([_nested(MAX_NESTING + 1)], f"deeper than {MAX_NESTING}"),
    "far-too-deep": ([_nested(5000)], f"deeper than {MAX_NESTING}"),
    "too-deep-lists": ([{"x": _nested_list(MAX_NESTING)}], f"deeper than {MAX_NESTING}"),
}


@pytest.mark.parametrize("case", list(BAD_ITEMS))
async def test_bad_items_are_typed_errors_and_nothing_written(
    boto3_client: Any, table: str, counter: Any, case: str
) -> None:
    items, message = BAD_ITEMS[case]
    session = DynamoDBSession("edge-items", boto3_client, table)
    counter.reset()
    with pytest.raises(InvalidItemError, match=message):
        await session.add_items(items)
    assert counter.total == 0
    assert boto3_client.scan(TableName=table)["Items"] == []


async def test_nesting_at_the_limit_and_a_long_int_within_it_round_trip(
    boto3_client: Any, table: str
) -> None:
    near = 10 ** (sys.get_int_max_str_digits() - 1)  # as many digits as the limit allows
    items = [_nested(MAX_NESTING), {"n": near}]
    session = DynamoDBSession("edge-ok", boto3_client, table)
    await session.add_items(items)
    assert await DynamoDBSession("edge-ok", boto3_client, table).get_items() == items


@pytest.mark.parametrize("session_id", ["lone-\ud800", "\udfff"])
def test_lone_surrogate_in_session_id(boto3_client: Any, counter: Any, session_id: str) -> None:
    with pytest.raises(InvalidSessionIdError, match="surrogate"):
        DynamoDBSession(session_id, boto3_client, "any-table")
    assert counter.total == 0


def test_lone_surrogate_in_user_id(boto3_client: Any, counter: Any) -> None:
    with pytest.raises(InvalidInputError, match=r"user_id.*surrogate"):
        DynamoDBSession("s", boto3_client, "any-table", user_id="alice-\udc80")
    assert counter.total == 0


@pytest.mark.parametrize("limit", ["3", 2.5, True, [1]])
async def test_get_items_limit_must_be_an_int(
    boto3_client: Any, table: str, counter: Any, limit: Any
) -> None:
    session = DynamoDBSession("limit", boto3_client, table)
    counter.reset()
    with pytest.raises(InvalidInputError, match="limit must be an int"):
        await session.get_items(limit=limit)
    assert counter.total == 0
