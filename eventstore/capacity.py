"""DynamoDB item sizes and capacity units, computed with DynamoDB's documented rules.

Sizes follow "DynamoDB item sizes and formats" in the DynamoDB developer guide:

* a string counts its UTF-8 bytes, a binary its raw bytes (not the base64 on the wire);
* a number counts 1 byte per two significant digits (leading and trailing zeroes
  trimmed) plus 1 byte;
* a null or Boolean counts 1 byte;
* a list or map counts 3 bytes, plus 1 byte per element, plus its elements (map keys
  count their UTF-8 bytes);
* a set counts its elements;
* every attribute also counts the UTF-8 bytes of its name.

Capacity units follow the pricing rules for on-demand and provisioned tables:

* a write costs 1 WCU per started 1 KB of the larger of the old and the new item; a
  transactional write costs twice that;
* a read costs 1 RCU per started 4 KB when strongly consistent, half that when
  eventually consistent, twice that in a transaction; a ``Query`` (or a page of one) sums
  the sizes of the items it reads and rounds up once; every request costs at least one
  unit (half a unit for an eventually consistent read).

The figures are therefore deterministic: the same items cost the same units, on the
embedded endpoint or in AWS.

Example:
    ```python
    from eventstore.capacity import item_size, query_read_units, write_units

    item = {"pk": {"S": "SESSION#s1"}, "sk": {"S": "EVENT#000000000001"}}
    assert item_size(item) == 32
    assert write_units(item_size(item)) == 1
    assert query_read_units([item] * 200, consistent=True) == 2.0
    ```
"""

from __future__ import annotations

import base64
import math
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
ITEM_LIMIT_BYTES = 400 * 1024
LIST_MAP_OVERHEAD = 3
ELEMENT_OVERHEAD = 1

AttrValue = Mapping[str, Any]
Item = Mapping[str, AttrValue]


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _binary(value: Any) -> int:
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if isinstance(value, str):  # base64 text, as on the wire
        return len(base64.b64decode(value))
    raise TypeError(f"binary value must be bytes or base64 text, got {type(value).__name__}")


def number_size(text: str) -> int:
    """Size of a DynamoDB number: 1 byte per two significant digits, plus 1 byte.

    Raises:
        ValueError: ``text`` is not a number.
    """
    try:
        number = Decimal(text)
    except InvalidOperation as exc:
        raise ValueError(f"not a DynamoDB number: {text!r}") from exc
    if not number.is_finite():
        raise ValueError(f"not a DynamoDB number: {text!r}")
    significant = len(number.normalize().as_tuple().digits)
    return math.ceil(significant / 2) + 1


def value_size(value: AttrValue) -> int:
    """Size in bytes of one attribute value (without its name).

    Raises:
        ValueError: ``value`` is not a DynamoDB attribute value.
    """
    if len(value) != 1:
        raise ValueError(f"attribute value must have exactly one type, got {list(value)}")
    ((kind, inner),) = value.items()
    if kind == "S":
        return _utf8(inner)
    if kind == "N":
        return number_size(inner)
    if kind == "B":
        return _binary(inner)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(_utf8(s) for s in inner)
    if kind == "NS":
        return sum(number_size(n) for n in inner)
    if kind == "BS":
        return sum(_binary(b) for b in inner)
    if kind == "L":
        return LIST_MAP_OVERHEAD + sum(ELEMENT_OVERHEAD + value_size(v) for v in inner)
    if kind == "M":
        return LIST_MAP_OVERHEAD + sum(
            ELEMENT_OVERHEAD + _utf8(name) + value_size(v) for name, v in inner.items()
        )
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Item) -> int:
    """Size in bytes of an item: its attribute names plus their values."""
    return sum(_utf8(name) + value_size(value) for name, value in item.items())


def write_units(size: int, *, transactional: bool = False) -> int:
    """Write capacity units of writing an item of ``size`` bytes (at least 1)."""
    units = max(1, math.ceil(size / WRITE_UNIT_BYTES))
    return units * 2 if transactional else units


def read_units(size: int, *, consistent: bool = True, transactional: bool = False) -> float:
    """Read capacity units of reading ``size`` bytes in one request (at least 1 unit)."""
    units = float(max(1, math.ceil(size / READ_UNIT_BYTES)))
    if transactional:
        return units * 2
    return units if consistent else units / 2


def put_write_units(
    new: Item | None, old: Item | None = None, *, transactional: bool = False
) -> int:
    """WCU of a put, update or delete: the larger of the old and the new item counts."""
    size = max(item_size(new) if new else 0, item_size(old) if old else 0)
    return write_units(size, transactional=transactional)


def query_read_units(items: Iterable[Item], *, consistent: bool) -> float:
    """RCU of one ``Query``/``Scan`` request that read ``items`` (sizes summed, then rounded)."""
    return read_units(sum(item_size(i) for i in items), consistent=consistent)


def get_read_units(item: Item | None, *, consistent: bool) -> float:
    """RCU of one ``GetItem``; a missing item still costs the minimum."""
    return read_units(item_size(item) if item else 0, consistent=consistent)


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
