"""``convlog rebuild`` and ``convlog purge``: the operator's verbs.

Example:
    ```python
    from eventstore.cli import main

    main(["rebuild", "--all"])
    main(["purge", "--user", "alice", "--yes"])
    ```
"""

from __future__ import annotations

import sys

from .audit import iter_session_ids
from .cli import EXIT_FAILED, EXIT_OK, CliContext, load_projector, run_async
from .cli_format import Progress
from .client import wrap_client
from .keys import validate_session_id
from .log import EventLog
from .purge import execute_purge, plan_purge
from .rebuild import rebuild_session

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
        bar = Progress(len(ids), "sessions", ctx.err) if len(ids) > PROGRESS_ABOVE else None
        events = 0
        for session_id in ids:
            events += await rebuild_session(log, session_id, handler, reset=ctx.args.reset)
            if bar:
                bar.advance()
        if bar:
            bar.close()
        ctx.print(f"rebuilt the views of {len(ids)} sessions from {events} events "
                  f"in {ctx.table}")
        return EXIT_OK if ids else EXIT_FAILED

    return run_async(go())


def run_purge(ctx: CliContext) -> int:
    """``convlog purge (--session ID | --user USER) [--yes]``."""
    db = wrap_client(ctx.client())
    plan = run_async(plan_purge(db, ctx.table, session_id=ctx.args.session, user_id=ctx.args.user))
    target = f"session {ctx.args.session!r}" if ctx.args.session else f"user {ctx.args.user!r}"
    if not plan.keys:
        ctx.print(f"nothing to purge for {target} in {ctx.table}")
        return EXIT_FAILED
    counts = plan.counts()
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(counts.items()))
    ctx.print(f"{target}: {len(plan.sessions)} sessions, {len(plan.keys)} items ({summary})")
    for session_id in plan.sessions:
        ctx.print(f"  {session_id}")
    if not ctx.args.yes:
        ctx.out.write(f"delete these {len(plan.keys)} items from {ctx.table}? [y/N] ")
        ctx.out.flush()
        answer = sys.stdin.readline().strip().lower()
        if not sys.stdin.isatty():
            ctx.print(answer)
        if answer not in ("y", "yes"):
            ctx.print("nothing deleted")
            return EXIT_FAILED
    bar = Progress(len(plan.keys), "items", ctx.err) if len(plan.keys) > 250 else None
    deleted = run_async(
        execute_purge(db, ctx.table, plan, on_batch=bar.advance if bar else None)
    )
    if bar:
        bar.close()
    ctx.print(f"deleted {deleted} items of {len(plan.sessions)} sessions ({summary})")
    for pk, sk in plan.keys[:LIST_KEYS]:
        ctx.print(f"  deleted {pk} {sk}")
    if len(plan.keys) > LIST_KEYS:
        ctx.print(f"  ... and {len(plan.keys) - LIST_KEYS} more")
    return EXIT_OK
