"""What the console shows, computed from the library in one thin layer.

The console calls ``convlog.audit``, ``convlog.purge`` (planned there, carried out by
``convlog.purge_steps``, the same steps as ``convlog purge``) and ``eventstore`` only from
here, so the HTTP layer stays thin and a change of those APIs is fixed in one place.

``ConsoleService`` answers with the pydantic models of ``convlog.console.models``. It
never writes, except ``purge``, which ``convlog.console.app`` only exposes to an admin
console. With a ``tenant``, every user and session id must start with ``<tenant>/``;
anything else is answered as not found, before anything is read.

Example:
    ```python
    service = ConsoleService(boto3.client("dynamodb"), "agent_sessions")
    timeline = await service.timeline("alice-1")
    print(timeline.verify.ok, [e.status for e in timeline.events])
    ```
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from eventstore.client import DynamoClient, wrap_client
from eventstore.errors import CorruptEventError, InvalidInputError
from eventstore.fold import Entry, apply_event, fold_forward
from eventstore.keys import args_sk, tenant_of, tool_pk, validate_session_id
from eventstore.log import EventLog
from eventstore.payloads import PayloadStore
from eventstore.records import StoredEvent
from eventstore.sessions_index import list_sessions
from eventstore.views import arguments_hash, decode_tool_entry

from ..audit import VerifyReport, export_line, replay, verify_session
from ..purge import PurgePlan, plan_purge
from ..purge_record import PurgeSigner
from ..purge_steps import carry_out_purge
from .models import (
    ChainStatus,
    ItemChange,
    ItemsOut,
    ProblemOut,
    PurgeDoneOut,
    PurgePlanOut,
    PurgeTarget,
    SessionsPage,
    SessionSummary,
    SessionTarget,
    TimelineEvent,
    TimelineOut,
    ToolEntriesOut,
    ToolEntryOut,
    UsageTotals,
    UserTarget,
    VerifyOut,
)


class NotFoundError(InvalidInputError):
    """No such session or user (or not one of this console's tenant)."""


class PlanChangedError(InvalidInputError):
    """A purge's confirmation token is not the one of the current plan."""


class ConsoleService:
    """The console's read model over one convlog table.

    Args:
        client: A boto3 DynamoDB client (its role decides what the console may read).
        table: The convlog table.
        tenant: Serve only ids starting with ``<tenant>/`` (``None``: every id).
        s3_client: A boto3 S3 client for payloads offloaded to S3 (with ``bucket_name``).
        bucket_name: The payload bucket; without it an event whose payload is in S3
            shows as unreadable ("no payload bucket") and a purge leaves its objects.
        signer: Signs what a purge erases into the anchor digests
            (``convlog.purge_record``; ``None``: no digests in use).

    Example:
        ```python
        service = ConsoleService(client, "agent_sessions", tenant="acme")
        page = await service.sessions("acme/alice", limit=20)
        ```
    """

    def __init__(
        self, client: Any, table: str, *, tenant: str | None = None,
        s3_client: Any = None, bucket_name: str | None = None,
        signer: PurgeSigner | None = None,
    ) -> None:
        self.signer = signer
        self.client = client
        self.db: DynamoClient = wrap_client(client)
        self.table = table
        self.payloads = (PayloadStore(s3_client, bucket_name)
                         if s3_client is not None and bucket_name else None)
        self.log = EventLog(client, table, payloads=self.payloads)
        self.tenant = tenant

    def _own(self, what: str, value: str) -> str:
        if self.tenant is not None and not value.startswith(self.tenant + "/"):
            raise NotFoundError(f"no {what} {value!r} in this console")
        return value

    def session_id(self, session_id: str) -> str:
        """Check a session id (valid, and of this console's tenant)."""
        return self._own("session", validate_session_id(session_id))

    async def sessions(self, user_id: str, *, limit: int, cursor: str | None) -> SessionsPage:
        """A page of the user's sessions from the ``by_user`` index, newest first."""
        self._own("user", user_id)
        page = await list_sessions(self.client, self.table, user_id, limit=limit, cursor=cursor)
        return SessionsPage(
            user_id=user_id,
            sessions=[
                SessionSummary(session_id=s.session_id, title=s.title, created=s.created,
                               last_active=s.last_active, item_count=s.item_count,
                               usage=UsageTotals(requests=s.requests,
                                                 input_tokens=s.input_tokens,
                                                 output_tokens=s.output_tokens,
                                                 total_tokens=s.total_tokens),
                               branch_id=s.branch_id)
                for s in page.sessions
                if self.tenant is None or s.session_id.startswith(self.tenant + "/")
            ],
            cursor=page.cursor,
            user_usage=None if page.user_usage is None else UsageTotals(
                requests=page.user_usage.requests,
                input_tokens=page.user_usage.input_tokens,
                output_tokens=page.user_usage.output_tokens,
                total_tokens=page.user_usage.total_tokens),
        )

    async def verify(self, session_id: str) -> VerifyOut:
        """Walk the session's chain; ``NotFoundError`` when it holds nothing."""
        report = await verify_session(self.log, self.session_id(session_id))
        if report.events == 0 and report.problem is None and report.expired_prefix is None:
            raise NotFoundError(f"no session {session_id!r}")
        return _verify_out(report)

    async def _events(self, session_id: str, report: VerifyOut) -> list[StoredEvent]:
        problem = report.problem
        upto = problem.seq - 1 if problem is not None and problem.kind == "corrupt" else None
        return (await replay(self.log, session_id, at_seq=upto)).events

    async def timeline(self, session_id: str) -> TimelineOut:
        """Every event, oldest first, with its chain status and what it changed."""
        report = await self.verify(session_id)
        events = await self._events(session_id, report)
        problem, now = report.problem, time.time()
        expired = report.expired_prefix
        entries: list[Entry] = []
        out: list[TimelineEvent] = []
        for stored in events:
            event = stored.event
            before = [e.item for e in entries]
            if not (stored.ttl is not None and stored.ttl <= now):
                apply_event(entries, event, stored.ttl)
            after = [e.item for e in entries]
            out.append(TimelineEvent(
                seq=event.seq, kind=event.type, ts=event.ts, user_id=event.user_id,
                hash=stored.hash, prev_hash=stored.prev_hash, ttl=stored.ttl,
                status=_status(event.seq, problem, expired),
                change=_change(event.type, before, after),
            ))
        if problem is not None and problem.kind in ("missing", "corrupt") and not any(
            e.seq == problem.seq for e in out
        ):
            size = len(entries)
            gap = TimelineEvent(
                seq=problem.seq, kind=problem.kind if problem.kind == "corrupt" else "missing",
                ts=None, user_id=None, hash=None, prev_hash=None, ttl=None, status="broken",
                change=ItemChange(count_before=size, count_after=size),
            )
            out = sorted([*out, gap], key=lambda e: e.seq)
        return TimelineOut(session_id=session_id, events=out, verify=report)

    async def items(
        self, session_id: str, *, at_seq: int | None, as_of: datetime | None
    ) -> ItemsOut:
        """The items after ``at_seq`` and at ``as_of``: the earlier point if both are given."""
        sid = self.session_id(session_id)
        moment = as_of.replace(tzinfo=UTC) if as_of and as_of.tzinfo is None else as_of
        if at_seq is not None and moment is not None:
            result = await replay(self.log, sid, as_of=moment)
            if result.at_seq > at_seq:
                result = await replay(self.log, sid, at_seq=at_seq)
        else:
            result = await replay(self.log, sid, at_seq=at_seq, as_of=moment)
        at = moment.timestamp() if moment is not None else time.time()
        live = [e for e in fold_forward(result.events, now=at).entries if not e.expired(at)]
        return ItemsOut(session_id=sid, at_seq=result.at_seq, count=len(live),
                        items=[e.item for e in live], seqs=[e.seq for e in live])

    async def export(self, session_id: str) -> AsyncIterator[str]:
        """The session's events as JSON lines (``convlog replay --format jsonl``)."""
        timeline = await self.verify(session_id)
        for stored in await self._events(session_id, timeline):
            yield json.dumps(export_line(stored), ensure_ascii=False, sort_keys=True) + "\n"

    async def tool_entries(self, session_id: str) -> ToolEntriesOut:
        """Live tool-cache entries whose result was recorded from this session's calls."""
        sid = self.session_id(session_id)
        keys: dict[tuple[str, str], None] = {}
        for stored in (await replay(self.log, sid)).events:
            for item in getattr(stored.event, "items", []):
                if item.get("type") == "function_call" and isinstance(item.get("name"), str):
                    try:
                        digest = arguments_hash(item.get("arguments") or "{}")
                    except InvalidInputError:
                        continue
                    keys[(item["name"], digest)] = None
        found: list[ToolEntryOut] = []
        now = time.time()
        for name, digest in keys:
            response = await self.db.call(
                "get_item", TableName=self.table, ConsistentRead=True,
                # the projector writes a session's results into its tenant's scope
                Key={"pk": {"S": tool_pk(name, tenant_of(sid))}, "sk": {"S": args_sk(digest)}},
            )
            if "Item" not in response:
                continue
            try:
                entry = decode_tool_entry(response["Item"])
            except CorruptEventError:
                continue
            if entry.session_id != sid or (entry.ttl is not None and entry.ttl <= now):
                continue  # another session's result is not this session's to show
            found.append(ToolEntryOut(
                tool_name=entry.tool_name, arguments_hash=entry.arguments_hash,
                output=entry.output, created=entry.created, ttl=entry.ttl,
                call_id=entry.call_id, hits=entry.hits,
            ))
        return ToolEntriesOut(session_id=sid, entries=found)

    async def purge_plan(self, target: PurgeTarget) -> PurgePlanOut:
        """What ``purge`` would delete, and the token that confirms it.

        ``shared`` lists the sessions that also hold other users' events (a user's
        purge only), with those users' event counts: the purge must then say whether
        to delete them whole or erase only this user's content.
        """
        plan = await self._plan(target)
        counts = plan.counts()
        return PurgePlanOut(sessions=plan.sessions, counts=dict(counts),
                            items=len(plan.keys) + len(plan.cache_refs),  # + owned entries
                            shared={s: dict(o) for s, o in plan.shared().items()},
                            confirm=_token(plan.keys))

    async def purge(self, target: PurgeTarget, confirm: str) -> PurgeDoneOut:
        """Erase what the confirmed plan holds; ``PlanChangedError`` if it changed.

        Shared sessions go whole (``shared="session"``) or lose only the user's content
        (``shared="content"``, ``convlog.erase_content``); with a signer, what is erased
        is signed into the digests first (``convlog.purge_record``).

        Raises:
            PlanChangedError: ``confirm`` is not the token of the current plan.
            InvalidInputError: The plan has shared sessions and no ``shared`` choice.
        """
        plan = await self._plan(target)
        if confirm != _token(plan.keys):
            raise PlanChangedError(
                "the confirmation token does not match what would be deleted now: "
                "ask for a new plan"
            )
        shared, user = plan.shared(), plan.user_id
        choice = target.shared if isinstance(target, UserTarget) else None
        if shared and choice is None:
            raise InvalidInputError(
                f"{len(shared)} of these sessions hold other users' events: choose shared="
                f"'session' (delete them whole) or 'content' (erase only {user!r}'s content)")
        outcome = await carry_out_purge(
            self.db, self.table, plan, signer=self.signer, payloads=self.payloads,
            erase_content_of=user if shared and choice == "content" else None)
        erased = outcome.erased
        return PurgeDoneOut(sessions=outcome.plan.sessions, deleted=outcome.deleted,
                            erased_content=[e.session_id for e in erased],
                            erased_events=sum(e.events for e in erased),
                            signed_digests=outcome.digests)

    async def _plan(self, target: PurgeTarget) -> PurgePlan:
        if isinstance(target, SessionTarget):
            plan = await plan_purge(self.db, self.table,
                                    session_id=self.session_id(target.session_id))
        else:
            plan = await plan_purge(self.db, self.table,
                                    user_id=self._own("user", target.user_id))
        if not plan.keys:
            raise NotFoundError("nothing to purge: no such session or user")
        return plan


def _token(keys: list[tuple[str, str]]) -> str:
    digest = hashlib.sha256(json.dumps(sorted(keys), separators=(",", ":")).encode())
    return digest.hexdigest()[:32]


def _verify_out(report: VerifyReport) -> VerifyOut:
    problem = report.problem
    return VerifyOut(
        session_id=report.session_id, ok=report.ok, events=report.events,
        first_seq=report.first_seq, last_seq=report.last_seq,
        expired_prefix=list(report.expired_prefix) if report.expired_prefix else None,
        problem=ProblemOut(seq=problem.seq, kind=problem.kind, message=problem.message)
        if problem else None,
    )


def _status(seq: int, problem: ProblemOut | None, expired: list[int] | None) -> ChainStatus:
    if problem is not None and seq >= problem.seq:
        return "broken" if seq == problem.seq else "unverified"
    if expired is not None and expired[0] <= seq <= expired[1]:
        return "expired"
    return "ok"


def _change(kind: str, before: list[Any], after: list[Any]) -> ItemChange:
    if kind == "items_added":
        added, removed = after[len(before):], []
    elif kind == "items_replaced":  # compaction: a suffix gave way to the new items
        keep = 0
        while keep < min(len(before), len(after)) and before[keep] == after[keep]:
            keep += 1
        added, removed = after[keep:], before[keep:]
    else:  # a pop removes the newest item, a clear removes them all (usage: nothing)
        added, removed = [], before[len(after):]
    return ItemChange(added=added, removed=removed, count_before=len(before),
                      count_after=len(after))
