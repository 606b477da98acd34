"""The projector benchmark: a 10,000-event stream through the stream pump and handler.

The events are written with ``BatchWriteItem`` as the exact items ``add_items`` writes
(same encoder, same hash chain, interleaved across sessions as concurrent conversations
would be), so that building the stream does not dominate the run; the stream pump then
delivers them to ``stream_handlers.projector`` in batches of ``STREAM_BATCH_SIZE``,
and every request of the handler's client is counted.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from convlog.local import EmbeddedEndpoint
from eventstore import create_table_if_not_exists
from eventstore.events import GENESIS_HASH, ItemsAdded, chain_hash, now_iso
from eventstore.records import encode_event

from .meter import CapacityMeter
from .workload import turn

HANDLER_POOL = 32
WRITE_OPS = ("PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem")


def write_stream(client: Any, table: str, events: int, sessions: int) -> None:
    """Write ``events`` items_added events, round-robin over ``sessions`` sessions."""
    heads = {f"bench-proj-{n:04d}": GENESIS_HASH for n in range(sessions)}
    pending: list[dict[str, Any]] = []
    written = 0
    seq = 0
    while written < events:
        seq += 1
        for sid in heads:
            if written == events:
                break
            event = ItemsAdded(
                session_id=sid, seq=seq, ts=now_iso(), user_id="bench-user",
                token=uuid.uuid4().hex, items=turn(seq),
            )
            digest = chain_hash(heads[sid], event)
            pending.extend(encode_event(event, heads[sid], digest, ttl=None))
            heads[sid] = digest
            written += 1
            if len(pending) >= 25:
                _flush(client, table, pending[:25])
                del pending[:25]
    while pending:
        _flush(client, table, pending[:25])
        del pending[:25]


def _flush(client: Any, table: str, items: list[dict[str, Any]]) -> None:
    request: dict[str, Any] = {table: [{"PutRequest": {"Item": i}} for i in items]}
    while request:
        request = client.batch_write_item(RequestItems=request).get("UnprocessedItems", {})


async def run_projector(endpoint: EmbeddedEndpoint, events: int, sessions: int) -> dict[str, Any]:
    """Project ``events`` events and report throughput and the handler's requests."""
    try:
        from convlog.pump import StreamPump
        from stream_handlers.projector import build_handler
    except ImportError as exc:
        return {"error": f"projector not available: {exc}"}
    table = f"bench-projector-{uuid.uuid4().hex[:8]}"
    writer = endpoint.client("dynamodb")
    await create_table_if_not_exists(writer, table)
    start = time.perf_counter()
    write_stream(writer, table, events, sessions)
    build_seconds = time.perf_counter() - start

    handler_client = endpoint.client("dynamodb")
    meter = CapacityMeter(handler_client)
    handler = build_handler(handler_client, table)
    spent = {"seconds": 0.0}
    batches: list[tuple[int, float]] = []

    def timed(event: dict[str, Any], context: Any) -> Any:
        begin = time.perf_counter()
        try:
            return handler(event, context)
        finally:
            spent["seconds"] += time.perf_counter() - begin
            batches.append((len(event["Records"]), time.perf_counter() - begin))

    pump = StreamPump(
        timed, table, dynamodb=endpoint.client("dynamodb"),
        client_kwargs=endpoint.client_kwargs(),
    )
    start = time.perf_counter()
    with meter.measure() as usage:
        delivered = pump.drain()
    drain_seconds = time.perf_counter() - start
    writes = sum(usage.operations.get(op, 0) for op in WRITE_OPS)
    return {
        "events": events,
        "sessions": sessions,
        "delivered": delivered,
        "batches": pump.stats.batches,
        "retries": pump.stats.retries,
        "skipped": pump.stats.skipped,
        "build_seconds": build_seconds,
        "handler_seconds": spent["seconds"],
        "drain_seconds": drain_seconds,
        "events_per_second": delivered / spent["seconds"] if spent["seconds"] else None,
        "drain_events_per_second": delivered / drain_seconds if drain_seconds else None,
        "requests": usage.requests,
        "view_writes": writes,
        "view_writes_per_event": writes / delivered if delivered else None,
        "requests_per_event": usage.requests / delivered if delivered else None,
        "operations": dict(usage.operations),
        "first_last": _first_last(batches, 1_000),
    }


async def run_delayed(
    endpoint: EmbeddedEndpoint, sessions: int, per_session: int, delay_seconds: float
) -> dict[str, Any]:
    """Project ``sessions`` x ``per_session`` interleaved events, 5 ms added per request.

    The handler's client talks to the endpoint through ``benchmarks.proxy.HttpProxy``
    with a delay rule (DynamoDB's network latency); the stream pump reads the stream
    directly, and only the time inside the handler counts. Returns events/s, batches
    and the handler's requests.
    """
    from botocore.config import Config

    from convlog.pump import StreamPump
    from stream_handlers.projector import build_handler

    from .proxy import HttpProxy

    table = f"bench-delay-{uuid.uuid4().hex[:8]}"
    writer = endpoint.client("dynamodb")
    await create_table_if_not_exists(writer, table)
    events = sessions * per_session
    write_stream(writer, table, events, sessions)
    with HttpProxy(endpoint.url, delay_seconds) as proxy:
        kwargs = {**endpoint.client_kwargs(), "endpoint_url": proxy.url}
        import boto3

        handler_client = boto3.client(
            "dynamodb", config=Config(max_pool_connections=HANDLER_POOL), **kwargs
        )
        meter = CapacityMeter(handler_client)
        batches: list[tuple[int, float]] = []
        handler = build_handler(handler_client, table)

        def timed(event: dict[str, Any], context: Any) -> Any:
            begin = time.perf_counter()
            try:
                return handler(event, context)
            finally:
                batches.append((len(event["Records"]), time.perf_counter() - begin))

        pump = StreamPump(timed, table, dynamodb=writer, client_kwargs=endpoint.client_kwargs())
        with meter.measure() as usage:
            delivered = pump.drain()
    seconds = sum(t for _, t in batches)
    return {
        "sessions": sessions, "per_session": per_session, "events": events,
        "delivered": delivered, "delay_ms": delay_seconds * 1000, "batches": len(batches),
        "handler_seconds": seconds,
        "events_per_second": delivered / seconds if seconds else None,
        "requests": usage.requests,
        "requests_per_batch": usage.requests / len(batches) if batches else None,
        "operations": dict(usage.operations),
        "proxied": dict(proxy.seen),
        "first_last": _first_last(batches, 1_000),
    }


def _first_last(batches: list[tuple[int, float]], span: int) -> dict[str, float] | None:
    """Events/s over the first and the last ``span`` events delivered."""
    if sum(n for n, _ in batches) < 2 * span:
        return None

    def rate(ordered: list[tuple[int, float]]) -> float:
        events, seconds = 0, 0.0
        for n, t in ordered:
            if events >= span:
                break
            events, seconds = events + n, seconds + t
        return events / seconds

    return {"first": rate(batches), "last": rate(list(reversed(batches)))}
