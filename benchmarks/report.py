"""Markdown tables and the cost chart, from one run's ``Results``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .scenarios import Figures, Results

PEER = "peer"
DASH = "\N{EN DASH}"
VARIANTS_READ = ("convlog", "convlog-noproj", "peer", "sqlite")


def n(value: float | None, digits: int = 0) -> str:
    """A number with thousands separators, or a dash."""
    if value is None:
        return DASH
    if digits == 0 and float(value).is_integer():
        return f"{int(value):,}"
    return f"{value:,.{digits or 1}f}"


def ratio(ours: float | None, theirs: float | None) -> str:
    """``ours / theirs``, with a reading aid when they differ by 2x or more."""
    if ours is None or theirs is None or theirs == 0:
        return DASH
    value = ours / theirs
    if 0 < value <= 0.5:
        return f"{value:.3g} ({theirs / ours:,.0f}x fewer)"
    if value >= 2:
        return f"{value:.3g} ({value:,.0f}x more)"
    return f"{value:.3g}"


def _cell(fig: Figures | None, attr: str, digits: int = 0) -> str:
    if fig is None:
        return DASH
    if fig.failed:
        return "fails"
    return n(getattr(fig, attr), digits)


def _get(table: dict[str, dict[int, Figures]], key: str, length: int) -> Figures | None:
    return table.get(key, {}).get(length)


def _ok(fig: Figures | None) -> Figures | None:
    return fig if fig is not None and not fig.failed else None


def _attr(fig: Figures | None, name: str) -> float | None:
    fig = _ok(fig)
    return None if fig is None else getattr(fig, name)


def headline(results: Results, at: int) -> str:
    """The summary table (also copied into the README)."""
    peer_add = _get(results.add, PEER, at)
    add = _get(results.add, "convlog", at)
    get = _get(results.get_all, "convlog", at)
    peer_get = _get(results.get_all, PEER, at)
    top = max(results.lengths)
    big = _get(results.get_all, "convlog", top)
    peer_big = _get(results.get_all, PEER, top)
    top_row = [] if top == at else [
        (f"`get_items()` at {top:,} items (fresh snapshot): requests", _cell(big, "requests"),
         _cell(peer_big, "requests"), ratio(_attr(big, "requests"), _attr(peer_big, "requests")),
         DASH),
    ]
    rows: list[tuple[str, str, str, str, str]] = [
        (f"`add_items` (1 turn) at {at:,} items: requests", _cell(add, "requests"),
         _cell(peer_add, "requests"), ratio(_attr(add, "requests"), _attr(peer_add, "requests")),
         DASH),
        (f"`add_items` at {at:,} items: WCU", _cell(add, "wcu", 1),
         _cell(peer_add, "wcu", 1), ratio(_attr(add, "wcu"), _attr(peer_add, "wcu")), DASH),
        (f"`add_items` at {at:,} items: bytes sent", _cell(add, "bytes_sent"),
         _cell(peer_add, "bytes_sent"),
         ratio(_attr(add, "bytes_sent"), _attr(peer_add, "bytes_sent")), DASH),
        (f"`add_items` at {at:,} items: median latency (ms)", _cell(add, "latency_ms", 2),
         _cell(peer_add, "latency_ms", 2),
         ratio(_attr(add, "latency_ms"), _attr(peer_add, "latency_ms")),
         _cell(_get(results.add, "sqlite", at), "latency_ms", 2)),
        (f"`get_items()` at {at:,} items (fresh snapshot): requests", _cell(get, "requests"),
         _cell(peer_get, "requests"),
         ratio(_attr(get, "requests"), _attr(peer_get, "requests")), DASH),
        (f"`get_items()` at {at:,} items: RCU", _cell(get, "rcu", 1),
         _cell(peer_get, "rcu", 1), ratio(_attr(get, "rcu"), _attr(peer_get, "rcu")), DASH),
        *top_row,
    ]
    limits = results.limits
    rows.append((
        "largest session held (items)", _limit(limits.get("convlog")),
        _limit(limits.get(PEER)), DASH, _limit(limits.get("sqlite")),
    ))
    conc = results.concurrency
    rows.append((
        "8 writers x 50 items on one session: items lost",
        _lost(conc.get("convlog")), _lost(conc.get(PEER)), DASH, _lost(conc.get("sqlite")),
    ))
    proj = results.projector or {}
    if "events_per_second" in proj:
        rows.append((
            f"projector: events/s through the handler ({proj['events']:,}-event stream)",
            n(proj["events_per_second"], 1), "no projector", DASH, DASH,
        ))
        rows.append(("projector: view writes per event", n(proj["view_writes_per_event"], 3),
                     DASH, DASH, DASH))
    head = ("| measured on the embedded endpoint | convlog | single-item "
            "| convlog / single-item | SQLiteSession |")
    lines = [head, "|---|---:|---:|---:|---:|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _limit(limit: Any) -> str:
    if limit is None:
        return DASH
    if limit.failed_at is None:
        return f"\N{GREATER-THAN OR EQUAL TO} {limit.held:,} (no write failed)"
    return f"{limit.held:,} (write failed at {limit.failed_at:,})"


def _lost(conc: Any) -> str:
    if conc is None:
        return DASH
    return f"{conc.lost} of {conc.expected}"


def add_table(results: Results) -> str:
    """``add_items`` of one turn at each history length."""
    lines = [
        "| history (items) | implementation | median latency (ms) | requests per timed call "
        "| requests | bytes sent | bytes received | WCU | RCU | WCU convlog/peer "
        "| bytes sent convlog/peer |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for length in results.lengths:
        peer = _get(results.add, PEER, length)
        for key in ("convlog", PEER, "sqlite"):
            fig = _get(results.add, key, length)
            if fig is None:
                continue
            ratios = ("", "")
            if key == "convlog":
                ratios = (ratio(_attr(fig, "wcu"), _attr(peer, "wcu")),
                          ratio(_attr(fig, "bytes_sent"), _attr(peer, "bytes_sent")))
            lines.append(
                f"| {length:,} | {results.labels[key]} | {_lat(fig)} | {_per_call(fig)} "
                f"| {_cell(fig, 'requests')} | {_cell(fig, 'bytes_sent')} "
                f"| {_cell(fig, 'bytes_received')} "
                f"| {_cell(fig, 'wcu', 1)} | {_cell(fig, 'rcu', 1)} | {ratios[0]} | {ratios[1]} |"
            )
    return "\n".join(lines)


def _per_call(fig: Figures) -> str:
    if fig.failed:
        return "fails"
    return n(fig.timed_requests, 2)


def _lat(fig: Figures) -> str:
    if fig.failed:
        return f"fails: {fig.failed}"
    mark = " (1 call)" if fig.timed_calls == 1 else ""
    return n(fig.latency_ms, 2) + mark


def read_table(results: Results, table: dict[str, dict[int, Figures]]) -> str:
    """``get_items`` figures at each history length."""
    lines = [
        "| history (items) | implementation | median latency (ms) | requests per timed call "
        "| requests | bytes received | RCU | own CPU (ms) | RCU convlog/peer "
        "| bytes received convlog/peer |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for length in results.lengths:
        peer = _get(table, PEER, length)
        for key in VARIANTS_READ:
            fig = _get(table, key, length)
            if fig is None:
                continue
            ratios = ("", "")
            if key.startswith("convlog"):
                ratios = (ratio(_attr(fig, "rcu"), _attr(peer, "rcu")),
                          ratio(_attr(fig, "bytes_received"), _attr(peer, "bytes_received")))
            label = "convlog (fresh snapshot)" if key == "convlog" else results.labels[key]
            lines.append(
                f"| {length:,} | {label} | {_lat(fig)} | {_per_call(fig)} "
                f"| {_cell(fig, 'requests')} | {_cell(fig, 'bytes_received')} "
                f"| {_cell(fig, 'rcu', 1)} | {_cell(fig, 'cpu_ms', 2)} "
                f"| {ratios[0]} | {ratios[1]} |"
            )
    return "\n".join(lines)


def limits_table(results: Results) -> str:
    """The largest session each implementation held."""
    lines = ["| implementation | largest session held (items) | first write that failed | error |",
             "|---|---:|---:|---|"]
    for key, limit in results.limits.items():
        failed = n(limit.failed_at) + " items" if limit.failed_at else "none"
        lines.append(f"| {results.labels[key]} | {limit.held:,} | {failed} | {limit.error or ''} |")
    return "\n".join(lines)


def concurrency_table(results: Results) -> str:
    """8 writers x 50 items on one session id."""
    lines = ["| implementation | items written | items stored | lost silently "
             "| writes that raised | requests | seconds |", "|---|---:|---:|---:|---:|---:|---:|"]
    for key, c in results.concurrency.items():
        lines.append(f"| {results.labels[key]} | {c.expected} | {c.stored} | {c.lost} "
                     f"| {c.raised} | {n(c.requests)} | {c.seconds:.2f} |")
    return "\n".join(lines)


def projector_table(results: Results) -> str:
    """The projector run."""
    p = results.projector or {}
    if "error" in p or not p:
        return f"Not measured: {p.get('error', 'projector not run')}."
    ops = ", ".join(f"{k} {v:,}" for k, v in sorted(p["operations"].items()))
    return "\n".join([
        "| events | sessions | batches | events/s through the handler | events/s end to end "
        "(pump + handler) | requests per event | view writes per event | handler requests |",
        "|---:|---:|---:|---:|---:|---:|---:|---|",
        f"| {p['delivered']:,} | {p['sessions']} | {p['batches']} | {n(p['events_per_second'], 1)} "
        f"| {n(p['drain_events_per_second'], 1)} | {n(p['requests_per_event'], 3)} "
        f"| {n(p['view_writes_per_event'], 3)} | {ops} |",
    ])


def chart(results: Results, path: Path) -> None:
    """Draw WCU per ``add_items`` and RCU per ``get_items()`` against history length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    series = [(left, results.add, "wcu", ("convlog", PEER), "WCU per add_items (1 turn)"),
              (right, results.get_all, "rcu", ("convlog", "convlog-noproj", PEER),
               "RCU per get_items()")]
    for axis, table, attr, keys, title in series:
        for key in keys:
            points = [(length, getattr(f, attr)) for length, f in sorted(table.get(key, {}).items())
                      if not f.failed and getattr(f, attr) is not None]
            if points:
                xs, ys = zip(*points, strict=True)
                label = results.labels[key]
                if key == "convlog" and table is results.get_all:
                    label = "convlog (fresh snapshot)"
                axis.plot(xs, ys, marker="o", label=label)
        limit = results.limits.get(PEER)
        if limit is not None and limit.failed_at:
            axis.axvline(limit.failed_at, color="grey", linestyle="--", linewidth=1)
            axis.annotate(f"single item full\nat {limit.held:,} items", (limit.failed_at, 1),
                          textcoords="offset points", xytext=(4, 8), fontsize=8, color="grey")
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xlabel("history length (items)")
        axis.set_title(title)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8, loc="upper left")
    fig.suptitle("Capacity units per call, measured on the embedded endpoint", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def cold_note(results: Results) -> str:
    cold = results.add_cold.get("convlog", {})
    if not cold:
        return ""
    counts = sorted({f.requests for f in cold.values() if f.requests is not None})
    rcus = sorted({f.rcu for f in cold.values() if f.rcu is not None})
    return (
        "The convlog rows are a session object in use (it knows its head). The first "
        "`add_items` of a new session object reads the head first (one `Query` with "
        f"`Limit=1`): {' or '.join(str(c) for c in counts)} requests, "
        f"{' or '.join(n(r, 1) for r in rcus)} RCU and the same WCU, "
        "at every length above."
    )


def projector_note(results: Results) -> str:
    p = results.projector or {}
    if "events" not in p:
        return ""
    return (
        f"{p['events']:,} `items_added` events (one turn each), interleaved over "
        f"{p['sessions']} sessions, written with `BatchWriteItem` as the exact items "
        "`add_items` writes (same encoder and hash chain) so that building the stream "
        f"does not dominate the run ({p['build_seconds']:.1f} s). The stream pump delivered "
        f"them in {p['batches']} batches to `stream_handlers.projector`; "
        "\"events/s through the handler\" counts time inside the handler only, \"end to end\" "
        "adds the pump's `GetRecords` polling, which moto serves slowly; both are bound by "
        "moto, which sorts the whole table on every `Query`. View writes are the handler "
        "client's write requests: per batch, the views of all its sessions are read with "
        "`BatchGetItem` (a snapshot split into parts with one `Query`), then each session "
        "costs the conditional writes of its snapshot and meta item, so view writes per "
        "event fall as more of a session's events share a batch "
        "(`--projector-sessions` changes the interleaving). With one session, every batch "
        "appends to the snapshot's tail and seals full chunks (it never rewrites them), "
        "so a batch's work does not grow with the session: "
        + first_last_note(p)
    )


def first_last_note(p: dict[str, Any]) -> str:
    first_last = p.get("first_last")
    if not first_last:
        return "the stream was too short to compare its first and last 1,000 events."
    return (
        f"the first 1,000 events went through at {first_last['first']:.1f} events/s, the "
        f"last 1,000 at {first_last['last']:.1f}."
    )
