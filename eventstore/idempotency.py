"""Exactly-once writes: idempotency keys, event tokens, and recognising one's own event.

Every event carries a ``token``. Without an idempotency key it is random, so a write that
the caller repeats is a second write. With a key (an explicit ``idempotency_key=`` or one
taken from the run context), the token is derived from the key and the operation, so the
retry of an ``add_items`` or ``pop_item`` whose responses were all lost
(``AmbiguousResultError``) can look for its event among the newest ones and, when it is
there, return what the first attempt did instead of writing again.

Example:
    ```python
    try:
        await session.add_items(items, idempotency_key="order-42:turn-3")
    except AmbiguousResultError:
        await session.add_items(items, idempotency_key="order-42:turn-3")  # lands once
    ```
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import AmbiguousResultError, InvalidInputError
from .events import canonical_json
from .keys import EVENT_PREFIX, session_pk
from .log import EventLog, Head
from .records import StoredEvent

RECOGNISE_WINDOW = 32
"""How many of the newest events a retry looks through for its own token."""
MAX_KEY_CHARS = 256
CONTEXT_KEY = "idempotency_key"


def check_key(key: object) -> str | None:
    """Validate an explicit idempotency key (``None`` passes).

    Raises:
        InvalidInputError: Not a non-empty string of at most ``MAX_KEY_CHARS`` characters.
    """
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_KEY_CHARS:
        raise InvalidInputError(
            f"idempotency_key must be a non-empty string of at most {MAX_KEY_CHARS} "
            f"characters, got {key!r:.60}"
        )
    return key


def context_key(wrapper: Any) -> str | None:
    """The idempotency key a run context carries, if any.

    The context (``Runner.run(..., context=...)``) may be a mapping with an
    ``"idempotency_key"`` entry or an object with an ``idempotency_key`` attribute.
    """
    context = getattr(wrapper, "context", None) if wrapper is not None else None
    if context is None:
        return None
    value = context.get(CONTEXT_KEY) if isinstance(context, Mapping) else getattr(
        context, CONTEXT_KEY, None
    )
    return check_key(value) if value is not None else None


def derive_token(key: str, operation: str, detail: Any = None) -> str:
    """The event token for ``operation`` under ``key`` (same inputs, same token)."""
    text = canonical_json([key, operation, detail])
    return "k" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:39]


@dataclass(frozen=True)
class Recognised:
    """What a look through the newest events found: the head, and our event if stored."""

    head: Head
    stored: StoredEvent | None


async def recognise(log: EventLog, session_id: str, token: str) -> Recognised:
    """Look for the event carrying ``token`` among the newest ``RECOGNISE_WINDOW`` events.

    One consistent ``Query`` (keys, seq, hash and token only) also yields the head, so a
    fresh session pays nothing extra for it; when the token is found, one ``GetItem``
    (plus parts, if any) reads the event itself.

    Raises:
        CorruptEventError: The newest row, or the row carrying ``token``, has no whole
            seq or no hash (no writer makes one; a table writer can).
    """
    response = await log.db.call(
        "query",
        TableName=log.table_name,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :ev)",
        ExpressionAttributeValues={
            ":pk": {"S": session_pk(session_id)},
            ":ev": {"S": EVENT_PREFIX},
        },
        ExpressionAttributeNames={"#h": "hash", "#t": "token"},
        ProjectionExpression="sk, seq, #h, #t",
        ScanIndexForward=False,
        Limit=RECOGNISE_WINDOW,
        ConsistentRead=True,
    )
    rows = response.get("Items", [])
    head = Head.of_item(rows[0]) if rows else Head()
    for row in rows:
        if row.get("token", {}).get("S") == token:
            seq = Head.of_item(row).seq  # CorruptEventError if no writer made the row
            async for stored in log.iter_events(session_id, after_seq=seq - 1, upto_seq=seq):
                return Recognised(head, stored)
    return Recognised(head, None)


class _Keyed(Protocol):
    """What ``IdempotencyMixin`` needs of the session."""

    _log: EventLog
    _head: Head | None
    _ambiguous: set[str]
    _context_pops: Counter[str]

    def _sid(self, branch_id: str | None = None) -> str: ...
    def _forget(self) -> None: ...


class IdempotencyMixin:
    """The session's side of exactly-once retries: tokens it may have stored, recognition."""

    _head: Head | None

    def _pop_token(self: _Keyed, explicit: str | None, from_context: str | None) -> str | None:
        if explicit:
            return derive_token(explicit, "pop")
        if from_context:
            count = self._context_pops[from_context]
            last = derive_token(from_context, "pop", count)
            if count and last in self._ambiguous:
                return last  # this object's retry of a pop whose outcome is unknown
            self._context_pops[from_context] = count + 1
            return derive_token(from_context, "pop", count + 1)
        return None

    async def _recognised(self: _Keyed, token: str) -> StoredEvent | None:
        """Our event, if an earlier attempt with ``token`` may have stored it.

        Looked for when that attempt's outcome is unknown, or when this object knows no
        head yet (a retry from a new process); that read yields the head as well.
        """
        if token not in self._ambiguous and self._head is not None:
            return None
        found = await recognise(self._log, self._sid(), token)
        self._forget()
        if found.stored is not None:
            self._ambiguous.discard(token)
            return found.stored
        self._head = found.head
        return None

    async def _guarded(self: _Keyed, token: str | None, write: Any) -> Any:
        """Await ``write``; remember ``token`` when its outcome is ambiguous."""
        try:
            return await write
        except AmbiguousResultError:
            self._forget()
            if token:
                self._ambiguous.add(token)
            raise
