"""``DynamoDBSession``: an OpenAI Agents SDK session backed by an event log.

A drop-in for the single-item ``DynamoDBSession`` users know (same constructor, same
methods), but every ``add_items``, ``pop_item`` and ``clear_session`` is appended as an
immutable event: writes cost the size of the change, not of the history; concurrent
writers never lose each other's items; and a session is not capped at 400 KB.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections import Counter
from typing import TYPE_CHECKING, Any

from agents.memory import SessionABC, SessionSettings
from agents.memory.session_settings import coerce_session_settings, resolve_session_limit

from .appends import FAST_RETRIES, MAX_APPEND_ATTEMPTS, AppendMixin
from .branches import BranchMixin
from .compaction import CompactionMixin
from .errors import (
    ConcurrencyError,
    ConditionFailedError,
    InvalidInputError,
)
from .events import ItemPopped, ItemsAdded, SessionCleared, now_iso, validate_items
from .fold import NewestFirstFold, removal_ttl
from .history import MAIN_BRANCH, BranchId, check_base_session_id
from .idempotency import IdempotencyMixin, check_key, context_key, derive_token
from .keys import validate_session_id, validate_user_id
from .limits import DEFAULT_MAX_ADD_BYTES, DEFAULT_MAX_DEPTH, DEFAULT_MAX_ITEMS_PER_ADD, Limits
from .log import EventLog, Head
from .ownership import set_owner
from .payloads import PayloadStore
from .queries import QueryMixin
from .turns import current_turn
from .usage import UsageMixin
from .window import POP_WINDOW, Window, backoff, copy_json, event_of

if TYPE_CHECKING:
    from agents.items import TResponseInputItem
    from agents.run_context import RunContextWrapper


class DynamoDBSession(
    BranchMixin, UsageMixin, QueryMixin, CompactionMixin, IdempotencyMixin, AppendMixin,
    SessionABC,
):
    """Conversation history for one session id, stored as events in DynamoDB.

    Args:
        session_id: Identifies the conversation; the partition key (at most 1 KB).
        dynamodb_client: A boto3 client or an aiobotocore client for DynamoDB.
        table_name: A table created by ``create_table_if_not_exists`` or
            ``template.yaml``.
        ttl_seconds: When set, every event expires this many seconds after it is
            written, and reads ignore expired events even before DynamoDB deletes them.
        user_id: Owner of the session, recorded on each event and indexed by the
            projector (``list_sessions``). For a session ``<tenant>/...`` it must be a
            user ``<tenant>/...`` of the same tenant. The first write of each session
            object to a partition also records the user in the ``by_user`` index at once
            (no extra request), so ``convlog purge --user`` finds sessions not yet
            projected.
        session_settings: SDK session settings (default ``SessionSettings()``);
            ``limit`` is the default for ``get_items`` (an explicit ``limit`` wins).
        max_add_bytes: Cap on one ``add_items``: bytes of its JSON before compression
            (default 32 MiB, sized to the projector's 512 MB Lambda). Reads through this
            session inflate nothing beyond it.
        max_items_per_add: Cap on the items of one ``add_items`` (default 10,000).
        max_depth: Cap on how deeply an item nests (default and most: 255).
        s3_client: A boto3 or aiobotocore S3 client; with ``bucket_name``, payloads too
            large for a DynamoDB item are kept in S3 (up to ``max_add_bytes`` per add).
            Without them, one add stops at 4 MB after compression.
        bucket_name: A bucket made by ``create_bucket_if_not_exists`` or ``template.yaml``.

    Every method accepts ``wrapper=`` (the run context the SDK's runner passes to
    sessions that take it). ``add_items`` and ``pop_item`` take an ``idempotency_key``
    (or find one in the run context), so that their retry after
    ``AmbiguousResultError`` lands at most once. The session also has
    ``AdvancedSQLiteSession``'s branches, usage and queries (``eventstore.branches``,
    ``eventstore.usage``, ``eventstore.queries``; the write path is
    ``eventstore.appends``) and the SDK's atomic-compaction hooks
    (``eventstore.compaction``).

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
        max_add_bytes: int = DEFAULT_MAX_ADD_BYTES,
        max_items_per_add: int = DEFAULT_MAX_ITEMS_PER_ADD,
        max_depth: int = DEFAULT_MAX_DEPTH,
        s3_client: Any = None,
        bucket_name: str | None = None,
    ) -> None:
        self.session_id = check_base_session_id(validate_session_id(session_id))
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
        if user_id is not None:
            validate_user_id(user_id, self.session_id)
        self.user_id = user_id
        self.session_settings = (
            coerce_session_settings(session_settings)
            if session_settings is not None
            else SessionSettings()
        )
        self.limits = Limits(max_add_bytes, max_items_per_add, max_depth)
        if (s3_client is None) != (bucket_name is None):
            raise InvalidInputError("give both s3_client and bucket_name, or neither")
        payloads = PayloadStore(s3_client, bucket_name) if bucket_name is not None else None
        self._log = EventLog(dynamodb_client, table_name, max_payload_bytes=max_add_bytes,
                             payloads=payloads)
        self._head: Head | None = None
        self._window: Window | None = None
        self._turns: tuple[Head, int] | None = None
        self._branch: BranchId = MAIN_BRANCH
        self._ambiguous: set[str] = set()  # tokens whose write may have landed
        self._context_pops: Counter[str] = Counter()
        self._user_recorded: set[str] = set()  # partitions that hold our user record

    async def get_items(
        self,
        limit: int | None = None,
        branch_id: str | None = None,
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> list[TResponseInputItem]:
        """Return the conversation items, oldest first.

        Args:
            limit: Return only the newest ``limit`` items; ``None`` uses
                ``session_settings.limit``, and without that returns everything.
            branch_id: Read this branch instead of the current one.
            wrapper: The run context (accepted for the SDK's runner; unused here).

        Returns:
            The items in chronological order.

        Raises:
            InvalidInputError: ``limit`` is not an int or ``None`` (nothing is read).
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise InvalidInputError(f"limit must be an int or None, got {limit!r}")
        set_owner(self.session_id, self.user_id)  # tools of this run cache under it
        effective = resolve_session_limit(limit, self.session_settings)
        if effective is not None and effective <= 0:
            return []
        fold = NewestFirstFold(limit=effective)
        if branch_id is not None and branch_id != self._branch:
            other: list[TResponseInputItem] = (await self._read(fold, branch_id)).items
            return other
        result = await self._read(fold)
        if effective is None:
            newest = copy_json(result.items[-POP_WINDOW:])  # the caller may mutate them
            self._keep(Window(result.head or Head(), newest,
                              len(newest) == len(result.items), fold.expiring,
                              result.ttls[-POP_WINDOW:]))
            self._turns = None if fold.expiring else (
                result.head or Head(), current_turn(result.items))
        elif result.head is not None:
            self._head = result.head
        items: list[TResponseInputItem] = result.items
        return items

    async def add_items(
        self,
        items: list[TResponseInputItem],
        *,
        wrapper: RunContextWrapper[Any] | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Append ``items`` as one ``items_added`` event (nothing is written for ``[]``).

        Args:
            items: The items.
            wrapper: The run context; its ``idempotency_key`` (a mapping entry or an
                attribute of ``wrapper.context``) is used when no explicit key is given.
            idempotency_key: Retrying with the same key and items after
                ``AmbiguousResultError`` stores them at most once.

        Raises:
            InvalidItemError: An item is not JSON-serialisable, or nests deeper than
                ``max_depth`` (nothing written).
            PayloadTooLargeError: The items break ``max_add_bytes`` or
                ``max_items_per_add``, or do not fit in one write (nothing written).
            AmbiguousResultError: Every response was lost; the items may be stored.
                Retry with the same ``idempotency_key`` to make sure they are, once.
        """
        key = check_key(idempotency_key) or context_key(wrapper)
        if isinstance(items, list | tuple):
            self.limits.check_items(items)  # before validate_items walks them recursively
        checked = validate_items(items)
        set_owner(self.session_id, self.user_id)
        if not checked:
            return
        # too large: fail before any request
        body = self._log.body_for({"items": checked}, self.limits)
        token = derive_token(key, "add", checked) if key else uuid.uuid4().hex
        if key and await self._recognised(token) is not None:
            return
        sid = self._sid()
        # a payload too large for the table goes to S3 before the put that commits it
        object_key = await self._log.offload(sid, body, ttl_seconds=self.ttl_seconds)
        await self._guarded(token, self._append(
            lambda seq, ts: ItemsAdded(
                session_id=sid, seq=seq, ts=ts, user_id=self.user_id,
                token=token, items=checked,
            ),
            body, object_key,
        ))

    async def pop_item(
        self,
        *,
        wrapper: RunContextWrapper[Any] | None = None,
        idempotency_key: str | None = None,
    ) -> TResponseInputItem | None:
        """Remove and return the newest item, or ``None`` when the session is empty.

        Two concurrent pops never return the same item: the pop is an append at
        ``head + 1``. The loser learns the winner's event from the failed condition
        (``ALL_OLD``), applies it to the newest items it read, and pops the next one;
        after repeated losses it backs off and reads again.

        A session object remembers the newest items after its own reads and writes, so a
        pop usually costs one write: the conditional put proves the remembered state is
        current. An empty remembered state proves nothing, so ``None`` needs a read.

        With an ``idempotency_key`` (or one in the run context: the n-th pop of a run
        gets the n-th token), a retry after ``AmbiguousResultError`` returns the item
        the lost attempt removed instead of removing another.
        """
        token = self._pop_token(check_key(idempotency_key), context_key(wrapper))
        if token is not None:
            mine = await self._recognised(token)
            if mine is not None and mine.event.type == "item_popped":
                again: Any = copy.deepcopy(mine.event.item)
                popped_before: TResponseInputItem = again
                return popped_before
        popped: TResponseInputItem | None = await self._guarded(token, self._pop(token or ""))
        return popped

    async def _pop(self, token: str) -> TResponseInputItem | None:
        window = self._window if self._window and self._window.head == self._head else None
        self._window = None
        read_now = False  # whether the state was read during this call
        for attempt in range(MAX_APPEND_ATTEMPTS):
            if window is None:
                fold = NewestFirstFold(limit=POP_WINDOW)
                result = await self._read(fold)
                window = Window(result.head or Head(), result.items,
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
                session_id=self._sid(), seq=window.head.seq + 1, ts=now_iso(),
                user_id=self.user_id, token=token or uuid.uuid4().hex, item=item,
            )
            body = self._log.body_for({"item": item})
            key = await self._log.offload(self._sid(), body, ttl_seconds=self.ttl_seconds)
            try:
                ttl = removal_ttl(window.ttls[-1:], self._ttl(), pop=True)  # the TTL rule
                stored = await self._log.put(event, window.head.hash, ttl=ttl,
                                             payload=body, object_key=key,
                                             extra=self._user_record())
            except ConditionFailedError as exc:
                await backoff(attempt)
                winner = event_of(exc.item) if attempt < FAST_RETRIES else None
                if not (winner is not None and winner.event.seq == window.head.seq + 1
                        and window.advance(winner)):  # the winner's event is known: pop next
                    window = None
                continue
            self._user_recorded.add(self._sid())
            self._count_turns(stored)
            window.advance(stored)
            self._keep(window)
            popped: TResponseInputItem = item
            return popped
        raise ConcurrencyError(
            f"pop_item on session {self.session_id!r} lost {MAX_APPEND_ATTEMPTS} races"
        )

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
        """Clear the session: every branch, as ``AdvancedSQLiteSession`` does.

        Each branch gets a ``branch_deleted`` event (its id stays reserved, as in the
        SDK), then ``main`` a ``session_cleared`` event, and the session is back on
        ``main``; the history stays for audit (``convlog purge`` erases data). It costs
        one ``Query`` (the branch registry) and one write, plus three requests per
        branch; with ``ttl_seconds`` each removal first reads the expiries of the items
        it removes (the TTL rule).
        """
        token = uuid.uuid4().hex
        for branch_id, _ in await self._branch_ids():
            await self._end_branch(branch_id)
        if self._branch != MAIN_BRANCH:
            self._branch = MAIN_BRANCH
            self._forget()
        await self._put_removal(MAIN_BRANCH, lambda sid, seq, ts: SessionCleared(
            session_id=sid, seq=seq, ts=ts, user_id=self.user_id, token=token))

    async def close(self) -> None:
        """Release nothing: the client belongs to the caller, who closes it."""
        self._head = None
        self._window = None

    def _ttl(self) -> int | None:
        return int(time.time()) + self.ttl_seconds if self.ttl_seconds else None

    def __repr__(self) -> str:
        return f"DynamoDBSession(session_id={self.session_id!r}, table={self.table_name!r})"
