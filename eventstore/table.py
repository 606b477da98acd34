"""The one definition of the convlog table, and the helper that creates it.

Everything that needs to know the shape of the table -- ``create_table_if_not_exists``,
the tests, the template check -- reads it from here, so code and ``template.yaml`` cannot
drift apart silently.

Example:
    ```python
    from eventstore import create_table_if_not_exists

    await create_table_if_not_exists(client, "agent_sessions")
    ```
"""

from __future__ import annotations

import asyncio
from typing import Any

from .client import DynamoClient, wrap_client
from .errors import StorageError, TableNotFoundError, TableSchemaError

PARTITION_KEY = "pk"
SORT_KEY = "sk"
USER_INDEX = "by_user"
USER_INDEX_PK = "gsi1pk"
USER_INDEX_SK = "gsi1sk"
TTL_ATTRIBUTE = "ttl"
STREAM_VIEW_TYPE = "NEW_AND_OLD_IMAGES"
BILLING_MODE = "PAY_PER_REQUEST"

# The projector's event source mapping; template.yaml and the local stream pump both use it.
STREAM_BATCH_SIZE = 100
STREAM_BATCHING_WINDOW_SECONDS = 1
STREAM_FILTER_PATTERN: dict[str, Any] = {
    "eventName": ["INSERT"],
    "dynamodb": {"Keys": {"sk": {"S": [{"prefix": "EVENT#"}]}}},
}

KEY_SCHEMA: list[dict[str, str]] = [
    {"AttributeName": PARTITION_KEY, "KeyType": "HASH"},
    {"AttributeName": SORT_KEY, "KeyType": "RANGE"},
]
ATTRIBUTE_DEFINITIONS: list[dict[str, str]] = [
    {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
    {"AttributeName": SORT_KEY, "AttributeType": "S"},
    {"AttributeName": USER_INDEX_PK, "AttributeType": "S"},
    {"AttributeName": USER_INDEX_SK, "AttributeType": "S"},
]
GLOBAL_SECONDARY_INDEXES: list[dict[str, Any]] = [
    {
        "IndexName": USER_INDEX,
        "KeySchema": [
            {"AttributeName": USER_INDEX_PK, "KeyType": "HASH"},
            {"AttributeName": USER_INDEX_SK, "KeyType": "RANGE"},
        ],
        "Projection": {"ProjectionType": "ALL"},
    }
]
STREAM_SPECIFICATION: dict[str, Any] = {
    "StreamEnabled": True,
    "StreamViewType": STREAM_VIEW_TYPE,
}


def table_definition(table_name: str) -> dict[str, Any]:
    """Return the ``CreateTable`` arguments of the convlog table.

    Args:
        table_name: Name of the table.

    Returns:
        Keyword arguments for DynamoDB ``CreateTable``.
    """
    return {
        "TableName": table_name,
        "KeySchema": [dict(k) for k in KEY_SCHEMA],
        "AttributeDefinitions": [dict(a) for a in ATTRIBUTE_DEFINITIONS],
        "GlobalSecondaryIndexes": [dict(g) for g in GLOBAL_SECONDARY_INDEXES],
        "StreamSpecification": dict(STREAM_SPECIFICATION),
        "BillingMode": BILLING_MODE,
        "SSESpecification": {"Enabled": True},
    }


def check_table_description(table: dict[str, Any]) -> None:
    """Raise ``TableSchemaError`` unless a ``DescribeTable`` result has convlog's keys.

    Args:
        table: The ``Table`` member of a ``DescribeTable`` response.

    Raises:
        TableSchemaError: The key schema or the ``by_user`` index differs.
    """
    name = table.get("TableName", "?")
    keys = sorted((k["AttributeName"], k["KeyType"]) for k in table.get("KeySchema", []))
    wanted = sorted((k["AttributeName"], k["KeyType"]) for k in KEY_SCHEMA)
    if keys != wanted:
        raise TableSchemaError(
            f"table {name!r} has key schema {keys}, convlog needs {wanted} "
            "(pk HASH, sk RANGE); use another table name or create it with "
            "create_table_if_not_exists"
        )
    types = {a["AttributeName"]: a["AttributeType"] for a in table["AttributeDefinitions"]}
    for attr in (PARTITION_KEY, SORT_KEY):
        if types.get(attr) != "S":
            raise TableSchemaError(f"table {name!r}: key {attr!r} must be a string (S)")
    indexes = {g["IndexName"]: g for g in table.get("GlobalSecondaryIndexes", [])}
    index = indexes.get(USER_INDEX)
    wanted_index = GLOBAL_SECONDARY_INDEXES[0]["KeySchema"]
    if index is None or sorted(
        (k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]
    ) != sorted((k["AttributeName"], k["KeyType"]) for k in wanted_index):
        raise TableSchemaError(
            f"table {name!r} lacks the global secondary index {USER_INDEX!r} "
            f"on {USER_INDEX_PK}/{USER_INDEX_SK}"
        )


async def describe_table(client: Any, table_name: str) -> dict[str, Any] | None:
    """Return the table description, or ``None`` when the table does not exist."""
    db = wrap_client(client)
    try:
        response = await db.call("describe_table", TableName=table_name)
    except TableNotFoundError:
        return None
    table: dict[str, Any] = response["Table"]
    return table


async def create_table_if_not_exists(
    client: Any,
    table_name: str,
    *,
    enable_ttl: bool = True,
    timeout_seconds: float = 120.0,
) -> None:
    """Create the convlog table unless it exists, and wait until it is active.

    Meant for development and tests; in production deploy ``template.yaml``.

    Args:
        client: A boto3 or aiobotocore DynamoDB client.
        table_name: Name of the table.
        enable_ttl: Turn on DynamoDB TTL on the ``ttl`` attribute.
        timeout_seconds: How long to wait for the table to become active.

    Raises:
        TableSchemaError: A table of that name exists with another key schema.
        StorageError: The table did not become active in time.
    """
    db = wrap_client(client)
    table = await describe_table(client, table_name)
    if table is None:
        try:
            await db.call("create_table", **table_definition(table_name))
        except StorageError as exc:  # lost a race with another creator
            if "ResourceInUse" not in str(exc):
                raise
    table = await _wait_active(db, table_name, timeout_seconds)
    check_table_description(table)
    if enable_ttl:
        ttl = await db.call("describe_time_to_live", TableName=table_name)
        status = ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus")
        if status not in ("ENABLED", "ENABLING"):
            await db.call(
                "update_time_to_live",
                TableName=table_name,
                TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTRIBUTE},
            )


async def _wait_active(db: DynamoClient, table_name: str, timeout: float) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        table: dict[str, Any] = (await db.call("describe_table", TableName=table_name))["Table"]
        if table.get("TableStatus") == "ACTIVE":
            return table
        if loop.time() > deadline:
            raise StorageError(f"table {table_name!r} not active after {timeout:.0f}s")
        await asyncio.sleep(0.5)
