"""How a ``DynamoDBSession`` appends at ``head + 1``, and what it remembers between calls.

Every write of a session is a conditional put of the next event at ``head + 1`` (a
concurrent writer makes the condition fail, and the loser tries the next seq). A session
object remembers the head it last saw and, after its own reads and writes, the newest
items (``eventstore.window``), so the common write needs no read first. It also records
its user in the ``by_user`` index on its first event in each partition (no extra request).

Example:
    ```python
    stored = await session._append(lambda seq, ts: ItemsAdded(
        session_id=session._sid(), seq=seq, ts=ts, token="t", items=[item]))
    assert session._head == Head(stored.event.seq, stored.hash)
    ```
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import ConcurrencyError, ConditionFailedError
from .events import Event, now_iso
from .fold import NewestFirstFold, removal_ttl
from .history import MAIN_BRANCH, BranchId, branch_base, branch_session_id
from .keys import USER_RECORD_SK_PREFIX, user_pk
from .log import EventLog, Head, ReadResult
from .records import AttrMap, Body, StoredEvent
from .turns import current_turn
from .window import Window, backoff, head_of

MAX_APPEND_ATTEMPTS = 64
FAST_RETRIES = 8
"""Conflicts resolved from what the failed condition names before reading the head."""


class AppendMixin:
    """The session's write path and its remembered state (head, newest items)."""

    session_id: str
    user_id: str | None
    _log: EventLog
    _head: Head | None
    _window: Window | None
    _branch: BranchId
    _user_recorded: set[str]
    _turns: tuple[Head, int] | None
    """The user turns of the current branch as of a head (``store_run_usage``'s turn)."""

    def _ttl(self) -> int | None:
        """The expiry of an event written now (``DynamoDBSession`` defines it)."""
        raise NotImplementedError

    def _sid(self, branch_id: str | None = None) -> str:
        """The partition of a branch (default: the current one)."""
        return branch_session_id(self.session_id, branch_id or self._branch)

    def _forget(self) -> None:
        """Drop the remembered head and items (another branch, or an unknown outcome)."""
        self._head = None
        self._window = None
        self._turns = None

    def _count_turns(self, stored: StoredEvent) -> None:
        """Carry the remembered turn count over the event that follows its head.

        Only while nothing expires (time alone would change the count) and only over
        the events whose effect on it is plain; otherwise the count is dropped, and
        ``store_run_usage`` reads the branch.
        """
        turns, self._turns = self._turns, None
        event = stored.event
        if turns is None or stored.ttl is not None or turns[0] != Head(
                event.seq - 1, stored.prev_hash):
            return
        count = turns[1]
        if event.type == "items_added":
            count += current_turn(event.items)
        elif event.type == "item_popped":
            count -= current_turn([event.item])
        elif event.type == "session_cleared":
            count = 0
        elif event.type != "usage_recorded":
            return
        self._turns = (Head(event.seq, stored.hash), count)

    async def _read(self, fold: NewestFirstFold, branch_id: str | None = None) -> ReadResult:
        """Fold a branch newest-first; past its own events, its parent's prefix."""
        result = await self._log.read_newest(self._sid(branch_id), fold)
        if fold.branch_start is None:
            return result
        fold.feed_base(await branch_base(self._log, fold.branch_start, fold.now))
        return ReadResult(fold.items(), result.head, result.snapshot_seq, result.requests,
                          fold.ttls())

    async def _append(
        self, build: Callable[[int, str], Event], payload: Body | None = None,
        object_key: str | None = None,
    ) -> StoredEvent:
        head = self._head
        if head is None:
            head = await self._log.read_head(self._sid())
            if head == Head() and self._branch == MAIN_BRANCH:
                self._turns = (head, 0)  # no event at all: no turn yet
        ts = now_iso()
        for attempt in range(MAX_APPEND_ATTEMPTS):
            event = build(head.seq + 1, ts)
            try:
                stored = await self._log.put(event, head.hash, ttl=self._ttl(), payload=payload,
                                             object_key=object_key,
                                             extra=self._user_record())
            except ConditionFailedError as exc:
                await backoff(attempt)
                winner = head_of(exc.item)
                if attempt < FAST_RETRIES and winner is not None and winner.seq > head.seq:
                    head = winner  # the conflict named the seq's holder: try the next seq
                else:
                    head = await self._log.read_head(self._sid())
                continue
            self._remember(stored)
            return stored
        raise ConcurrencyError(
            f"append to session {self.session_id!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    async def _put_removal(
        self, branch_id: str, build: Callable[[str, int, str], Event]
    ) -> StoredEvent:
        """Append an event that removes every item of a branch (a clear, a delete).

        With a TTL the event must not expire before the items it removes (whoever wrote
        them, by whatever clock), so their expiries are read first and the event is
        written at the head read (the TTL rule); without, it is one write at the known
        head (a ``read_head`` first for a branch other than the current one).
        """
        sid = self._sid(branch_id)
        current = sid == self._sid()
        if self._ttl() is None and current:
            return await self._append(lambda seq, ts: build(sid, seq, ts))
        for attempt in range(MAX_APPEND_ATTEMPTS):
            ttl = None
            if self._ttl() is None:
                head = await self._log.read_head(sid)
            else:
                result = await self._read(NewestFirstFold(), branch_id)
                head = result.head or Head()
                ttl = removal_ttl(result.ttls, self._ttl(), pop=False)  # the TTL rule
            try:
                stored = await self._log.put(build(sid, head.seq + 1, now_iso()), head.hash,
                                             ttl=ttl, extra=self._user_record() if current
                                             else None)
            except ConditionFailedError:
                await backoff(attempt)
                continue
            if current:
                self._remember(stored)
            return stored
        raise ConcurrencyError(
            f"removal on {sid!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    def _user_record(self) -> AttrMap | None:
        """Index attributes for this object's first event in a partition: the user's record."""
        if self.user_id is None or self._sid() in self._user_recorded:
            return None
        return {"gsi1pk": {"S": user_pk(self.user_id)},
                "gsi1sk": {"S": USER_RECORD_SK_PREFIX + self._sid()}}

    def _remember(self, stored: StoredEvent) -> None:
        self._user_recorded.add(stored.event.session_id)
        self._count_turns(stored)
        window, self._window = self._window, None
        if (window is not None and window.head == Head(stored.event.seq - 1, stored.prev_hash)
                and window.advance(stored)):
            self._keep(window)
        self._head = Head(stored.event.seq, stored.hash)

    def _keep(self, window: Window) -> None:
        """Remember the newest items for the next pop (unless time alone may change them)."""
        self._head = window.head
        self._window = None if window.expiring else window
