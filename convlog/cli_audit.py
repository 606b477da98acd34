"""The auditor's verbs: ``replay``, ``verify`` and ``import``.

The logic lives in ``convlog.audit`` (and ``convlog.deep`` for ``verify --deep``);
this module parses, prints and exits.

Example:
    ```python
    from convlog.cli import main

    main(["replay", "user-123", "--at-seq", "4"])
    main(["verify", "--all"])
    main(["import", "user-123.jsonl", "--table", "agent_sessions_restored"])
    ```
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from eventstore.errors import ConditionFailedError, CorruptEventError, InvalidInputError
from eventstore.events import event_body
from eventstore.keys import validate_session_id

from .audit import (
    ReplayResult,
    VerifyReport,
    export_line,
    import_line,
    iter_replay,
    iter_session_ids,
    replay,
    verify_session,
)
from .cli import EXIT_ERROR, EXIT_FAILED, EXIT_OK, CliContext, run_async
from .cli_anchor import digest_store
from .cli_format import render_items, render_table, summarize_event
from .deep import check_views
from .purge_record import describe_erased, describe_erased_content

if TYPE_CHECKING:
    from rich.console import Console


def run_replay(ctx: CliContext) -> int:
    """``convlog replay SESSION_ID [--at-seq N | --as-of TIME] [--format ...]``."""
    session_id = validate_session_id(ctx.args.session_id)
    log = ctx.event_log()
    at_seq = ctx.args.at_seq
    if at_seq is not None:
        head = run_async(log.read_head(session_id)).seq
        if head and at_seq > head:
            raise InvalidInputError(
                f"--at-seq {at_seq} is beyond the newest event of {session_id!r} (seq {head})"
            )
    fmt = ctx.args.format
    if fmt == "jsonl":  # one event at a time: constant memory, whatever the length
        async def stream() -> int:
            count = 0
            async for stored in iter_replay(log, session_id, at_seq, ctx.args.as_of):
                ctx.print(json.dumps(export_line(stored), ensure_ascii=False))
                count += 1
            return count

        if run_async(stream()) == 0 and run_async(log.read_head(session_id)).seq == 0:
            ctx.warn(f"convlog replay: session {session_id!r} has no events in {ctx.table!r}")
            return EXIT_FAILED
        return EXIT_OK
    result = run_async(replay(log, session_id, at_seq=at_seq, as_of=ctx.args.as_of))
    if not result.events and run_async(log.read_head(session_id)).seq == 0:
        ctx.warn(f"convlog replay: session {session_id!r} has no events in {ctx.table!r}")
        return EXIT_FAILED
    if fmt == "json":
        ctx.print(json.dumps(replay_json(result), ensure_ascii=False, indent=2))
    else:
        ctx.print(render_replay(result, ctx.args.at_seq, ctx.args.as_of, ctx.console))
    return EXIT_OK


def replay_json(result: ReplayResult) -> dict[str, Any]:
    """The ``--format json`` document of a replay."""
    return {
        "session_id": result.session_id,
        "at_seq": result.at_seq,
        "events": [
            {**event_body(s.event), "summary": summarize_event(s.event),
             "prev_hash": s.prev_hash, "hash": s.hash, "ttl": s.ttl}
            for s in result.events
        ],
        "items": result.items,
    }


def render_replay(
    result: ReplayResult, at_seq: int | None, as_of: str | None, console: Console | None = None
) -> str:
    """The ``--format table`` text of a replay: events, then the items at that point."""
    if as_of:
        point = f"state as of {as_of} (after seq {result.at_seq})"
    elif at_seq is not None:
        point = f"state after seq {result.at_seq}"
    else:
        point = f"state now (after seq {result.at_seq})"
    rows = [
        [str(s.event.seq), s.event.ts, s.event.type, s.event.user_id or "-",
         summarize_event(s.event)]
        for s in result.events
    ]
    lines = [
        f"session {result.session_id}: {len(result.events)} events, {point}",
        "",
        render_table(["SEQ", "TIME", "TYPE", "USER", "SUMMARY"], rows, console)
        if rows else "(no events)",
        "",
        f"items after seq {result.at_seq} ({len(result.items)}):",
        render_items(result.items),
    ]
    return "\n".join(lines)


def describe_report(report: VerifyReport) -> str:
    """One line per session: ``OK`` with the range checked, or ``BROKEN`` and why."""
    if report.problem is not None:
        return f"BROKEN  {report.session_id}: {report.problem.message}"
    if report.events == 0 and report.erased_by is not None:
        return (f"ERASED  {report.session_id}: {describe_erased(report.erased_by)}, "
                "not tampering")
    if report.events == 0 and report.expired_prefix is None:
        return f"EMPTY   {report.session_id}: no events"
    text = (
        f"OK      {report.session_id}: {report.events} events, seq "
        f"{report.first_seq}..{report.last_seq}, hash chain intact"
    )
    if report.expired_prefix:
        low, high = report.expired_prefix
        text += f"; seq {low}..{high} expired (TTL), not tampering"
    if report.anchored:
        text += f"; anchored at seq {report.anchored[0]} (digest {report.anchored[1]})"
    if report.erased_by is not None:
        text += f"; {describe_erased(report.erased_by)}"
    if report.erased_content:
        text += f"; {describe_erased_content(report.erased_content)}"
    return text


def run_verify(ctx: CliContext) -> int:
    """``convlog verify (SESSION_ID | --all) [--deep]``; exit 1 if anything is broken.

    ``--deep`` also folds the log and compares it with the ``SNAPSHOT`` and ``META``
    views (``convlog.deep``), naming any view that disagrees.

    With a digest bucket and signing key configured, the signed digests are read and
    checked first, and every session is checked against the heads they anchored
    (``--all`` then also covers anchored sessions whose events are all gone).
    """
    log = ctx.event_log()
    store = digest_store(ctx)
    anchors = store.load() if store is not None else None
    if anchors is not None and anchors.problem:
        ctx.print(f"BROKEN  digests: {anchors.problem}")
        return EXIT_FAILED
    anchored = anchors.heads if anchors is not None else {}
    purges = anchors.purges if anchors is not None else None  # signed purge records

    async def go() -> int:
        if ctx.args.all:
            ids = [s async for s in iter_session_ids(log)]
            ids += sorted(set(anchored).union(purges or ()).difference(ids))
        else:
            ids = [validate_session_id(ctx.args.session_id)]
        broken = 0
        report = None
        for session_id in ids:
            report = await verify_session(
                log, session_id, anchored=anchored.get(session_id, ()),
                purges=None if purges is None else purges.get(session_id, ()))
            line = describe_report(report)
            if ctx.args.deep and report.ok and report.events:
                problems = await check_views(log, session_id)
                if problems:
                    line = f"BROKEN  {session_id}: " + "; ".join(p.message for p in problems)
                    broken += 1
                else:
                    line += "; views agree with the log"
            ctx.print(line)
            broken += 0 if report.ok else 1
        if ctx.args.all:
            ctx.print(f"{len(ids)} sessions checked, {broken} broken")
        elif report is not None and report.events == 0 and report.expired_prefix is None \
                and report.ok and report.erased_by is None:
            return EXIT_FAILED
        return EXIT_FAILED if broken else EXIT_OK

    return run_async(go())


def run_import(ctx: CliContext) -> int:
    """``convlog import FILE``: write a jsonl export back, verbatim and conditionally.

    Every line is checked (schema, hash, chain link) before anything is written; an
    event already present with the same token is skipped, another one is a conflict.
    """
    lines = read_export(ctx.args.file)
    try:
        events = [import_line(line) for line in lines]
    except (TypeError, ValueError) as exc:
        raise CorruptEventError(f"{ctx.args.file}: {exc}") from exc
    previous: dict[str, str] = {}
    for stored in events:
        sid = stored.event.session_id
        if sid in previous and stored.prev_hash != previous[sid]:
            raise InvalidInputError(
                f"{ctx.args.file}: seq {stored.event.seq} of {sid!r} does not link to the "
                "line before it; nothing written"
            )
        previous[sid] = stored.hash
    log = ctx.event_log()

    async def go() -> int:
        written = 0
        for stored in events:
            try:
                await log.put(stored.event, stored.prev_hash, ttl=stored.ttl)
                written += 1
            except ConditionFailedError:
                ctx.warn(f"seq {stored.event.seq} of {stored.event.session_id!r} already "
                         "holds another event; stopped")
                return EXIT_ERROR
        ctx.print(f"imported {written} events into {ctx.table} (identical ones kept)")
        return EXIT_OK

    return run_async(go())


def read_export(path: str) -> list[Any]:
    """The JSON values of a jsonl file (``-``: stdin), one per non-blank line.

    Raises:
        InvalidInputError: The file cannot be read, is not UTF-8, or a line is not JSON.
    """
    name = "stdin" if path == "-" else path
    number = 0
    values: list[Any] = []
    try:
        handle = sys.stdin if path == "-" else open(path, encoding="utf-8")  # noqa: SIM115
        with handle:
            for number, line in enumerate(handle, start=1):  # noqa: B007
                if line.strip():
                    values.append(json.loads(line))
    except json.JSONDecodeError as exc:
        raise InvalidInputError(f"{name}: line {number} is not JSON ({exc.msg})") from exc
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"{name}: line {number + 1} is not UTF-8 text (byte {exc.object[exc.start]:#04x})"
        ) from exc
    except OSError as exc:
        raise InvalidInputError(f"cannot read {name}: {exc.strerror or exc}") from exc
    return values
