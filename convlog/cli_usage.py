"""``convlog usage --user U [--since TIME]``: a user's token usage, per session and total.

Without ``--since`` nothing but views is read: the per-session rows come from the
session index (the projector sums every ``usage_recorded`` event into each session's meta
item; one ``Query`` per page of 1000 sessions) and the TOTAL line from the user's totals
the projector keeps (``eventstore.user_usage``; one ``Query``), which also count sessions
no longer listed (expired views). With ``--since`` only usage recorded at or after that
time counts, and no view keeps usage by time: the sessions active since then (the index
is newest-active first, so the listing stops at the first older one) have their events
read and summed, and the TOTAL is the sum of those rows.

Example:
    ```python
    from convlog.cli import main

    main(["usage", "--user", "alice", "--since", "2026-01-01T00:00:00Z"])
    ```
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventstore.events import USAGE_FIELDS
from eventstore.history import MAIN_BRANCH, branch_session_id
from eventstore.log import EventLog
from eventstore.sessions_index import MAX_LIMIT, list_sessions

from .audit import parse_time
from .cli import EXIT_OK, CliContext, run_async
from .cli_format import render_table

Totals = tuple[int, int, int, int]


@dataclass(frozen=True)
class SessionUsage:
    """Usage of one session (or one of its branches): requests, input, output, total."""

    session_id: str
    totals: Totals
    branch_id: str | None = None


async def user_usage(
    client: Any, table: str, user_id: str, since: datetime | None = None
) -> list[SessionUsage]:
    """Every session of ``user_id`` with its usage (``since``: recorded from then on).

    Sessions without usage are left out.
    """
    return (await usage_report(client, table, user_id, since))[0]


async def usage_report(
    client: Any, table: str, user_id: str, since: datetime | None = None
) -> tuple[list[SessionUsage], Totals]:
    """Every session of ``user_id`` with its usage, and the user's total.

    Args:
        client: A DynamoDB client.
        table: The convlog table.
        user_id: Whose usage.
        since: Count only usage recorded at or after this time (reads events).

    Returns:
        The sessions with usage (others are left out) and the total: the projector's
        per-user totals without ``since``, the sum of the rows with it.
    """
    found: list[SessionUsage] = []
    log = EventLog(client, table)
    cursor: str | None = None
    total: Totals | None = None
    while True:
        page = await list_sessions(client, table, user_id, limit=MAX_LIMIT, cursor=cursor)
        if page.user_usage is not None:
            total = page.user_usage.as_tuple()
        older = False  # the index is newest-active first: past one older session, all are
        for info in page.sessions:
            if since is None:
                totals: Totals = (info.requests, info.input_tokens, info.output_tokens,
                                  info.total_tokens)
            elif parse_time(info.last_active) < since:
                older = True
                break
            else:
                partition = branch_session_id(info.session_id, info.branch_id or MAIN_BRANCH)
                totals = await _usage_since(log, partition, since)
            if any(totals):
                found.append(SessionUsage(info.session_id, totals, info.branch_id))
        cursor = None if older else page.cursor
        if cursor is None:
            break
    return found, total if since is None and total is not None else summed(found)


def summed(rows: list[SessionUsage]) -> Totals:
    """The rows' usage added up."""
    sums = [sum(r.totals[n] for r in rows) for n in range(4)]
    return (sums[0], sums[1], sums[2], sums[3])


async def _usage_since(log: EventLog, session_id: str, since: datetime) -> Totals:
    sums = [0, 0, 0, 0]
    async for stored in log.iter_events(session_id):
        event = stored.event
        if event.type == "usage_recorded" and parse_time(event.ts) >= since:
            for n, name in enumerate(USAGE_FIELDS):
                sums[n] += int(event.usage.get(name, 0) or 0)
    return (sums[0], sums[1], sums[2], sums[3])


def render_usage(rows: list[SessionUsage], user_id: str, total: Totals | None = None) -> str:
    """Per-session rows and a total line (``total``: the sum of the rows unless given)."""
    total = summed(rows) if total is None else total
    if not rows and not any(total):
        return f"no usage recorded for user {user_id!r}"
    lines = [[r.session_id, r.branch_id or MAIN_BRANCH, *map(str, r.totals)] for r in rows]
    lines.append(["TOTAL", "", *map(str, total)])
    return render_table(["SESSION", "BRANCH", "REQUESTS", "INPUT", "OUTPUT", "TOTAL TOKENS"],
                        lines)


def run_usage(ctx: CliContext) -> int:
    """``convlog usage --user USER_ID [--since TIME] [--format table|json]``."""
    since = parse_time(ctx.args.since) if ctx.args.since else None
    rows, total = run_async(usage_report(ctx.client(), ctx.table, ctx.args.user, since))
    if ctx.args.format == "json":
        data = {"user": ctx.args.user, "since": ctx.args.since, "sessions": [
            {"session_id": r.session_id, "branch_id": r.branch_id,
             **dict(zip(USAGE_FIELDS, r.totals, strict=True))}
            for r in rows
        ], "total": dict(zip(USAGE_FIELDS, total, strict=True))}
        ctx.print(json.dumps(data, indent=2))
        return EXIT_OK
    ctx.print(render_usage(rows, ctx.args.user, total))
    return EXIT_OK
