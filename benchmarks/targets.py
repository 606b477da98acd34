"""Issue 14's figures: the projector at 5 ms per request, lagging reads, the targets table.

``delayed_projector`` projects 2,000 interleaved events over 1, 4 and 200 sessions with
the handler's client behind an ``HttpProxy`` delay rule (5 ms per request). The "before"
figures come from the same function run on the projector before the change (``python -m benchmarks
--projector-baseline benchmarks/baseline_projector.json`` on that commit); the file says
which commit and when.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from convlog.local import EmbeddedEndpoint

from .projector import run_delayed
from .report import DASH, n
from .scenarios import Figures, Results

DELAY_SECONDS = 0.005
DELAYED_EVENTS = 2_000
DELAYED_SESSIONS = (1, 4, 200)


async def delayed_projector(endpoint: EmbeddedEndpoint) -> list[dict[str, Any]]:
    """Events/s through the handler for 1, 4 and 200 interleaved sessions at 5 ms."""
    return [await run_delayed(endpoint, s, DELAYED_EVENTS // s, DELAY_SECONDS)
            for s in DELAYED_SESSIONS]


def write_baseline(path: Path) -> int:
    """Measure only ``delayed_projector`` and write it, with the commit, to ``path``."""
    async def measure() -> list[dict[str, Any]]:
        with EmbeddedEndpoint() as endpoint:
            return await delayed_projector(endpoint)

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, check=False).stdout.strip()
    runs = asyncio.run(measure())
    when = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC"
    data = {"commit": commit, "measured": when, "runs": runs}
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(runs, indent=1))
    return 0


def load_baseline(path: Path) -> dict[str, Any] | None:
    """The recorded "before" figures, if the file is there."""
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def _by_sessions(runs: list[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {r["sessions"]: r for r in runs if "sessions" in r}


def delayed_table(results: Results) -> str:
    """Before and after, side by side, for each interleaving."""
    after = _by_sessions(results.delayed)
    before = _by_sessions((results.baseline or {}).get("runs", []))
    lines = [
        "| sessions x events each | events/s before | events/s after | after / before "
        "| requests per batch before | requests per batch after | requests after |",
        "|---|---:|---:|---:|---:|---:|---|",
    ]
    for sessions in DELAYED_SESSIONS:
        a, b = after.get(sessions, {}), before.get(sessions, {})
        ratio = (f"{a['events_per_second'] / b['events_per_second']:.1f}x"
                 if a.get("events_per_second") and b.get("events_per_second") else DASH)
        ops = ", ".join(f"{k} {v:,}" for k, v in sorted(a.get("operations", {}).items()))
        lines.append(
            f"| {sessions} x {DELAYED_EVENTS // sessions:,} | {n(b.get('events_per_second'), 1)} "
            f"| {n(a.get('events_per_second'), 1)} | {ratio} "
            f"| {n(b.get('requests_per_batch'), 1)} | {n(a.get('requests_per_batch'), 1)} "
            f"| {ops} |"
        )
    return "\n".join(lines)


def lagging_table(results: Results) -> str:
    """Reads of a 1,000-item session whose snapshot lags by 100 and 1,000 events."""
    lines = [
        "| snapshot behind by (events) | call | median latency (ms) | requests per timed call "
        "| requests | round trips | events read older than the snapshot | RCU "
        "| bytes received | own CPU (ms) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for key, call in (("all", "`get_items()`"), ("20", "`get_items(limit=20)`")):
        for lag, f in sorted(results.lagging.get(key, {}).items()):
            lines.append(
                f"| {lag:,} | {call} | {_lat(f)} | {n(f.timed_requests, 2)} | {n(f.requests)} "
                f"| {n(f.round_trips)} | {n(f.below_snapshot)} | {n(f.rcu, 1)} "
                f"| {n(f.bytes_received)} | {n(f.cpu_ms, 2)} |"
            )
    return "\n".join(lines)


def _lat(f: Figures) -> str:
    return f"fails: {f.failed}" if f.failed else n(f.latency_ms, 2)


def _fig(table: dict[str, dict[int, Figures]], key: str, length: int) -> Figures | None:
    f = table.get(key, {}).get(length)
    return f if f is not None and not f.failed else None


def _verdict(ok: bool | None) -> str:
    return DASH if ok is None else ("met" if ok else "**not met**")


def targets_table(results: Results) -> str:
    """Each target of issue 14 beside what this run measured."""
    rows: list[tuple[str, str, str, bool | None]] = []
    for length in (1_000, 10_000):
        ours, peer = _fig(results.add, "convlog", length), _fig(results.add, "peer", length)
        if ours is None:
            continue
        if peer is not None and peer.latency_ms and ours.latency_ms:
            ratio = ours.latency_ms / peer.latency_ms
            measured = (f"{ours.latency_ms:.2f} vs {peer.latency_ms:.2f} ms = {ratio:.2f}x; "
                        f"{ours.timed_requests:g} request per timed call, {ours.wcu:g} WCU")
            ok: bool | None = ratio <= 0.5 and ours.requests == 1 and ours.wcu == 1
        else:
            failed = (results.add.get("peer", {}).get(length) or Figures(length)).failed
            measured = (f"{n(ours.latency_ms, 2)} ms, {n(ours.timed_requests, 2)} request per "
                        f"timed call, {n(ours.wcu, 1)} WCU; the single-item peer "
                        f"{'cannot hold it' if failed else 'was not measured'}")
            ok = ours.requests == 1 and ours.wcu == 1 if failed else None
        rows.append((f"`add_items` at {length:,} items vs the single-item peer",
                     "at most 0.5x the peer's time; 1 request, 1 WCU", measured, ok))
    get, peer_get = _fig(results.get_all, "convlog", 1_000), _fig(results.get_all, "peer", 1_000)
    if get is not None:
        peer_rcu = peer_get.rcu if peer_get else None
        rows.append((
            "`get_items()` at 1,000 items, fresh snapshot",
            "1 round trip; RCU at most the peer's; own CPU at most 1.5 ms",
            f"{n(get.round_trips)} round trip; {n(get.rcu, 1)} RCU vs {n(peer_rcu, 1)}; "
            f"own CPU {n(get.cpu_ms, 2)} ms",
            get.round_trips == 1 and peer_rcu is not None and get.rcu is not None
            and get.rcu <= peer_rcu and get.cpu_ms is not None and get.cpu_ms <= 1.5,
        ))
    big, small = _fig(results.get_20, "convlog", 10_000), _fig(results.get_20, "convlog", 100)
    if big is not None and small is not None:
        pairs = [(big.rcu, small.rcu), (big.bytes_received, small.bytes_received),
                 (big.cpu_ms, small.cpu_ms)]
        ratios = [a / b if a is not None and b else None for a, b in pairs]
        rows.append((
            "`get_items(limit=20)` at 10,000 vs 100 items (fresh snapshot)",
            "RCU, bytes read and own CPU within 1.5x",
            "; ".join(f"{name} {n(a, 2)} vs {n(b, 2)} = {r:.2f}x" if r is not None else name
                      for name, (a, b), r in zip(("RCU", "bytes", "CPU ms"), pairs, ratios,
                                                 strict=True)),
            all(r is not None and r <= 1.5 for r in ratios),
        ))
    lag = results.lagging.get("all", {}).get(1_000)
    if lag is not None and not lag.failed:
        rows.append((
            "`get_items()` with the snapshot 1,000 events behind",
            "at most 2 round trips; no event the snapshot covers is read",
            f"{n(lag.round_trips)} round trips ({n(lag.requests)} requests); "
            f"{n(lag.below_snapshot)} events older than the snapshot read",
            lag.round_trips is not None and lag.round_trips <= 2 and lag.below_snapshot == 0,
        ))
    after = _by_sessions(results.delayed).get(200, {})
    before = _by_sessions((results.baseline or {}).get("runs", [])).get(200, {})
    if after.get("events_per_second") and before.get("events_per_second"):
        ratio = after["events_per_second"] / before["events_per_second"]
        rows.append((
            "projector, 200 sessions x 10 events interleaved, 5 ms per request",
            "at least 10x today's events/s",
            f"{after['events_per_second']:.1f} vs {before['events_per_second']:.1f} events/s "
            f"= {ratio:.1f}x", ratio >= 10,
        ))
    first_last = (results.projector or {}).get("first_last")
    if first_last:
        ratio = first_last["first"] / first_last["last"]
        rows.append((
            f"projector, one {results.projector['events']:,}-event session"
            if results.projector else "projector, one session",
            "events/s of the last 1,000 within 1.5x of the first 1,000",
            f"{first_last['first']:.1f} vs {first_last['last']:.1f} events/s = {ratio:.2f}x",
            ratio <= 1.5,
        ))
    lines = ["| figure | target | measured in this run | verdict |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {_verdict(d)} |" for a, b, c, d in rows]
    return "\n".join(lines)


def baseline_note(results: Results) -> str:
    base = results.baseline
    if not base:
        return "No \"before\" figures: `benchmarks/baseline_projector.json` is missing."
    return (
        f"\"Before\" is the projector at commit `{base['commit']}` (one `Query` per "
        "session, then its two writes, sessions eight at a time), measured by the same "
        f"function on {base['measured']} (`python -m benchmarks --projector-baseline "
        "benchmarks/baseline_projector.json` on that commit), not in this run; \"after\" "
        "is this run. Both runs are bound by the CPU of moto and of the clients on this "
        "shared machine more than by the 5 ms."
    )
