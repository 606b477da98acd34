"""One projector invocation: collect a batch's event records, then project per session.

``ProjectionBatch.collect`` is the Powertools record handler: it decodes a record (a
malformed one raises, so Powertools reports it in ``batchItemFailures``) and files it
under its session. ``ProjectionBatch.flush`` then reads the current views of every
session of the batch at once (``read_views_batch``: consistent ``BatchGetItem``, 100
keys per request, all sent together), and for each session orders the events by seq,
fills a gap from the table, folds (``projections.project_session``) and writes the
snapshot and the meta item once each, with a condition on the last applied seq, plus
the tool-cache entries. The writes of all sessions go out concurrently, at most
``max_in_flight`` at a time, so a batch over 100 sessions costs a few round trips of
wall time, not three per session. A record that cannot be decoded is projected from the
table's copy of its event (the truth). The stored snapshot is built on only when the
chain proves it (the first new event's ``prev_hash`` is the snapshot's ``hash``);
otherwise, or when it cannot be decoded, the session is folded from its first stored
event. A failure in one session never fails the others' records. A session erased by
``convlog purge`` (a live tombstone at its views) is skipped: nothing of it is written
again, however late or often its records arrive. Tool-cache entries are dated by the
stream records' ``ApproximateCreationDateTime``, never by the event's own ``ts``. A
session blocked by an event whose table copy it cannot read reports that record and every
later one of the session as failed: the views stop at the last good event, never past it.

Before a session's views, the batch's usage events are counted toward their users
(``eventstore.user_usage``: one conditional update per user, idempotent by seq), so
views at seq N mean every usage up to N is counted.

Example:
    ```python
    batch = ProjectionBatch(wrap_client(client), "agent_sessions", logger)
    response = process_partial_response(event, batch.collect, processor, context)
    response, outcome = run_sync(batch.flush(response))
    ```
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from eventstore.cache_commit import write_tool_entries
from eventstore.client import DynamoClient
from eventstore.errors import CorruptEventError
from eventstore.fold import reaches_sealed
from eventstore.history import branch_base
from eventstore.log import EventLog
from eventstore.payloads import PayloadStore
from eventstore.records import StoredEvent
from eventstore.user_usage import add_user_usage, spent_by_user
from eventstore.viewbatch import read_views_batch
from eventstore.views import ViewState, read_views, write_session_views
from projections import EventRecord, classify, project_session, record_location

T = TypeVar("T")
MAX_IN_FLIGHT = 32  # requests at once; capped by the client's connection pool


@dataclass
class BatchOutcome:
    """What a flush did: events newly applied, the oldest record's age, failed ids.

    Example:
        ```python
        response, outcome = run_sync(batch.flush(response))
        print(outcome.projected, outcome.lag_ms)
        ```
    """

    projected: int = 0
    lag_ms: float | None = None
    failed: list[str] = field(default_factory=list)


class ProjectionBatch:
    """Collects the event records of one batch and projects them per session.

    Args:
        db: DynamoDB client adapter.
        table_name: The convlog table.
        logger: Where rejected records and blocked sessions are logged.
        tool_ttl_seconds: Lifetime of tool-cache entries (``0``: no tool caching).
        payloads: Where large payloads and snapshots live (S3), if anywhere.
        max_in_flight: Most requests sent at once (default: ``MAX_IN_FLIGHT``, at most
            the client's ``max_pool_connections``).

    Example:
        ```python
        batch = ProjectionBatch(wrap_client(boto3_client), "agent_sessions", logger)
        for record in DynamoDBStreamEvent(event).records:
            batch.collect(record)
        response, outcome = run_sync(batch.flush({"batchItemFailures": []}))
        ```
    """

    def __init__(
        self,
        db: DynamoClient,
        table_name: str,
        logger: logging.Logger | Any,
        *,
        tool_ttl_seconds: int = 3600,
        payloads: PayloadStore | None = None,
        max_in_flight: int | None = None,
    ) -> None:
        self.db = db
        self.payloads = payloads
        self.max_in_flight = max_in_flight or in_flight_limit(db)
        self.table_name = table_name
        self.logger = logger
        self.tool_ttl_seconds = tool_ttl_seconds
        self.sessions: dict[str, list[EventRecord]] = defaultdict(list)
        self.order: list[str] = []

    def collect(self, record: DynamoDBRecord) -> None:
        """Powertools record handler: decode and file one record.

        The table's copy of an event is the truth: a record whose image cannot be
        decoded, but whose keys name a session and seq, is filed to be read from the
        table (``flush`` then projects it, or reports it failed if that copy is bad
        too). A record without usable keys raises (Powertools reports it failed).
        """
        raw = record.raw_event
        record_id = str(raw.get("dynamodb", {}).get("SequenceNumber", ""))
        self.order.append(record_id)
        try:
            rec = classify(raw)
        except CorruptEventError as exc:
            session, seq = record_location(raw)
            if session == "?" or not seq.isdigit():
                self.logger.error(
                    f"rejected stream record: session {session} seq {seq}: {exc}",
                    extra={"session_id": session, "seq": seq},
                )
                raise
            self.logger.warning(
                f"stream record of session {session} seq {seq} cannot be decoded ({exc}); "
                "projecting the table's copy",
                extra={"session_id": session, "seq": seq},
            )
            rec = EventRecord(record_id, session, int(seq), None)
        if rec is not None:
            self.sessions[rec.session_id].append(rec)

    async def flush(self, response: dict[str, Any]) -> tuple[dict[str, Any], BatchOutcome]:
        """Project every collected session and merge its failures into ``response``.

        The views of all sessions are read first, in as few requests as DynamoDB allows;
        sessions are then independent and project concurrently (their requests bounded
        by ``max_in_flight``); within a session, events are applied strictly in seq order.
        """
        outcome = BatchOutcome()
        now = time.time()
        ages = [now - r.created_at for rs in self.sessions.values() for r in rs
                if r.created_at is not None]
        outcome.lag_ms = max(ages) * 1000 if ages else None
        limit = asyncio.Semaphore(max(1, self.max_in_flight // 2))
        states: dict[str, ViewState] = {}
        try:
            states = await read_views_batch(
                self.db, self.table_name, list(self.sessions), payloads=self.payloads)
        except Exception as exc:  # every record of the batch is retried
            self.logger.error(f"reading the views of {len(self.sessions)} sessions failed: {exc}")
            outcome.failed.extend(r.record_id for rs in self.sessions.values() for r in rs)

        async def one(session_id: str, records: list[EventRecord]) -> None:
            try:
                outcome.projected += await self._project(
                    session_id, records, states[session_id], outcome.failed, limit
                )
            except Exception as exc:  # this session only, never the whole batch
                self.logger.error(
                    f"session {session_id}: projection failed at seq {records[0].seq}: "
                    f"{exc}",
                    extra={"session_id": session_id, "seq": records[0].seq},
                )
                outcome.failed.extend(r.record_id for r in records)

        await asyncio.gather(*(one(s, rs) for s, rs in self.sessions.items() if s in states))
        failed = {f["itemIdentifier"] for f in response.get("batchItemFailures", [])}
        failed.update(outcome.failed)
        ordered = [i for i in self.order if i in failed]
        ordered += sorted(failed.difference(ordered))
        return {"batchItemFailures": [{"itemIdentifier": i} for i in ordered]}, outcome

    async def _project(
        self, session_id: str, records: list[EventRecord], state: ViewState,
        failed: list[str], limit: asyncio.Semaphore,
    ) -> int:
        if state.purged:
            self.logger.info(f"session {session_id}: purged, {len(records)} records ignored",
                             extra={"session_id": session_id})
            return 0
        stored = state.snapshot.sealed if state.snapshot is not None else None
        prior = state.snapshot if state.consistent else None
        if prior is not None and prior.expired(time.time()):
            prior = None  # every event it folded has expired: start from what is stored
        base = prior.seq if prior else 0
        newer = sorted({r.seq: r for r in records if r.seq > base}.values(), key=lambda r: r.seq)
        if not newer:
            return 0
        top = newer[-1].seq
        events: list[StoredEvent] = [r.stored for r in newer if r.stored is not None]
        if [e.event.seq for e in events] != list(range(base + 1, top + 1)):
            async with limit:
                events = await self._read_range(session_id, base, top)
        if prior is not None and not (events and events[0].prev_hash == prior.hash):
            # the chain does not prove the stored snapshot (forged, copied, or older
            # than hashes): fold the session from its first stored event instead
            prior, base = None, 0
            async with limit:
                events = await self._read_range(session_id, 0, top)
        if prior is not None and reaches_sealed(prior, events, time.time()):
            # a removal deeper than the tail: read the whole state back (it is then
            # sealed anew, in a new epoch); rare -- the tail keeps CHUNK_ENTRIES or more
            async with limit:
                whole = await read_views(self.db, self.table_name, session_id,
                                         payloads=self.payloads)
            if whole.snapshot is None or whole.snapshot.seq != prior.seq:
                prior, base = None, 0
                async with limit:
                    events = await self._read_range(session_id, 0, top)
            else:
                prior, state = whole.snapshot, whole
        meta = state.meta if prior else None
        if prior is None and events and events[0].event.type == "branch_created":
            # a branch starts from its parent's prefix (read from the parent's events)
            async with limit:
                prior = await branch_base(EventLog(self.db, self.table_name), events[0])
        result = project_session(
            session_id, prior, meta, events,
            tool_ttl_seconds=self.tool_ttl_seconds,
            times={r.seq: r.created_at for r in newer if r.created_at is not None},
        )
        done = events[-1].event.seq if events else base
        failed.extend(r.record_id for r in newer if r.seq > done)
        if result is None:
            return 0
        # per-user usage totals before the views: views at seq N mean usage <= N is counted
        for user_id, spent in spent_by_user(session_id, events).items():
            async with limit:
                await add_user_usage(self.db, self.table_name, user_id, session_id, spent)

        async with limit:  # one slot per session: its two view writes go out together
            await write_session_views(
                self.db, self.table_name, session_id, result.snapshot, result.meta,
                ttl=result.ttl, stale_part_keys=state.part_keys, payloads=self.payloads,
                replaced=stored,
            )
        await write_tool_entries(self.db, self.table_name, result.tool_entries, limit=limit)
        return result.applied

    async def _read_range(self, session_id: str, base: int, top: int) -> list[StoredEvent]:
        """Events ``base+1..top`` from the table, stopping before a missing or bad one."""
        log = EventLog(self.db, self.table_name, payloads=self.payloads)
        events: list[StoredEvent] = []
        try:
            async for stored in log.iter_events(session_id, after_seq=base, upto_seq=top):
                if base == 0 and not events:
                    base = stored.event.seq - 1  # older events expired and were deleted
                if stored.event.seq != base + len(events) + 1:
                    break
                events.append(stored)
        except CorruptEventError as exc:
            seq = base + len(events) + 1
            self.logger.error(
                f"session {session_id} blocked at seq {seq}: {exc}",
                extra={"session_id": session_id, "seq": seq},
            )
            return events
        if len(events) < top - base:
            seq = base + len(events) + 1
            self.logger.error(
                f"session {session_id} blocked at seq {seq}: event missing from the table",
                extra={"session_id": session_id, "seq": seq},
            )
        return events


def in_flight_limit(db: DynamoClient) -> int:
    """``MAX_IN_FLIGHT``, or fewer when the client's connection pool is smaller."""
    pool = getattr(getattr(db.raw.meta, "config", None), "max_pool_connections", None)
    return min(MAX_IN_FLIGHT, pool) if isinstance(pool, int) and pool > 0 else MAX_IN_FLIGHT


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even inside a running event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="convlog-projector")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    value: T = box["value"]
    return value
