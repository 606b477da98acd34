"""The operator's verbs over the stored log: ``sessions``, ``rebuild``, ``purge``, ``sweep``.

The logic lives in ``convlog.rebuild``, ``convlog.purge`` and
``eventstore.payloads``; this module parses, prints and exits.

Example:
    ```python
    from convlog.cli import main

    main(["sessions", "--user", "alice"])
    main(["purge", "--user", "alice", "--yes"])
    main(["sweep", "--bucket", "my-convlog-payloads", "--dry-run"])
    ```
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from eventstore.client import wrap_client
from eventstore.errors import InvalidInputError
from eventstore.history import MAIN_BRANCH
from eventstore.keys import validate_session_id
from eventstore.log import EventLog
from eventstore.payloads import PayloadStore, session_prefix
from eventstore.sessions_index import SessionPage, list_sessions

from .audit import iter_session_ids
from .cli import EXIT_ERROR, EXIT_FAILED, EXIT_OK, CliContext, load_projector, run_async
from .cli_anchor import purge_signer
from .cli_format import Progress, render_table, shorten
from .purge import plan_purge
from .purge_steps import carry_out_purge, remaining_plan
from .rebuild import rebuild_session
from .sweep import delete_orphans, sweep_orphans

if TYPE_CHECKING:
    from rich.console import Console

    from .anchor import Digest


def run_sessions(ctx: CliContext) -> int:
    """``convlog sessions --user USER_ID [--limit N] [--cursor C]``, newest first."""
    if ctx.args.limit < 1:
        raise InvalidInputError("--limit must be at least 1")
    page = _list_sessions(ctx.client(), ctx.table, ctx.args.user, ctx.args.limit, ctx.args.cursor)
    if ctx.args.format == "json":
        ctx.print(json.dumps(_page_json(page), ensure_ascii=False, indent=2, default=str))
        return EXIT_OK
    ctx.print(render_page(page, ctx.args.user, ctx.console))
    if page.cursor:
        ctx.print(f"next page: convlog sessions --user {ctx.args.user} --cursor {page.cursor}")
    return EXIT_OK


def _list_sessions(
    client: Any, table: str, user: str, limit: int, cursor: str | None
) -> SessionPage:
    return run_async(list_sessions(client, table, user, limit=limit, cursor=cursor))


def render_page(page: SessionPage, user: str, console: Console | None = None) -> str:
    """A page of ``list_sessions`` as a table, newest first."""
    rows = [
        [s.session_id, s.branch_id or MAIN_BRANCH, str(s.last_active), str(s.item_count),
         shorten(str(s.title or ""), 40)]
        for s in page.sessions
    ]
    if not rows:
        return f"no sessions for user {user!r}"
    return render_table(["SESSION", "BRANCH", "LAST ACTIVE", "ITEMS", "TITLE"], rows, console)


def render_sessions(
    client: Any, table: str, user: str, limit: int = 20, console: Console | None = None
) -> str:
    """The first page of a user's sessions as a table."""
    return render_page(_list_sessions(client, table, user, limit, None), user, console)


def _page_json(page: SessionPage) -> dict[str, Any]:
    return {"sessions": [asdict(s) for s in page.sessions], "next_cursor": page.cursor,
            "user_usage": asdict(page.user_usage) if page.user_usage else None}


LIST_KEYS = 50
"""Purge lists at most this many deleted keys (the counts cover all of them)."""
PROGRESS_ABOVE = 20
"""Draw a progress bar when more sessions than this are rebuilt."""


def run_rebuild(ctx: CliContext) -> int:
    """``convlog rebuild (SESSION_ID | --all)``: replay the log through the projector."""
    client = ctx.client()
    handler = load_projector(ctx.args.projector, client, ctx.table)
    log = EventLog(client, ctx.table)

    async def go() -> int:
        if ctx.args.all:
            ids = sorted([s async for s in iter_session_ids(log)])
        else:
            ids = [validate_session_id(ctx.args.session_id)]
        bar = (Progress(len(ids), "sessions", ctx.err, description="rebuild")
               if len(ids) > PROGRESS_ABOVE else None)
        events = 0
        for session_id in ids:
            events += await rebuild_session(log, session_id, handler, reset=ctx.args.reset)
            if bar:
                bar.advance()
        if bar:
            bar.close()
        if not ctx.args.all and events == 0 and (await log.read_head(ids[0])).seq == 0:
            ctx.warn(f"convlog rebuild: session {ids[0]!r} has no events in {ctx.table!r}")
            return EXIT_FAILED
        ctx.print(f"rebuilt the views of {len(ids)} sessions from {events} events "
                  f"in {ctx.table}")
        return EXIT_OK if ids else EXIT_FAILED

    return run_async(go())


def run_purge(ctx: CliContext) -> int:
    """``convlog purge (--session ID | --user USER) [--shared MODE] [--scan] [--yes]``."""
    db = wrap_client(ctx.client())
    args = ctx.args
    scanned: Progress | None = None
    if args.scan:
        if args.session:
            raise InvalidInputError("--scan finds a user's sessions; use it with --user")
        described = run_async(db.call("describe_table", TableName=ctx.table))
        scanned = Progress(int(described["Table"].get("ItemCount", 0)) or 1,
                           "items scanned", ctx.err, description="scan")
    plan = run_async(plan_purge(
        db, ctx.table, session_id=args.session, user_id=args.user, scan=args.scan,
        segments=args.segments, on_scanned=scanned.advance if scanned else None,
    ))
    if scanned:
        scanned.close()
    target = f"session {args.session!r}" if args.session else f"user {args.user!r}"
    if plan.empty:
        ctx.print(f"nothing to purge for {target} in {ctx.table}")
        return EXIT_FAILED
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(plan.counts().items()))
    total = len(plan.keys) + len(plan.cache_refs)
    ctx.print(f"{target}: {len(plan.sessions)} sessions, {total} items ({summary})")
    shared = plan.shared()
    for session_id in plan.sessions:
        others = shared.get(session_id)
        note = ""
        if others:
            note = "  shared with " + ", ".join(
                f"{user}: {n} events" for user, n in sorted(others.items()))
        ctx.print(f"  {session_id}{note}")
    if shared and args.shared is None:
        if args.yes:
            ctx.warn(
                f"convlog purge: error: {len(shared)} of these sessions hold other users' "
                "events; choose --shared session (delete them whole) or --shared content "
                f"(erase only the content of {args.user!r})"
            )
            return EXIT_ERROR
        ctx.print("purging deletes these shared sessions whole, other users' events included "
                  "(--shared content erases only this user's content)")
    if not args.yes:
        ctx.out.write(f"delete these {total} items from {ctx.table}? [y/N] ")
        ctx.out.flush()
        answer = sys.stdin.readline().strip().lower()
        if not sys.stdin.isatty():
            ctx.print(answer)
        if answer not in ("y", "yes"):
            ctx.print("nothing deleted")
            return EXIT_FAILED
    payloads = ctx.payloads()
    content_of = args.user if shared and args.shared == "content" else None
    rest = remaining_plan(plan, content_of)
    total = len(rest.keys) + len(rest.cache_refs)
    bar = (Progress(total, "items", ctx.err, description="purge")
           if total > 250 else None)
    objects = (run_async(_count_objects(payloads, rest.sessions))
               if payloads is not None and not rest.empty else 0)
    outcome = run_async(carry_out_purge(
        db, ctx.table, plan, erase_content_of=content_of,
        signer=purge_signer(ctx),  # with digests: sign what is erased, before erasing it
        payloads=payloads, on_signed=lambda digest, user: _print_signed(ctx, digest, user),
        on_batch=bar.advance if bar else None,
    ))
    if bar:
        bar.close()
    erased = outcome.erased
    if erased:
        ctx.print(f"erased the content of {args.user!r} in {len(erased)} sessions "
                  f"({sum(e.events for e in erased)} events, "
                  f"{sum(e.cache_entries for e in erased)} tool-cache entries); other "
                  "users' events and the hash chain are intact")
    if rest.empty:
        return EXIT_OK
    plan, deleted = rest, outcome.deleted
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(plan.counts().items()))
    ctx.print(f"deleted {deleted} items of {len(plan.sessions)} sessions ({summary}); "
              "tombstones at META and SNAPSHOT keep the projector from re-creating them "
              "for 25 h")
    if payloads is not None:
        ctx.print(f"deleted {objects} payload objects from bucket {payloads.bucket}")
    else:
        ctx.print("no payload bucket given (--bucket or CONVLOG_BUCKET): objects of large "
                  "events in S3, if any, are left to `convlog sweep`")
    for pk, sk in plan.keys[:LIST_KEYS]:
        ctx.print(f"  deleted {pk} {sk}")
    if len(plan.keys) > LIST_KEYS:
        ctx.print(f"  ... and {len(plan.keys) - LIST_KEYS} more")
    return EXIT_OK


def _print_signed(ctx: CliContext, digest: Digest, user: str | None) -> None:
    ctx.print(f"signed purge record: digest {digest.number} ({len(digest.purges)} "
              f"session(s), {'content of one user' if user else 'whole sessions'})")


async def _count_objects(payloads: PayloadStore, sessions: list[str]) -> int:
    return sum([len([k async for k, _ in payloads.keys(session_prefix(sid))])
                for sid in sessions])


def run_sweep(ctx: CliContext) -> int:
    """``convlog sweep --bucket B [--min-age SECONDS] [--dry-run]``: delete orphans."""
    payloads = ctx.payloads()
    if payloads is None:
        raise InvalidInputError("sweep needs the payload bucket: pass --bucket or set "
                                "CONVLOG_BUCKET")
    if ctx.args.min_age < 0:
        raise InvalidInputError("--min-age must be 0 or more seconds")
    db = wrap_client(ctx.client())
    described = run_async(db.call("describe_table", TableName=ctx.table))
    scanned = Progress(int(described["Table"].get("ItemCount", 0)) or 1, "items scanned",
                       ctx.err, description="scan")
    report = run_async(sweep_orphans(
        db, ctx.table, payloads, min_age_seconds=ctx.args.min_age, dry_run=True,
        on_scanned=scanned.advance,
    ))
    scanned.close()
    age = ctx.args.min_age
    ctx.print(f"bucket {payloads.bucket}: {report.objects} objects, {report.referenced} "
              f"referenced by live items of {ctx.table}, {len(report.orphans)} orphans older "
              f"than {age} s ({report.young} younger kept: a commit may be in flight)")
    if not report.orphans:
        return EXIT_OK
    verb = "would delete" if ctx.args.dry_run else "deleting"
    ctx.print(f"{verb} {len(report.orphans)} orphans:")
    for key in report.orphans[:LIST_KEYS]:
        ctx.print(f"  {key}")
    if len(report.orphans) > LIST_KEYS:
        ctx.print(f"  ... and {len(report.orphans) - LIST_KEYS} more")
    if ctx.args.dry_run:
        return EXIT_OK
    bar = Progress(len(report.orphans), "objects", ctx.err, description="sweep")
    deleted = run_async(delete_orphans(payloads, report.orphans, min_age_seconds=age,
                                       on_deleted=bar.advance))
    bar.close()
    kept = len(report.orphans) - deleted
    ctx.print(f"deleted {deleted} orphans from {payloads.bucket}"
              + (f" ({kept} written again since the listing, kept)" if kept else ""))
    return EXIT_OK

