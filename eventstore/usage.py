"""Token usage and conversation structure for ``DynamoDBSession``.

``store_run_usage(result)`` appends one ``usage_recorded`` event (the run's requests and
tokens, attributed to the current user turn of the current branch); the getters fold
them back, with ``AdvancedSQLiteSession``'s results: the newest record of a turn wins, a
turn that no longer exists (popped, cleared, compacted away) has no usage, and a deleted
branch's usage is gone. The projector also sums every usage event into the session's
meta item, so ``list_sessions`` and ``convlog usage`` report totals without reading
events.

Example:
    ```python
    result = await Runner.run(agent, "Hi", session=session)
    await session.store_run_usage(result)
    print(await session.get_session_usage(), await session.get_turn_usage(1))
    ```
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from .appends import MAX_APPEND_ATTEMPTS
from .branches import SessionLike
from .errors import ConcurrencyError, ConditionFailedError
from .events import USAGE_FIELDS, UsageRecorded, now_iso
from .fold import NewestFirstFold
from .history import MAIN_BRANCH
from .log import Head
from .records import AttrMap
from .turns import current_turn
from .window import backoff


class UsageSession(SessionLike, Protocol):
    """What ``store_run_usage`` needs beyond ``SessionLike``: the remembered head."""

    _head: Head | None
    _turns: tuple[Head, int] | None

    def _user_record(self) -> AttrMap | None: ...


def usage_record(usage: Any) -> dict[str, Any]:
    """The stored form of an SDK ``Usage``: counts plus token details (or ``None``)."""
    record: dict[str, Any] = {name: int(getattr(usage, name, 0) or 0) for name in USAGE_FIELDS}
    for name in ("input_tokens_details", "output_tokens_details"):
        details = getattr(usage, name, None)
        record[name] = dict(vars(details)) if details else None
    return record


class UsageMixin:
    """``store_run_usage``, ``get_session_usage`` and ``get_turn_usage``."""

    async def store_run_usage(self: UsageSession, result: Any) -> None:
        """Record a run's usage against the current user turn of the current branch.

        Call it after ``Runner.run``. Nothing is written when the run has no usage or
        the branch has no user turn yet. It costs one write when this object knows the
        turn count at its head (after its own ``add_items``, ``pop_item`` or a full
        ``get_items``, with no TTL in play); otherwise one newest-first read first (the
        snapshot and newer events, as ``get_items``). The write is at ``head + 1``, so
        a concurrent write makes it read again rather than count a stale turn.
        """
        usage = getattr(getattr(result, "context_wrapper", None), "usage", None)
        if usage is None:
            return
        record = usage_record(usage)
        token = uuid.uuid4().hex
        known = self._turns if self._turns is not None and self._turns[0] == self._head else None
        for attempt in range(MAX_APPEND_ATTEMPTS):
            if known is None:
                read = await self._read(NewestFirstFold())
                known = (read.head or Head(), current_turn(read.items))
            head, turn = known
            if turn == 0:
                return
            event = UsageRecorded(session_id=self._sid(), seq=head.seq + 1, ts=now_iso(),
                                  user_id=self.user_id, token=token, turn=turn, usage=record)
            try:
                stored = await self._log.put(event, head.hash, ttl=self._ttl(),
                                             extra=self._user_record())
            except ConditionFailedError:
                self._forget()
                known = None
                await backoff(attempt)
                continue
            self._remember(stored)
            return
        raise ConcurrencyError(
            f"store_run_usage on session {self.session_id!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    async def get_session_usage(
        self: SessionLike, branch_id: str | None = None
    ) -> dict[str, int] | None:
        """Usage summed over one branch, or over every live branch when ``None``.

        Returns:
            ``requests``, ``input_tokens``, ``output_tokens``, ``total_tokens`` and
            ``total_turns``, or ``None`` when no usage is recorded.
        """
        if branch_id:
            branches = [branch_id]
        else:
            branches = [MAIN_BRANCH, *(b for b, _ in await self._branch_ids())]
        turns: list[dict[str, Any]] = []
        for branch in branches:
            turns.extend((await self._history(branch)).usage.values())
        if not turns:
            return None
        totals = {name: sum(int(t.get(name, 0)) for t in turns) for name in USAGE_FIELDS}
        totals["total_turns"] = len(turns)
        return totals

    async def get_turn_usage(
        self: SessionLike, user_turn_number: int | None = None, branch_id: str | None = None
    ) -> list[dict[str, Any]] | dict[str, Any]:
        """Usage per turn of a branch (current when ``None``), with token details.

        Returns:
            The usage of ``user_turn_number`` (``{}`` when none), or a list with a
            ``user_turn_number`` entry per turn when it is ``None``.
        """
        usage = (await self._history(branch_id)).usage
        if user_turn_number is not None:
            return dict(usage.get(user_turn_number, {}))
        return [{"user_turn_number": turn, **usage[turn]} for turn in sorted(usage)]
