"""Events in, views out: the snapshot, the session meta and the tool-cache entries.

Pure functions over ``StoredEvent`` values; the projector reads the current views and
the events, calls ``project_session``, and writes what it returns. The snapshot is the
same fold that ``get_items`` uses (``eventstore.fold.fold_forward``), so a read from a
snapshot plus the newer events equals a read of the whole history.

Example:
    ```python
    from projections.session import project_session

    result = project_session("s1", prior_snapshot, prior_meta, events, tool_ttl_seconds=3600,
                             times={7: 1767225600.0})  # seq -> stream record time
    if result is not None:
        print(result.snapshot.seq, result.meta.title, len(result.tool_entries))
    ```
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from eventstore.errors import InvalidInputError
from eventstore.events import USAGE_FIELDS, JsonItem
from eventstore.fold import Snapshot, fold_forward
from eventstore.keys import tenant_of, validate_tool_name
from eventstore.records import StoredEvent
from eventstore.views import SessionMeta, ToolCacheEntry, arguments_hash, tool_output_fits

TITLE_CHARS = 80
DEFAULT_TOOL_TTL_SECONDS = 3600


@dataclass(frozen=True)
class SessionProjection:
    """The views of one session after applying a run of events.

    Example:
        ```python
        result = project_session("s1", None, None, events)
        assert result is not None and result.snapshot.seq == events[-1].event.seq
        ```
    """

    snapshot: Snapshot
    meta: SessionMeta
    tool_entries: tuple[ToolCacheEntry, ...]
    ttl: int | None
    applied: int


def project_session(
    session_id: str,
    prior_snapshot: Snapshot | None,
    prior_meta: SessionMeta | None,
    events: Sequence[StoredEvent],
    *,
    tool_ttl_seconds: int = DEFAULT_TOOL_TTL_SECONDS,
    now: float | None = None,
    times: Mapping[int, float] | None = None,
) -> SessionProjection | None:
    """Apply ``events`` (oldest first, contiguous after the prior views) to the views.

    Args:
        session_id: The session.
        prior_snapshot: The stored snapshot (``None``: start from an empty session).
        prior_meta: The stored meta item, at the same seq as ``prior_snapshot``.
        events: The events after ``prior_snapshot.seq``; older ones are ignored.
        tool_ttl_seconds: Lifetime of tool-cache entries, from the trusted time of the
            event (``0`` turns tool caching off).
        now: Clock for TTL checks (epoch seconds).
        times: Trusted time (epoch seconds) of events by seq: the stream record's
            approximate creation time. Only events with one yield tool-cache entries;
            the ``ts`` an event claims is never used for them.

    Returns:
        The new views, or ``None`` when no event is newer than the prior views.
    """
    base = prior_snapshot.seq if prior_snapshot else 0
    fresh = [e for e in events if e.event.seq > base]
    if not fresh:
        return None
    at = time.time() if now is None else now
    snapshot = fold_forward(fresh, prior_snapshot, now=at)
    ttl = view_ttl(snapshot, fresh[-1])
    meta = fold_meta(session_id, prior_meta if prior_snapshot else None, fresh, snapshot, ttl)
    # the calls a batch's outputs answer are looked up in the tail (the newest entries)
    prior_items = [e.item for e in prior_snapshot.entries] if prior_snapshot else []
    entries = (
        tool_entries(session_id, prior_items, fresh, ttl_seconds=tool_ttl_seconds, now=at,
                     times=times or {})
        if tool_ttl_seconds > 0
        else ()
    )
    return SessionProjection(snapshot, meta, tuple(entries), ttl, len(fresh))


def view_ttl(snapshot: Snapshot, newest: StoredEvent) -> int | None:
    """Expiry of the views: when the newest event and every live entry have expired.

    Entries in sealed chunks count by their summary (the latest expiry among them).
    """
    ttls = [e.ttl for e in snapshot.entries] + [newest.ttl]
    if snapshot.sealed is not None:
        ttls.append(snapshot.sealed.ttl)
    if any(t is None for t in ttls):
        return None
    return max(t for t in ttls if t is not None)


def fold_meta(
    session_id: str,
    prior: SessionMeta | None,
    events: Sequence[StoredEvent],
    snapshot: Snapshot,
    ttl: int | None,
) -> SessionMeta:
    """Update the session meta: activity, owner, item count, title, usage, branch.

    Usage totals count every ``usage_recorded`` event (the tokens were spent even when
    the turn was later popped, compacted or branched away).
    """
    user_id = prior.user_id if prior else None
    title = prior.title if prior else None
    usage = list(prior.usage) if prior else [0, 0, 0, 0]
    branch_id = prior.branch_id if prior else None
    for stored in events:
        if stored.event.type == "branch_created":
            branch_id = stored.event.branch_id
        if stored.event.user_id is not None and not stored.erased:  # erased: not theirs now
            user_id = stored.event.user_id
        if title is None and stored.event.type == "items_added" and not stored.erased:
            title = first_user_text(stored.event.items)
        if stored.event.type == "usage_recorded":
            spent = stored.event.usage
            for n, name in enumerate(USAGE_FIELDS):
                usage[n] += int(spent.get(name, 0) or 0)
    return SessionMeta(
        session_id=session_id,
        seq=snapshot.seq,
        created=prior.created if prior else events[0].event.ts,
        last_active=max(events[-1].event.ts, prior.last_active if prior else ""),
        item_count=snapshot.count,
        user_id=user_id,
        title=title,
        ttl=ttl,
        usage=(usage[0], usage[1], usage[2], usage[3]),
        branch_id=branch_id,
    )


def first_user_text(items: Iterable[JsonItem]) -> str | None:
    """The text of the first user message among ``items``, shortened for a title."""
    for item in items:
        if item.get("role") != "user" or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, str):
            text = content
        elif isinstance(content, list):
            text = " ".join(
                str(part.get("text", ""))
                for part in content
                if isinstance(part, dict) and part.get("type") in ("input_text", "text")
            )
        else:
            continue
        text = " ".join(text.split())
        if text:
            return text if len(text) <= TITLE_CHARS else text[: TITLE_CHARS - 1] + "…"
    return None


def tool_entries(
    session_id: str,
    prior_items: Sequence[JsonItem],
    events: Sequence[StoredEvent],
    *,
    ttl_seconds: int = DEFAULT_TOOL_TTL_SECONDS,
    now: float | None = None,
    times: Mapping[int, float] | None = None,
) -> list[ToolCacheEntry]:
    """Pair each ``function_call_output`` with its ``function_call`` (by ``call_id``).

    The call may sit in an earlier event (``prior_items`` are the items before
    ``events``). Only text outputs small enough for one item are cached, in the scope
    of the session's tenant (``<tenant>/...``; global without one), owned by the session
    and the event's user; the newest result per tool and arguments wins. An entry is
    dated by ``times[seq]`` (the stream's clock); events without a trusted time, expired
    events and entries, and tool names that are not valid in the scope are skipped.
    """
    at = time.time() if now is None else now
    calls: dict[str, JsonItem] = {
        str(i["call_id"]): i for i in prior_items if i.get("type") == "function_call"
    }
    found: dict[tuple[str, str], ToolCacheEntry] = {}
    trusted = times or {}
    for stored in events:
        event = stored.event
        if event.type != "items_added" or (stored.ttl is not None and stored.ttl <= at):
            continue
        for item in event.items:
            kind = item.get("type")
            if kind == "function_call" and isinstance(item.get("call_id"), str):
                calls[item["call_id"]] = item
            elif kind == "function_call_output" and event.seq in trusted:
                entry = _entry(session_id, calls.get(str(item.get("call_id"))), item,
                               trusted[event.seq], ttl_seconds, event.user_id)
                if entry is not None and (entry.ttl is None or entry.ttl > at):
                    found[(entry.tool_name, entry.arguments_hash)] = entry
    return list(found.values())


def _entry(
    session_id: str, call: JsonItem | None, output_item: JsonItem, created: float,
    ttl_seconds: int, user_id: str | None,
) -> ToolCacheEntry | None:
    if call is None or not isinstance(call.get("name"), str):
        return None
    scope = tenant_of(session_id)
    try:
        validate_tool_name(call["name"], scope)
    except InvalidInputError:
        return None
    output: Any = output_item.get("output")
    if not isinstance(output, str) or not tool_output_fits(output):
        return None
    try:
        digest = arguments_hash(call.get("arguments") or "{}")
    except ValueError:
        return None
    return ToolCacheEntry(
        tool_name=call["name"],
        arguments_hash=digest,
        output=output,
        created=iso_time(created),
        ttl=int(created) + ttl_seconds,
        session_id=session_id,
        call_id=str(output_item.get("call_id")),
        scope=scope,
        user_id=user_id,
    )


def iso_time(epoch: float) -> str:
    """An epoch time as ISO 8601 UTC with milliseconds and a ``Z``."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
