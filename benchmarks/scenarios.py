"""The measurements: per-operation cost at each history length, limits, concurrency."""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from eventstore.capacity import ITEM_LIMIT_BYTES, item_size

from . import cpu
from .cpu import Read
from .meter import CapacityMeter
from .subjects import ConvlogSubject, PeerSubject, Subject
from .workload import history, message, turn

WRITERS = 8
ITEMS_PER_WRITER = 50
SEARCH_CAP_ITEMS = 20_000
ADD_REPS = 25
"""Timed ``add_items`` calls at least (a few ms each): their median must not be one spike
of a shared machine (3 of them once put a 1,000-item add at 13 ms, 25 at 5 ms)."""
TIME_BUDGET_SECONDS = 1.5
LIMIT_SEARCH_START = 1_200


@dataclass
class Figures:
    """One operation of one implementation at one history length."""

    length: int
    latency_ms: float | None = None
    requests: int | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None
    wcu: float | None = None
    rcu: float | None = None
    failed: str | None = None
    timed_calls: int = 0
    timed_requests: float | None = None
    round_trips: int | None = None
    cpu_ms: float | None = None
    below_snapshot: int | None = None
    operations: dict[str, int] = field(default_factory=dict)
    read_keys: list[str] = field(default_factory=list)


@dataclass
class Limit:
    """The largest session an implementation held, and the write that failed (if any)."""

    held: int
    failed_at: int | None = None
    error: str | None = None


@dataclass
class Concurrency:
    """8 writers x 50 items on one session id."""

    expected: int
    stored: int
    raised: int
    requests: int | None
    seconds: float

    @property
    def lost(self) -> int:
        """Items neither stored nor reported to their writer as failed."""
        return self.expected - self.stored - self.raised


@dataclass
class Results:
    """Everything one run measured, keyed by implementation variant."""

    lengths: list[int]
    reps: int
    add: dict[str, dict[int, Figures]] = field(default_factory=dict)
    add_cold: dict[str, dict[int, Figures]] = field(default_factory=dict)
    get_all: dict[str, dict[int, Figures]] = field(default_factory=dict)
    get_20: dict[str, dict[int, Figures]] = field(default_factory=dict)
    lagging: dict[str, dict[int, Figures]] = field(default_factory=dict)
    limits: dict[str, Limit] = field(default_factory=dict)
    concurrency: dict[str, Concurrency] = field(default_factory=dict)
    projector: dict[str, Any] | None = None
    delayed: list[dict[str, Any]] = field(default_factory=list)
    baseline: dict[str, Any] | None = None
    memory: dict[str, Any] | None = None
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"{type(exc).__name__}: {text[:160]}"


async def counted(
    figures: Figures, meter: CapacityMeter | None, call: Callable[[], Awaitable[Any]]
) -> None:
    """One call whose requests, bytes and capacity units are recorded (never timed)."""
    if meter is None:
        await call()
        return
    with meter.measure(capacity=True) as usage:
        await call()
    figures.requests = usage.requests
    figures.round_trips = usage.round_trips
    figures.bytes_sent = usage.bytes_sent
    figures.bytes_received = usage.bytes_received
    figures.wcu = usage.wcu
    figures.rcu = usage.rcu
    figures.operations = dict(usage.operations)
    figures.read_keys = list(usage.read_keys)


async def timed(
    figures: Figures,
    meter: CapacityMeter | None,
    call: Callable[[], Awaitable[Any]],
    reps: int,
    budget_seconds: float = TIME_BUDGET_SECONDS,
) -> None:
    """Up to ``reps`` bare timed calls (at least one), stopping once the budget is spent.

    The meter only counts what the calls send (``capacity=False``: no request of its
    own), so ``timed_requests`` is the requests per timed call.
    """
    timings: list[float] = []
    spent = 0.0
    scope = meter.measure(capacity=False) if meter is not None else contextlib.nullcontext()
    with scope as usage:
        while len(timings) < reps and (not timings or spent < budget_seconds):
            start = time.perf_counter()
            await call()
            timings.append((time.perf_counter() - start) * 1000)
            spent += timings[-1] / 1000
    if timings:
        figures.latency_ms = statistics.median(timings)
        figures.timed_calls = len(timings)
        if usage is not None:
            figures.timed_requests = usage.requests / len(timings)


async def measure(
    length: int,
    meter: CapacityMeter | None,
    call: Callable[[], Awaitable[Any]],
    reps: int,
    budget_seconds: float = TIME_BUDGET_SECONDS,
) -> Figures:
    """One counted call (requests, bytes, capacity units), then up to ``reps`` timed calls."""
    figures = Figures(length)
    try:
        await counted(figures, meter, call)
        await timed(figures, meter, call, reps, budget_seconds)
    except Exception as exc:  # a peer's failure is a result, not a crash
        figures.failed = _short(exc)
    return figures


async def _reads(
    results: Results, key: str, subject: Subject, session: Any, length: int
) -> None:
    meter = subject.meter
    results.get_all.setdefault(key, {})[length] = await measure(
        length, meter, session.get_items, results.reps
    )
    results.get_20.setdefault(key, {})[length] = await measure(
        length, meter, lambda: session.get_items(limit=20), results.reps
    )
    if isinstance(subject, ConvlogSubject):
        for table, read in ((results.get_all, _all), (results.get_20, _newest_20)):
            await _own_cpu(table[key][length], subject, session, read)


async def _all(session: Any) -> Any:
    return await session.get_items()


async def _newest_20(session: Any) -> Any:
    return await session.get_items(limit=20)


async def _own_cpu(figures: Figures, subject: ConvlogSubject, session: Any, read: Read) -> None:
    """convlog's own CPU for ``read``, replayed from its recorded responses (no I/O)."""
    if figures.failed:
        return
    responses = await cpu.record(subject.client, session.table_name, session.session_id, read)
    figures.cpu_ms = await cpu.own_cpu_ms(
        subject.client, responses, session.table_name, session.session_id, read)


async def lagging(results: Results, subject: ConvlogSubject, base: int, lags: list[int]) -> None:
    """Reads of a session whose snapshot is ``lag`` events (turns) behind its head."""
    sid = "bench-lagging"
    session = subject.open(sid)
    await subject.grow(session, sid, base)
    await subject.project()
    written = 0
    for lag in lags:
        while written < lag:
            written += 1
            await session.add_items(turn(20_000_000 + written))
        subject.added(sid, 2 * lag)
        for key, read in (("all", _all), ("20", _newest_20)):
            figures = await measure(lag, subject.meter, lambda r=read: r(session), results.reps)
            figures.below_snapshot = sum(  # events older than the one that proves it
                1 for k in figures.read_keys
                if k.startswith("EVENT#") and int(k[6:18]) < base // 2
            )
            await _own_cpu(figures, subject, session, read)
            results.lagging.setdefault(key, {})[lag] = figures


async def _adds(results: Results, subject: Subject, session: Any, sid: str, length: int) -> None:
    counter = {"turn": 10_000_000 + length * 100}

    async def one_turn() -> None:
        counter["turn"] += 1
        await session.add_items(turn(counter["turn"]))
        subject.added(sid, 2)

    results.add.setdefault(subject.key, {})[length] = await measure(
        length, subject.meter, one_turn, max(results.reps, ADD_REPS)
    )


async def checkpoints(results: Results, subjects: list[Subject]) -> None:
    """Grow one session per implementation through the history lengths and measure."""
    sid = "bench-history"
    sessions = {s.key: s.open(sid) for s in subjects}
    for length in results.lengths:
        for subject in subjects:
            session = sessions[subject.key]
            try:
                await subject.grow(session, sid, length)
            except Exception as exc:
                failure = f"cannot hold {length:,} items ({_short(exc)})"
                for table in (results.add, results.get_all, results.get_20):
                    table.setdefault(subject.key, {})[length] = Figures(length, failed=failure)
                continue
            if isinstance(subject, ConvlogSubject):
                await subject.project()
                await _reads(results, "convlog", subject, session, length)
                await asyncio.to_thread(subject.copy_to_twin, sid)
                twin = subject.open_twin(sid)
                await _reads(results, "convlog-noproj", subject, twin, length)
            else:
                await _reads(results, subject.key, subject, session, length)
            await _adds(results, subject, session, sid, length)
            if isinstance(subject, ConvlogSubject):
                # A new session object must learn the head first; it then replaces the
                # old object, whose cached head is now stale.
                cold = subject.open(sid)
                results.add_cold.setdefault("convlog", {})[length] = await measure(
                    length, subject.meter, lambda s=cold: s.add_items(turn(1)), 0
                )
                subject.added(sid, 2)
                sessions[subject.key] = cold


async def largest_session(results: Results, subject: Subject, sid: str, start: int) -> None:
    """Grow ``sid`` turn by turn from ``start`` items until a write fails (or the cap)."""
    session = subject.open(sid)
    while start:
        try:
            await subject.grow(session, sid, start)
            break
        except Exception:  # the bulk start is already too big: start lower
            start //= 2
    held = subject.lengths.get(sid, 0)
    while held < SEARCH_CAP_ITEMS:
        try:
            await session.add_items(turn(held // 2))
        except Exception as exc:
            results.limits[subject.key] = Limit(held, held + 2, _short(exc))
            return
        held += 2
        subject.added(sid, 2)
    results.limits[subject.key] = Limit(held)


async def concurrency(results: Results, subject: Subject) -> None:
    """8 writers, each with its own session object, add 50 items each to one session."""
    sid = f"bench-concurrency-{subject.key}"
    writers = [subject.open(sid) for _ in range(WRITERS)]
    raised = 0

    async def write(number: int, session: Any) -> None:
        nonlocal raised
        for i in range(ITEMS_PER_WRITER):
            try:
                await session.add_items([message("user", number * 1000 + i)])
            except Exception:
                raised += 1

    meter = subject.meter
    start = time.perf_counter()
    if meter is not None:
        with meter.measure(capacity=False) as usage:
            await asyncio.gather(*(write(n, s) for n, s in enumerate(writers)))
        requests: int | None = usage.requests
    else:
        await asyncio.gather(*(write(n, s) for n, s in enumerate(writers)))
        requests = None
    seconds = time.perf_counter() - start
    stored = await subject.open(sid).get_items()
    distinct = {item["content"] for item in stored}
    results.concurrency[subject.key] = Concurrency(
        WRITERS * ITEMS_PER_WRITER, len(distinct), raised, requests, seconds
    )


def single_item_limit_on_aws(session_id: str = "bench-limit") -> int:
    """First history length whose single item exceeds 400 KB by DynamoDB's size rules.

    Computed (not measured) from the package's layout -- ``session_id``,
    ``conversation_data`` (``json.dumps`` of the items), ``updated_at`` -- because moto
    counts item sizes its own way and stops at 405,000 bytes.
    """
    length = 2
    while True:
        item = {
            "session_id": {"S": session_id},
            "conversation_data": {"S": json.dumps(history(0, length))},
            "updated_at": {"N": str(int(time.time()))},
        }
        if item_size(item) > ITEM_LIMIT_BYTES:
            return length
        length += 2


async def limits(results: Results, subjects: list[Subject]) -> None:
    """Largest session: the peer is grown until its single item overflows."""
    for subject in subjects:
        if isinstance(subject, PeerSubject):
            await largest_session(results, subject, "bench-limit", LIMIT_SEARCH_START)
        else:
            held = max(subject.lengths.values(), default=0)
            results.limits[subject.key] = Limit(held)
