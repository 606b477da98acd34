"""The local stream pump: a stand-in for Lambda's DynamoDB event source mapping.

``StreamPump`` reads the table's stream through the ``dynamodbstreams`` API (moto's
embedded endpoint, LocalStack, or AWS), turns each record into the shape Lambda
delivers (binary values as base64 text, ``ApproximateCreationDateTime`` in epoch
seconds, ``eventSourceARN``), drops records that do not match the event source
mapping's filter (``STREAM_FILTER_PATTERN``), and calls the handler with batches of at
most ``STREAM_BATCH_SIZE`` records -- the same settings ``template.yaml`` uses.

Failures follow Lambda's ``ReportBatchItemFailures`` rules: the batch is checkpointed up
to the first record named in ``batchItemFailures``, and the next delivery starts there (a
handler exception fails the whole batch). After ``max_retries`` failed deliveries the pump
skips that record with an ERROR log naming it (``on_exhausted="skip"``, where Lambda would
use its on-failure destination; a crashed batch is skipped whole) or raises
``StreamPumpError`` (``on_exhausted="stop"``).

``drain()`` delivers everything in the stream right now and returns; it does not wait
for the batching window. ``start()`` runs a background thread that polls, waits up to
``batching_window_seconds`` for a batch to fill, and delivers; ``stop()`` ends it.
eventstore never imports ``stream_handlers``: the handler is passed in.

Example:
    ```python
    from convlog.local import EmbeddedEndpoint
    from convlog.pump import StreamPump
    from stream_handlers.projector import build_handler

    with EmbeddedEndpoint() as endpoint:
        client = endpoint.client("dynamodb")
        pump = StreamPump(build_handler(client, "agent_sessions"), "agent_sessions",
                          client_kwargs=endpoint.client_kwargs())
        delivered = pump.drain()        # tests, `convlog demo`
        pump.start()                    # `convlog serve`: keep projecting in the background
        ...
        pump.stop()
    ```
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from eventstore.client import DynamoClient, wrap_client
from eventstore.errors import StorageError, StreamPumpError
from eventstore.table import (
    STREAM_BATCH_SIZE,
    STREAM_BATCHING_WINDOW_SECONDS,
    STREAM_FILTER_PATTERN,
)

from .lambda_events import LocalContext, lambda_image, lambda_record, matches_filter

__all__ = ["LocalContext", "PumpStats", "StreamPump", "lambda_image", "lambda_record",
           "matches_filter"]

LOG = logging.getLogger("convlog.pump")
StreamHandler = Callable[[dict[str, Any], Any], Any]
RECORDS_PER_POLL = 1000


@dataclass
class PumpStats:
    """Counters of a pump's life: records delivered (checkpointed), batches, retries.

    Example:
        ```python
        pump.drain()
        print(pump.stats.delivered, pump.stats.retries, pump.stats.skipped)
        ```
    """

    delivered: int = 0
    batches: int = 0
    retries: int = 0
    skipped: int = 0
    filtered: int = 0


@dataclass
class _Shard:
    shard_id: str
    iterator: str | None
    buffer: list[dict[str, Any]] = field(default_factory=list)
    first_seen: float | None = None
    last_seq: str | None = None


class StreamPump:
    """Feed a table's DynamoDB stream to a Lambda-style handler, locally.

    Args:
        handler: ``handler(event, context)`` returning ``{"batchItemFailures": [...]}``
            (e.g. ``stream_handlers.projector.build_handler(client, table)``).
        table_name: The table whose stream is read.
        dynamodb: A boto3 DynamoDB client (to find the stream ARN).
        streams: A boto3 ``dynamodbstreams`` client.
        client_kwargs: Used to create the clients not given (``endpoint_url``,
            ``region_name``, credentials), e.g. ``EmbeddedEndpoint.client_kwargs()``.
        batch_size: Most records per delivery.
        batching_window_seconds: How long the background loop waits for a batch to fill.
        filter_pattern: The event-filtering pattern records must match.
        max_retries: Failed deliveries of one record before it is given up.
        on_exhausted: ``"skip"`` the record (logged) or ``"stop"`` (raise).
        starting_position: ``"TRIM_HORIZON"`` (everything) or ``"LATEST"``.
        poll_interval_seconds: Sleep between empty polls of the background loop.

    Example:
        ```python
        pump = StreamPump(handler, "agent_sessions", client_kwargs=endpoint.client_kwargs())
        assert pump.drain() == 3
        ```
    """

    def __init__(
        self,
        handler: StreamHandler,
        table_name: str,
        *,
        dynamodb: Any = None,
        streams: Any = None,
        client_kwargs: Mapping[str, Any] | None = None,
        batch_size: int = STREAM_BATCH_SIZE,
        batching_window_seconds: float = STREAM_BATCHING_WINDOW_SECONDS,
        filter_pattern: Mapping[str, Any] | None = None,
        max_retries: int = 3,
        on_exhausted: Literal["skip", "stop"] = "skip",
        starting_position: Literal["TRIM_HORIZON", "LATEST"] = "TRIM_HORIZON",
        poll_interval_seconds: float = 0.2,
    ) -> None:
        if batch_size < 1 or max_retries < 0:
            raise ValueError("batch_size must be >= 1 and max_retries >= 0")
        import boto3

        kwargs = dict(client_kwargs or {})
        self.handler = handler
        self.table_name = table_name
        self.db: DynamoClient = wrap_client(dynamodb or boto3.client("dynamodb", **kwargs))
        self.streams = DynamoClient(streams or boto3.client("dynamodbstreams", **kwargs))
        self.batch_size = batch_size
        self.window = batching_window_seconds
        self.filter_pattern = STREAM_FILTER_PATTERN if filter_pattern is None else filter_pattern
        self.max_retries = max_retries
        self.on_exhausted = on_exhausted
        self.starting_position = starting_position
        self.poll_interval = poll_interval_seconds
        self.stats = PumpStats()
        self.context = LocalContext()
        self._stream_arn: str | None = None
        self._shards: dict[str, _Shard] = {}
        self._attempts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def stream_arn(self) -> str:
        """The ARN of the table's latest stream."""
        if self._stream_arn is None:
            table = self.db.call_sync("describe_table", TableName=self.table_name)["Table"]
            arn = table.get("LatestStreamArn")
            if not arn:
                raise StreamPumpError(f"table {self.table_name!r} has no stream enabled")
            self._stream_arn = str(arn)
        return self._stream_arn

    def drain(self) -> int:
        """Deliver every record now in the stream; return how many were checkpointed.

        Raises:
            StreamPumpError: A record failed ``max_retries`` times and
                ``on_exhausted="stop"``.
        """
        with self._lock:
            before = self.stats.delivered
            while self._poll():
                for shard in self._shards.values():
                    while shard.buffer:
                        self._deliver(shard)
            return self.stats.delivered - before

    def start(self) -> StreamPump:
        """Start the background loop (returns ``self``); ``stop()`` ends it."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="convlog-pump", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the background loop and wait for the batch in flight to finish.

        Records still waiting for their batching window stay buffered; a later
        ``drain()`` delivers them.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> StreamPump:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with self._lock:
                    self._poll()
                    for shard in self._shards.values():
                        while shard.buffer and self._due(shard):
                            self._deliver(shard)
            except (StorageError, StreamPumpError) as exc:
                LOG.error("stream pump stopped: %s", exc)
                self.error = exc
                return
            self._stop.wait(self.poll_interval)

    def _due(self, shard: _Shard) -> bool:
        if len(shard.buffer) >= self.batch_size or shard.first_seen is None:
            return True
        return time.monotonic() - shard.first_seen >= self.window or self._stop.is_set()

    def _poll(self) -> bool:
        """Fetch new records of every shard into the buffers; whether any are buffered."""
        description = self.streams.call_sync("describe_stream", StreamArn=self.stream_arn)
        for info in description["StreamDescription"].get("Shards", []):
            if info["ShardId"] not in self._shards:
                position = "TRIM_HORIZON" if self._shards else self.starting_position
                iterator = self.streams.call_sync(
                    "get_shard_iterator", StreamArn=self.stream_arn, ShardId=info["ShardId"],
                    ShardIteratorType=position,
                )["ShardIterator"]
                self._shards[info["ShardId"]] = _Shard(info["ShardId"], iterator)
        for shard in self._shards.values():
            while shard.iterator is not None:
                page = self._get_records(shard)
                shard.iterator = page.get("NextShardIterator")
                records = page.get("Records", [])
                for raw in records:
                    shard.last_seq = str(raw["dynamodb"]["SequenceNumber"])
                    record = lambda_record(raw, self.stream_arn)
                    if matches_filter(self.filter_pattern, record):
                        shard.buffer.append(record)
                    else:
                        self.stats.filtered += 1
                if shard.buffer and shard.first_seen is None:
                    shard.first_seen = time.monotonic()
                if not records:
                    break
        return any(s.buffer for s in self._shards.values())

    def _get_records(self, shard: _Shard) -> dict[str, Any]:
        """One ``GetRecords`` page; an expired iterator (15 min on AWS) is renewed once."""
        try:
            return self.streams.call_sync(
                "get_records", ShardIterator=shard.iterator, Limit=RECORDS_PER_POLL
            )
        except StorageError as exc:
            if exc.code != "ExpiredIteratorException":
                raise
        position: dict[str, Any] = (
            {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": shard.last_seq}
            if shard.last_seq is not None
            else {"ShardIteratorType": self.starting_position}
        )
        shard.iterator = self.streams.call_sync(
            "get_shard_iterator", StreamArn=self.stream_arn, ShardId=shard.shard_id, **position
        )["ShardIterator"]
        return self.streams.call_sync(
            "get_records", ShardIterator=shard.iterator, Limit=RECORDS_PER_POLL
        )

    def _deliver(self, shard: _Shard) -> None:
        batch = shard.buffer[: self.batch_size]
        ids = [r["dynamodb"]["SequenceNumber"] for r in batch]
        self.stats.batches += 1
        try:
            response = self.handler({"Records": batch}, self.context)
            failures = (response or {}).get("batchItemFailures") or []
            named = {f.get("itemIdentifier") for f in failures}
            first = next((i for i, rid in enumerate(ids) if rid in named), 0 if failures else None)
            crashed = False
        except Exception:
            LOG.exception("stream handler raised on a batch of %d records", len(batch))
            first, crashed = 0, True
        if first is None:
            self._checkpoint(shard, len(batch))
            return
        self._checkpoint(shard, first)
        failed_id = ids[first]
        self._attempts[failed_id] = self._attempts.get(failed_id, 0) + 1
        if self._attempts[failed_id] <= self.max_retries:
            self.stats.retries += 1
            return
        keys = batch[first]["dynamodb"].get("Keys", {})
        where = f"{keys.get('pk', {}).get('S', '?')} {keys.get('sk', {}).get('S', '?')}"
        if self.on_exhausted == "stop":
            raise StreamPumpError(
                f"stream record {failed_id} ({where}) failed {self._attempts[failed_id]} times"
            )
        count = len(batch) - first if crashed else 1
        LOG.error("giving up on %d stream record(s) from %s (%s) after %d attempts",
                  count, failed_id, where, self._attempts[failed_id])
        del shard.buffer[:count]
        self.stats.skipped += count
        self._attempts.pop(failed_id, None)

    def _checkpoint(self, shard: _Shard, count: int) -> None:
        for record in shard.buffer[:count]:
            self._attempts.pop(record["dynamodb"]["SequenceNumber"], None)
        del shard.buffer[:count]
        self.stats.delivered += count
        shard.first_seen = time.monotonic() if shard.buffer else None
