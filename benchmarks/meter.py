"""The benchmark's meter: requests, bytes and capacity units one client consumes.

The sizing and capacity rules themselves live in ``eventstore.capacity``; this module
only watches a client's botocore events and adds up what it sends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from eventstore.capacity import (
    Item,
    get_read_units,
    put_write_units,
    query_read_units,
)


@dataclass
class Usage:
    """What a client consumed: HTTP requests, bytes on the wire and capacity units."""

    requests: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    wcu: float = 0.0
    rcu: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)

    def copy(self) -> Usage:
        """An independent copy of these figures."""
        return replace(self, operations=Counter(self.operations))


_WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_READ_OPS = frozenset({"GetItem", "Query", "Scan"})
_READ_ONLY_PARAMS = ("ProjectionExpression", "FilterExpression", "Select", "AttributesToGet")


class CapacityMeter:
    """Watches one botocore/aiobotocore DynamoDB client and adds up what it consumes.

    Requests and bytes are counted from the client's own events (``before-send`` for
    each HTTP attempt and the request body; ``before-parse`` for the response body).
    Capacity units need the sizes of whole items, which a projected read or a write does
    not show, so they are computed only when a ``shadow`` boto3 client to the same
    endpoint is given: it reads the item before a write (and after an update) and repeats
    a read without its projection. Use the shadow only where nothing else writes at the
    same time; its own requests are not counted.

    Args:
        client: The boto3 or aiobotocore DynamoDB client to watch.
        shadow: A boto3 DynamoDB client to the same endpoint, for capacity units.

    Example:
        ```python
        meter = CapacityMeter(client, shadow=boto3.client("dynamodb", endpoint_url=url))
        with meter.measure() as usage:
            await session.add_items(turn)
        print(usage.requests, usage.wcu)
        ```
    """

    def __init__(self, client: Any, *, shadow: Any = None) -> None:
        self.usage = Usage()
        self.shadow = shadow
        self.track_capacity = shadow is not None
        self._keys: dict[str, list[str]] = {}
        events = client.meta.events
        events.register("before-send.dynamodb", self._on_send)
        events.register("before-parse.dynamodb", self._on_response)
        if shadow is not None:
            events.register("before-parameter-build.dynamodb", self._on_params)
            events.register("after-call.dynamodb", self._on_after_call)

    def reset(self) -> None:
        """Start counting from zero."""
        self.usage = Usage()

    @contextmanager
    def measure(self, *, capacity: bool | None = None) -> Iterator[Usage]:
        """Yield a ``Usage`` that holds, on exit, what the block consumed.

        Args:
            capacity: Compute capacity units in this block (``None``: leave
                ``track_capacity`` as it is). Needs the shadow client.
        """
        before = self.usage.copy()
        result = Usage()
        saved = self.track_capacity
        if capacity is not None:
            self.track_capacity = capacity and self.shadow is not None
        try:
            yield result
        finally:
            self.track_capacity = saved
        now = self.usage
        result.requests = now.requests - before.requests
        result.bytes_sent = now.bytes_sent - before.bytes_sent
        result.bytes_received = now.bytes_received - before.bytes_received
        result.wcu = now.wcu - before.wcu
        result.rcu = now.rcu - before.rcu
        result.operations = now.operations - before.operations

    def _on_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        self.usage.requests += 1
        self.usage.operations[str(target).rsplit(".", 1)[-1]] += 1
        body = request.body or b""
        self.usage.bytes_sent += len(body.encode("utf-8") if isinstance(body, str) else body)

    def _on_response(self, response_dict: dict[str, Any], **_: Any) -> None:
        body = response_dict.get("body") or b""
        self.usage.bytes_received += len(body)

    def _key_names(self, table: str) -> list[str]:
        if table not in self._keys:
            described = self.shadow.describe_table(TableName=table)["Table"]
            self._keys[table] = [k["AttributeName"] for k in described["KeySchema"]]
        return self._keys[table]

    def _current(self, table: str, key_source: Item) -> Item | None:
        key = {name: key_source[name] for name in self._key_names(table)}
        found: Item | None = self.shadow.get_item(
            TableName=table, Key=key, ConsistentRead=True
        ).get("Item")
        return found

    def _on_params(self, params: dict[str, Any], model: Any, context: Any, **_: Any) -> None:
        if not self.track_capacity:
            return
        name = model.name
        context["capacity_params"] = params
        if name in _WRITE_OPS:
            source = params.get("Item") or params["Key"]
            context["capacity_before"] = [self._current(params["TableName"], source)]
        elif name == "TransactWriteItems":
            olds = []
            for entry in params["TransactItems"]:
                ((_, body),) = entry.items()
                olds.append(self._current(body["TableName"], body.get("Item") or body["Key"]))
            context["capacity_before"] = olds

    def _on_after_call(self, parsed: dict[str, Any], model: Any, context: Any, **_: Any) -> None:
        params: dict[str, Any] | None = context.get("capacity_params")
        if not self.track_capacity or params is None:
            return
        name = model.name
        if name in _WRITE_OPS or name == "TransactWriteItems":
            self.usage.wcu += self._write_units(name, params, context)
        elif name in _READ_OPS:
            self.usage.rcu += self._read_units(name, params, parsed)

    def _write_units(self, name: str, params: dict[str, Any], context: Any) -> int:
        olds: list[Item | None] = context.get("capacity_before", [])
        if name == "TransactWriteItems":
            total = 0
            for entry, old in zip(params["TransactItems"], olds, strict=True):
                ((kind, body),) = entry.items()
                new = self._written(kind, body, old)
                total += put_write_units(new, old, transactional=True)
            return total
        kind = {"PutItem": "Put", "UpdateItem": "Update", "DeleteItem": "Delete"}[name]
        return put_write_units(self._written(kind, params, olds[0]), olds[0])

    def _written(self, kind: str, body: dict[str, Any], old: Item | None) -> Item | None:
        if kind == "Put":
            new: Item | None = body["Item"]
            return new
        if kind == "Update":
            return self._current(body["TableName"], body["Key"])
        return old if kind == "ConditionCheck" else None

    def _read_units(self, name: str, params: dict[str, Any], parsed: dict[str, Any]) -> float:
        consistent = bool(params.get("ConsistentRead", False))
        whole = not any(p in params for p in _READ_ONLY_PARAMS) and "Error" not in parsed
        if whole:  # the response holds the whole items that were read
            if name == "GetItem":
                return get_read_units(parsed.get("Item"), consistent=consistent)
            return query_read_units(parsed.get("Items", []), consistent=consistent)
        if name == "GetItem":
            item = self.shadow.get_item(
                TableName=params["TableName"], Key=params["Key"], ConsistentRead=True
            ).get("Item")
            return get_read_units(item, consistent=consistent)
        again = {k: v for k, v in params.items() if k not in _READ_ONLY_PARAMS}
        kept = again.get("KeyConditionExpression", "")
        for placeholders in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            used = {k: v for k, v in again.pop(placeholders, {}).items() if k in kept}
            if used:
                again[placeholders] = used
        items = getattr(self.shadow, "query" if name == "Query" else "scan")(**again)
        return query_read_units(items.get("Items", []), consistent=consistent)
