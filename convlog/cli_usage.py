"""``convlog usage --user U [--since TIME]``: a user's token usage, per session and total.

Without ``--since`` the totals come from the session index (the projector sums every
``usage_recorded`` event into each session's meta item): one ``Query`` per page of
sessions. With ``--since`` only usage recorded at or after that time counts, so the
events of every session active since then are read and summed.

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
from eventstore.log import EventLog
from eventstore.sessions_index import MAX_LIMIT, list_sessions

from .audit import parse_time
from .cli import EXIT_OK, CliContext, run_async
from .cli_format import render_table

Totals = tuple[int, int, int, int]


@dataclass(frozen=True)
class SessionUsage:
    """Usage of one session: requests, input, output and total tokens."""

    session_id: str
    totals: Totals


async def user_usage(
    client: Any, table: str, user_id: str, since: datetime | None = None
) -> list[SessionUsage]:
    """Every session of ``user_id`` with its usage totals (``since``: recorded from then on).

    Sessions without usage are left out.
    """
    found: list[SessionUsage] = []
    log = EventLog(client, table)
    cursor: str | None = None
    while True:
        page = await list_sessions(client, table, user_id, limit=MAX_LIMIT, cursor=cursor)
        for info in page.sessions:
            if since is None:
                totals: Totals = (info.requests, info.input_tokens, info.output_tokens,
                                  info.total_tokens)
            elif parse_time(info.last_active) < since:
                continue
            else:
                totals = await _usage_since(log, info.session_id, since)
            if any(totals):
                found.append(SessionUsage(info.session_id, totals))
        cursor = page.cursor
        if cursor is None:
            return found


async def _usage_since(log: EventLog, session_id: str, since: datetime) -> Totals:
    sums = [0, 0, 0, 0]
    async for stored in log.iter_events(session_id):
        event = stored.event
        if event.type == "usage_recorded" and parse_time(event.ts) >= since:
            for n, name in enumerate(USAGE_FIELDS):
                sums[n] += int(event.usage.get(name, 0) or 0)
    return (sums[0], sums[1], sums[2], sums[3])


def render_usage(rows: list[SessionUsage], user_id: str) -> str:
    """Per-session rows and a total line."""
    if not rows:
        return f"no usage recorded for user {user_id!r}"
    total = tuple(sum(r.totals[n] for r in rows) for n in range(4))
    lines = [[r.session_id, *map(str, r.totals)] for r in rows]
    lines.append(["TOTAL", *map(str, total)])
    return render_table(["SESSION", "REQUESTS", "INPUT", "OUTPUT", "TOTAL TOKENS"], lines)


def run_usage(ctx: CliContext) -> int:
    """``convlog usage --user USER_ID [--since TIME] [--format table|json]``."""
    since = parse_time(ctx.args.since) if ctx.args.since else None
    rows = run_async(user_usage(ctx.client(), ctx.table, ctx.args.user, since))
    if ctx.args.format == "json":
        data = {"user": ctx.args.user, "since": ctx.args.since, "sessions": [
            {"session_id": r.session_id, **dict(zip(USAGE_FIELDS, r.totals, strict=True))}
            for r in rows
        ]}
        data["total"] = {name: sum(s[name] for s in data["sessions"]) for name in USAGE_FIELDS}
        ctx.print(json.dumps(data, indent=2))
        return EXIT_OK
    ctx.print(render_usage(rows, ctx.args.user))
    return EXIT_OK
