"""Bad input fails loudly, early and harmlessly (DESIGN rule 8), against moto over HTTP."""

from __future__ import annotations

import math
import uuid
from typing import Any

import pytest
from faults import aio_client_for, boto3_client_for

from convlog.local import free_port
from eventstore import DynamoDBSession, create_table_if_not_exists
from eventstore.errors import (
    ConvlogError,
    EndpointUnreachableError,
    InvalidInputError,
    InvalidItemError,
    InvalidSessionIdError,
    TableNotFoundError,
    TableSchemaError,
)


def scan_all(client: Any, table: str) -> list[Any]:
    items: list[Any] = client.scan(TableName=table)["Items"]
    return items


@pytest.mark.parametrize(
    ("session_id", "message"),
    [
        ("", "empty or blank"),
        ("   \t\n", "empty or blank"),
        ("x" * 1025, "1025 bytes"),
        ("é" * 513, "1026 bytes"),
        (None, "must be a string"),
        (42, "must be a string"),
    ],
)
def test_bad_session_id_is_rejected_before_any_request(
    boto3_client: Any, counter: Any, session_id: Any, message: str
) -> None:
    with pytest.raises(InvalidSessionIdError, match=message):
        DynamoDBSession(session_id, boto3_client, "any-table")
    assert counter.total == 0


async def test_session_id_at_the_limit_works(boto3_client: Any, table: str) -> None:
    longest = "é" * 512  # 1024 bytes in UTF-8
    session = DynamoDBSession(longest, boto3_client, table)
    await session.add_items([{"role": "user", "content": "fits"}])
    assert await DynamoDBSession(longest, boto3_client, table).get_items() == [
        {"role": "user", "content": "fits"}
    ]


class Opaque:
    pass


BAD_ITEMS = [
    ([{"content": {1, 2}}], "item 0\\['content'\\] is a set"),
    ([{"content": b"bytes"}], "is a bytes"),
    ([{"content": Opaque()}], "is a Opaque"),
    ([{"score": math.nan}], "nan, which JSON cannot hold"),
    ([{"score": -math.inf}], "-inf"),
    ([{"deep": [{"ok": 1}, {"bad": {"x": {3}}}]}], "item 0\\['deep'\\]\\[1\\]\\['bad'\\]"),
    ([{1: "non-string key"}], "non-string key 1"),
    ([{"role": "user"}, "not a dict"], "item 1 is a str"),
    ([{"role": "user"}, None], "item 1 is a NoneType"),
    ([{"content": "lone surrogate \ud800"}], "surrogate"),
    ("a string", "needs a list"),
    ({"role": "user"}, "needs a list"),
]


@pytest.mark.parametrize(("items", "message"), BAD_ITEMS)
async def test_non_json_items_are_rejected_and_nothing_written(
    boto3_client: Any, table: str, counter: Any, items: Any, message: str
) -> None:
    session = DynamoDBSession("bad-items", boto3_client, table)
    counter.reset()
    with pytest.raises(InvalidItemError, match=message):
        await session.add_items(items)
    assert counter.total == 0
    assert scan_all(boto3_client, table) == []
    await session.add_items([{"role": "user", "content": "still usable"}])
    assert await session.get_items() == [{"role": "user", "content": "still usable"}]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl_seconds": 0}, "ttl_seconds must be a positive int"),
        ({"ttl_seconds": -5}, "ttl_seconds"),
        ({"ttl_seconds": True}, "ttl_seconds"),
        ({"ttl_seconds": 1.5}, "ttl_seconds"),
        ({"user_id": ""}, "user_id"),
        ({"table_name": ""}, "table_name"),
    ],
)
def test_bad_arguments(boto3_client: Any, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"table_name": "t", **kwargs}
    with pytest.raises(InvalidInputError, match=message):
        DynamoDBSession("s", boto3_client, **args)


def test_not_a_client_is_a_typed_error() -> None:
    with pytest.raises(InvalidInputError, match="boto3 or aiobotocore"):
        DynamoDBSession("s", object(), "t")


def seed_style_table(client: Any) -> str:
    """A table keyed on ``session_id``, like the single-item seed backend's."""
    return other_table(client, [("session_id", "HASH", "S")])


def other_table(client: Any, keys: list[tuple[str, str, str]]) -> str:
    name = f"other-{uuid.uuid4().hex[:8]}"
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": n, "KeyType": k} for n, k, _ in keys],
        AttributeDefinitions=[{"AttributeName": n, "AttributeType": t} for n, _, t in keys],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


WRONG_SCHEMAS = {
    "seed-session_id": [("session_id", "HASH", "S")],
    "pk-only": [("pk", "HASH", "S")],
    "numeric-sk": [("pk", "HASH", "S"), ("sk", "RANGE", "N")],
    "other-range-key": [("pk", "HASH", "S"), ("ts", "RANGE", "S")],
}


@pytest.mark.parametrize("schema", list(WRONG_SCHEMAS))
async def test_wrong_table_schema(boto3_client: Any, aio_client: Any, schema: str) -> None:
    name = other_table(boto3_client, WRONG_SCHEMAS[schema])
    for client in (boto3_client, aio_client):
        session = DynamoDBSession("s", client, name)
        with pytest.raises(TableSchemaError, match=f"{name}.*key schema"):
            await session.add_items([{"role": "user", "content": "x"}])
        with pytest.raises(TableSchemaError):
            await session.clear_session()
        if schema != "numeric-sk":  # moto's Query does not type-check sk (DynamoDB does)
            with pytest.raises(TableSchemaError, match="key schema"):
                await session.get_items()
            with pytest.raises(TableSchemaError):
                await session.pop_item()
        with pytest.raises(TableSchemaError):
            await create_table_if_not_exists(client, name)
    assert scan_all(boto3_client, name) == []


async def test_create_table_refuses_an_existing_table_with_other_keys(
    boto3_client: Any, aio_client: Any
) -> None:
    name = seed_style_table(boto3_client)
    for client in (boto3_client, aio_client):
        with pytest.raises(TableSchemaError, match=f"{name}.*session_id"):
            await create_table_if_not_exists(client, name)
    assert scan_all(boto3_client, name) == []


async def test_missing_table(boto3_client: Any, aio_client: Any) -> None:
    for client in (boto3_client, aio_client):
        session = DynamoDBSession("s", client, "no-such-table")
        with pytest.raises(TableNotFoundError, match="'no-such-table' does not exist"):
            await session.add_items([{"role": "user", "content": "x"}])
        with pytest.raises(TableNotFoundError, match="no-such-table"):
            await session.get_items()
    assert "no-such-table" not in boto3_client.list_tables()["TableNames"]


async def test_unreachable_endpoint() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    fast = {"connect_timeout": 1, "read_timeout": 1,
            "retries": {"mode": "standard", "max_attempts": 0}}
    session = DynamoDBSession("s", boto3_client_for(url, **fast), "t")
    with pytest.raises(EndpointUnreachableError, match=f"{url}.*did not answer"):
        await session.add_items([{"role": "user", "content": "x"}])
    with pytest.raises(EndpointUnreachableError):
        await session.get_items()
    async with aio_client_for(url, **fast) as client:
        session = DynamoDBSession("s", client, "t")
        with pytest.raises(EndpointUnreachableError, match="did not answer"):
            await session.pop_item()
        with pytest.raises(ConvlogError):
            await create_table_if_not_exists(client, "t")
