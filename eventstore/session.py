"""``DynamoDBSession``: an OpenAI Agents SDK session backed by an event log.

A drop-in for the single-item ``DynamoDBSession`` users know (same constructor, same
methods), but every ``add_items``, ``pop_item`` and ``clear_session`` is appended as an
immutable event: writes cost the size of the change, not of the history; concurrent
writers never lose each other's items; and a session is not capped at 400 KB.
"""

from __future__ import annotations

import asyncio
import copy
import random
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from agents.memory import SessionABC, SessionSettings
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit

from .errors import ConcurrencyError, ConditionFailedError, CorruptEventError, InvalidInputError
from .events import Event, ItemPopped, ItemsAdded, SessionCleared, now_iso, validate_items
from .fold import NewestFirstFold, removal_ttl
from .keys import validate_session_id
from .log import EventLog, Head
from .records import Payload, StoredEvent, decode_event, encode_payload

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.run_context import RunContextWrapper

MAX_APPEND_ATTEMPTS = 64
_BACKOFF_BASE = 0.01
_BACKOFF_CAP = 2.0
_FAST_RETRIES = 8
POP_WINDOW = 32


class DynamoDBSession(SessionABC):
    """Conversation history for one session id, stored as events in DynamoDB.

    Args:
        session_id: Identifies the conversation; the partition key (at most 1 KB).
        dynamodb_client: A boto3 client or an aiobotocore client for DynamoDB.
        table_name: A table created by ``create_table_if_not_exists`` or
            ``template.yaml``.
        ttl_seconds: When set, every event expires this many seconds after it is
            written, and reads ignore expired events even before DynamoDB deletes them.
        user_id: Owner of the session, recorded on each event and indexed by the
            projector (``list_sessions``).
        session_settings: SDK session settings (default ``SessionSettings()``);
            ``limit`` is the default for ``get_items`` (an explicit ``limit`` wins).

    Every method accepts ``wrapper=`` (the run context the SDK's runner passes to
    sessions that take it).

    Example:
        ```python
        from aiobotocore.session import get_session
        from agents import Agent, Runner
        from eventstore import DynamoDBSession

        async with get_session().create_client("dynamodb") as client:
            session = DynamoDBSession("user-123", client, "agent_sessions", ttl_seconds=86400)
            result = await Runner.run(agent, "Hello", session=session)
        ```
    """

    session_id: str
    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        dynamodb_client: Any,
        table_name: str,
        ttl_seconds: int | None = None,
        *,
        user_id: str | None = None,
        session_settings: SessionSettings | dict[str, Any] | None = None,
    ) -> None:
        self.session_id = validate_session_id(session_id)
        if not isinstance(table_name, str) or not table_name:
            raise InvalidInputError("table_name must be a non-empty string")
        if ttl_seconds is not None and (
            isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int) or ttl_seconds <= 0
        ):
            raise InvalidInputError(f"ttl_seconds must be a positive int, got {ttl_seconds!r}")
        if user_id is not None and (not isinstance(user_id, str) or not user_id):
            raise InvalidInputError("user_id must be a non-empty string or None")
        if user_id is not None and not user_id.isascii():
            try:
                user_id.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise InvalidInputError(
                    f"user_id holds a lone surrogate at index {exc.start}, which UTF-8 "
                    "cannot store"
                ) from None
        self.table_name = table_name
        self.ttl_seconds = ttl_seconds
        self.user_id = user_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self._log = EventLog(dynamodb_client, table_name)
        self._head: Head | None = None
        self._window: _Window | None = None

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """Return the conversation items, oldest first.

        Args:
            limit: Return only the newest ``limit`` items; ``None`` uses
                ``session_settings.limit``, and without that returns everything.
            wrapper: The run context (accepted for the SDK's runner; unused here).

        Returns:
            The items in chronological order.

        Raises:
            InvalidInputError: ``limit`` is not an int or ``None`` (nothing is read).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidInputError(f"limit must be an int or None, got {limit!r}")
        effective = resolve_session_limit(limit, self.session_settings)
        if effective is not None and effective <= 0:
            return []
        fold = NewestFirstFold(limit=effective)
        result = await self._log.read_newest(self.session_id, fold)
        if effective is None:
            newest = copy.deepcopy(result.items[-POP_WINDOW:])  # the caller may mutate them
            self._keep(_Window(result.head or Head(), newest,
                               len(newest) == len(result.items), fold.expiring,
                               result.ttls[-POP_WINDOW:]))
        elif result.head is not None:
            self._head = result.head
        items: list[TResponseInputItem] = result.items
        return items

    async def add_items(
        self, items: list[TResponseInputItem], *, wrapper: RunContextWrapper[Any] | None = None
    ) -> None:
        """Append ``items`` as one ``items_added`` event (nothing is written for ``[]``).

        Raises:
            InvalidItemError: An item is not JSON-serialisable (nothing written).
            PayloadTooLargeError: The items do not fit in one write (nothing written).
        """
        checked = validate_items(items)
        if not checked:
            return
        payload = encode_payload({"items": checked})  # too large: fail before any request
        token = uuid.uuid4().hex
        await self._append(
            lambda seq, ts: ItemsAdded(
                session_id=self.session_id, seq=seq, ts=ts, user_id=self.user_id,
                token=token, items=checked,
            ),
            payload,
        )

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the newest item, or ``None`` when the session is empty.

        Two concurrent pops never return the same item: the pop is an append at
        ``head + 1``. The loser learns the winner's event from the failed condition
        (``ALL_OLD``), applies it to the newest items it read, and pops the next one;
        after repeated losses it backs off and reads again.

        A session object remembers the newest items after its own reads and writes, so a
        pop usually costs one write: the conditional put proves the remembered state is
        current. An empty remembered state proves nothing, so ``None`` needs a read.
        """
        window = self._window if self._window and self._window.head == self._head else None
        self._window = None
        read_now = False  # whether the state was read during this call
        for attempt in range(MAX_APPEND_ATTEMPTS):
            if window is None:
                fold = NewestFirstFold(limit=POP_WINDOW)
                result = await self._log.read_newest(self.session_id, fold)
                window = _Window(result.head or Head(), result.items,
                                 len(result.items) < POP_WINDOW, fold.expiring, result.ttls)
                read_now = True
            if not window.items:
                if not (window.complete and read_now):
                    window = None  # popped past what was read, or remembered: read
                    continue
                self._keep(window)
                return None
            item = window.items[-1]
            event = ItemPopped(
                session_id=self.session_id, seq=window.head.seq + 1, ts=now_iso(),
                user_id=self.user_id, token=uuid.uuid4().hex, item=item,
            )
            try:
                ttl = removal_ttl(window.ttls[-1:], self._ttl(), pop=True)  # the TTL rule
                stored = await self._log.put(event, window.head.hash, ttl=ttl)
            except ConditionFailedError as exc:
                await _backoff(attempt)
                winner = _event_of(exc.item) if attempt < _FAST_RETRIES else None
                if winner is not None and winner.event.seq == window.head.seq + 1:
                    window.advance(winner)  # the winner's event is known: pop the next
                else:
                    window = None
                continue
            window.advance(stored)
            self._keep(window)
            popped: TResponseInputItem = item
            return popped
        raise ConcurrencyError(
            f"pop_item on session {self.session_id!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Append a ``session_cleared`` event; the history stays for audit.

        With ``ttl_seconds`` the clear must not expire before the items it removes
        (whoever wrote them, by whatever clock), so it reads their expiries first and
        is written at the head it read; without, it is one write.

        Use ``convlog purge`` to erase a session's data.
        """
        token = uuid.uuid4().hex

        def build(seq: int, ts: str) -> Event:
            return SessionCleared(
                session_id=self.session_id, seq=seq, ts=ts, user_id=self.user_id, token=token
            )

        if self.ttl_seconds is None:
            await self._append(build)
            return
        for attempt in range(MAX_APPEND_ATTEMPTS):
            result = await self._log.read_newest(self.session_id, NewestFirstFold())
            head = result.head or Head()
            ttl = removal_ttl(result.ttls, self._ttl(), pop=False)  # the TTL rule
            try:
                stored = await self._log.put(build(head.seq + 1, now_iso()), head.hash, ttl=ttl)
            except ConditionFailedError:
                await _backoff(attempt)
                continue
            self._remember(stored)
            return
        raise ConcurrencyError(
            f"clear_session on session {self.session_id!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    async def close(self) -> None:
        """Release nothing: the client belongs to the caller, who closes it."""
        self._head = None
        self._window = None

    async def _append(
        self, build: Callable[[int, str], Event], payload: Payload | None = None
    ) -> StoredEvent:
        head = self._head or await self._log.read_head(self.session_id)
        ts = now_iso()
        for attempt in range(MAX_APPEND_ATTEMPTS):
            event = build(head.seq + 1, ts)
            try:
                stored = await self._log.put(event, head.hash, ttl=self._ttl(), payload=payload)
            except ConditionFailedError as exc:
                await _backoff(attempt)
                winner = _head_of(exc.item)
                if attempt < _FAST_RETRIES and winner is not None and winner.seq > head.seq:
                    head = winner  # the conflict named the seq's holder: try the next seq
                else:
                    head = await self._log.read_head(self.session_id)
                continue
            self._remember(stored)
            return stored
        raise ConcurrencyError(
            f"append to session {self.session_id!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    def _remember(self, stored: StoredEvent) -> None:
        window, self._window = self._window, None
        if window is not None and window.head == Head(stored.event.seq - 1, stored.prev_hash):
            window.advance(stored)
            self._keep(window)
        self._head = Head(stored.event.seq, stored.hash)

    def _keep(self, window: _Window) -> None:
        """Remember the newest items for the next pop (unless time alone may change them)."""
        self._head = window.head
        self._window = None if window.expiring else window

    def _ttl(self) -> int | None:
        return int(time.time()) + self.ttl_seconds if self.ttl_seconds else None

    def __repr__(self) -> str:
        return f"DynamoDBSession(session_id={self.session_id!r}, table={self.table_name!r})"


class _Window:
    """The newest live items (oldest first) as of ``head``; ``complete``: all of them.

    ``ttls`` holds the expiry of each item (a pop inherits its item's, the TTL rule).
    """

    def __init__(
        self, head: Head, items: list[Any], complete: bool, expiring: bool,
        ttls: list[int | None] | None = None,
    ) -> None:
        self.head = head
        self.items = list(items)
        self.ttls: list[int | None] = (
            list(ttls) if ttls is not None else [None] * len(self.items)
        )
        self.complete = complete
        self.expiring = expiring

    def advance(self, stored: StoredEvent) -> None:
        """Apply the event that follows ``head``."""
        event = stored.event
        self.head = Head(event.seq, stored.hash)
        self.expiring = self.expiring or stored.ttl is not None
        if event.type == "items_added":
            self.items.extend(copy.deepcopy(event.items))
            self.ttls.extend([stored.ttl] * len(event.items))
            if len(self.items) > 4 * POP_WINDOW:
                self.items, self.complete = self.items[-POP_WINDOW:], False
                self.ttls = self.ttls[-POP_WINDOW:]
        elif event.type == "item_popped":
            if self.items:
                self.items.pop()
                self.ttls.pop()
        else:
            self.items.clear()
            self.ttls.clear()
            self.complete = True


def _event_of(item: dict[str, Any] | None) -> StoredEvent | None:
    """The event an ``ALL_OLD`` conflict item holds, if it is whole and live."""
    if not item or "type" not in item or "parts" in item:
        return None
    try:
        stored = decode_event(item)
    except CorruptEventError:
        return None
    return None if stored.ttl is not None and stored.ttl <= time.time() else stored


def _head_of(item: dict[str, Any] | None) -> Head | None:
    """The head an ``ALL_OLD`` conflict item reveals (an event or one of its parts)."""
    try:
        return Head.of_item(item) if item else None
    except (KeyError, TypeError, ValueError):
        return None


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)))
