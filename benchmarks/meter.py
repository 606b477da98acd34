"""The benchmark's meter: requests, bytes and capacity units one client consumes.

The sizing and capacity rules themselves live in ``eventstore.capacity``; this module
only watches a client's botocore events and adds up what it sends.

Counting requests and bytes sends nothing: it reads the client's own ``before-send``
and ``before-parse`` events. Capacity units need the sizes of whole items, which a
write or a projected read does not show, so they are computed only inside
``measure(capacity=True)`` -- the benchmark's *counted* call, which is never timed: the
calls it records are sized when the block ends (a projected read is repeated without its
projection then), and only the item a write replaces is read before the write, through
the separate ``shadow`` client. Timed calls run in ``measure(capacity=False)``, which
sends exactly the requests the operation sends (``tests/integration/test_bench_meter.py``
proves it through a counting proxy).
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
    """What a client consumed: HTTP requests, bytes on the wire and capacity units.

    ``round_trips`` counts the requests sent while no other was waiting for its answer:
    requests sent together count once (the wall time DynamoDB's latency adds).

    ``read_keys`` lists the sort keys of the items the reads returned (counted calls
    only), so a benchmark can tell which events a read paid for.
    """

    requests: int = 0
    round_trips: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    wcu: float = 0.0
    rcu: float = 0.0
    operations: Counter[str] = field(default_factory=Counter)
    read_keys: list[str] = field(default_factory=list)

    def copy(self) -> Usage:
        """An independent copy of these figures."""
        return replace(self, operations=Counter(self.operations), read_keys=list(self.read_keys))


@dataclass
class _Call:
    """One recorded request of a counted call, sized when the block ends."""

    name: str
    params: dict[str, Any]
    before: list[Item | None]
    parsed: dict[str, Any] = field(default_factory=dict)


_WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_READ_OPS = frozenset({"GetItem", "Query", "Scan"})
_READ_ONLY_PARAMS = ("ProjectionExpression", "FilterExpression", "Select", "AttributesToGet")


class CapacityMeter:
    """Watches one botocore/aiobotocore DynamoDB client and adds up what it consumes.

    Args:
        client: The boto3 or aiobotocore DynamoDB client to watch.
        shadow: A boto3 DynamoDB client to the same endpoint; needed for capacity
            units (``measure(capacity=True)``). Its own requests are not counted; use
            it only where nothing else writes at the same time.

    Example:
        ```python
        meter = CapacityMeter(client, shadow=boto3.client("dynamodb", endpoint_url=url))
        with meter.measure(capacity=True) as counted:  # not timed
            await session.add_items(turn)
        with meter.measure(capacity=False) as timed:  # only the operation's own requests
            await session.add_items(turn)
        print(counted.requests, counted.wcu, timed.requests)
        ```
    """

    def __init__(self, client: Any, *, shadow: Any = None) -> None:
        self.usage = Usage()
        self.shadow = shadow
        self._keys: dict[str, list[str]] = {}
        self._recording: list[_Call] | None = None
        self._in_flight = 0
        events = client.meta.events
        events.register("before-send.dynamodb", self._on_send)
        events.register("before-parse.dynamodb", self._on_response)
        events.register("before-parameter-build.dynamodb", self._on_params)
        events.register("after-call.dynamodb", self._on_after_call)

    def reset(self) -> None:
        """Start counting from zero."""
        self.usage = Usage()

    @contextmanager
    def measure(self, *, capacity: bool | None = None) -> Iterator[Usage]:
        """Yield a ``Usage`` that holds, on exit, what the block consumed.

        Args:
            capacity: Record the block's calls and compute their capacity units when it
                ends (``None``: whenever a shadow client was given). Never time such a
                block: a write first reads the item it replaces through the shadow.

        Raises:
            ValueError: Capacity units were asked for without a shadow client.
        """
        record = self.shadow is not None if capacity is None else capacity
        if record and self.shadow is None:
            raise ValueError("capacity units need a shadow client")
        before = self.usage.copy()
        result = Usage()
        self._recording = [] if record else None
        try:
            yield result
        finally:
            calls, self._recording = self._recording or [], None
        for call in calls:  # after the block: sizing sends no request inside it
            self._size(call)
        now = self.usage
        result.requests = now.requests - before.requests
        result.round_trips = now.round_trips - before.round_trips
        result.bytes_sent = now.bytes_sent - before.bytes_sent
        result.bytes_received = now.bytes_received - before.bytes_received
        result.wcu = now.wcu - before.wcu
        result.rcu = now.rcu - before.rcu
        result.operations = now.operations - before.operations
        result.read_keys = now.read_keys[len(before.read_keys):]

    # -- counting (every request, no request of its own) ---------------------------------

    def _on_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        if isinstance(target, bytes):
            target = target.decode()
        self.usage.requests += 1
        self.usage.round_trips += self._in_flight == 0  # none pending: a new round trip
        self._in_flight += 1
        self.usage.operations[str(target).rsplit(".", 1)[-1]] += 1
        body = request.body or b""
        self.usage.bytes_sent += len(body.encode("utf-8") if isinstance(body, str) else body)

    def _on_response(self, response_dict: dict[str, Any], **_: Any) -> None:
        body = response_dict.get("body") or b""
        self.usage.bytes_received += len(body)
        self._in_flight = max(0, self._in_flight - 1)

    # -- recording (counted calls only) --------------------------------------------------

    def _on_params(self, params: dict[str, Any], model: Any, context: Any, **_: Any) -> None:
        if self._recording is None:
            return
        name = model.name
        before: list[Item | None] = []
        if name in _WRITE_OPS:
            before = [self._current(params["TableName"], params.get("Item") or params["Key"])]
        elif name == "TransactWriteItems":
            for entry in params["TransactItems"]:
                ((_, body),) = entry.items()
                before.append(self._current(body["TableName"], body.get("Item") or body["Key"]))
        call = _Call(name, dict(params), before)
        context["capacity_call"] = call
        self._recording.append(call)

    def _on_after_call(self, parsed: dict[str, Any], context: Any, **_: Any) -> None:
        call: _Call | None = context.get("capacity_call")
        if call is not None:
            call.parsed = parsed

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

    # -- sizing (when the counted block has ended) ---------------------------------------

    def _size(self, call: _Call) -> None:
        name, params, parsed = call.name, call.params, call.parsed
        if "Error" in parsed:
            return
        if name in _WRITE_OPS or name == "TransactWriteItems":
            self.usage.wcu += self._write_units(name, params, call.before)
        elif name in _READ_OPS:
            self.usage.rcu += self._read_units(name, params, parsed)
            found = parsed.get("Items") or ([parsed["Item"]] if parsed.get("Item") else [])
            self.usage.read_keys.extend(str(i.get("sk", {}).get("S", "")) for i in found)

    def _write_units(self, name: str, params: dict[str, Any], olds: list[Item | None]) -> int:
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
        if not any(p in params for p in _READ_ONLY_PARAMS):  # the response holds whole items
            if name == "GetItem":
                return get_read_units(parsed.get("Item"), consistent=consistent)
            return query_read_units(parsed.get("Items", []), consistent=consistent)
        if name == "GetItem":
            return get_read_units(self._current(params["TableName"], params["Key"]),
                                  consistent=consistent)
        again = {k: v for k, v in params.items() if k not in _READ_ONLY_PARAMS}
        kept = again.get("KeyConditionExpression", "")
        for placeholders in ("ExpressionAttributeNames", "ExpressionAttributeValues"):
            used = {k: v for k, v in again.pop(placeholders, {}).items() if k in kept}
            if used:
                again[placeholders] = used
        items = getattr(self.shadow, "query" if name == "Query" else "scan")(**again)
        return query_read_units(items.get("Items", []), consistent=consistent)
