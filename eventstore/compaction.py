"""The SDK's atomic-compaction hooks for ``DynamoDBSession``.

``OpenAIResponsesCompactionSession`` replaces history atomically only on stores that
implement ``_get_compaction_snapshot`` (automatic compaction of a suffix) and
``_atomic_replace_items`` (manual compaction of everything). Here both are ONE
conditional append of an ``items_replaced`` event: ``replaced`` newest items (or all)
give way to the compacted ones. The suffix replacement is written at the snapshot's
``head + 1``, so a write by anyone else after the snapshot makes it fail cleanly
(``False``, nothing written), as the hook's contract expects. Nothing is deleted:
``replay`` and ``verify`` still show every original item.

Example:
    ```python
    from agents.memory import OpenAIResponsesCompactionSession

    session = OpenAIResponsesCompactionSession(
        "chat", underlying_session=DynamoDBSession("chat", client, "agent_sessions")
    )
    ```
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from agents.memory.session import _CompactionSnapshot

from .branches import SessionLike
from .errors import ConditionFailedError
from .events import ItemsReplaced, now_iso, validate_items
from .fold import NewestFirstFold
from .log import Head

if TYPE_CHECKING:
    from agents.items import TResponseInputItem


class CompactionMixin:
    """``_get_compaction_snapshot`` and ``_atomic_replace_items`` (SDK hooks)."""

    async def _get_compaction_snapshot(
        self: SessionLike, limit: int, **_: Any
    ) -> _CompactionSnapshot | None:
        """The newest ``limit`` items and a replacement bound to the head they were read at.

        Args:
            limit: How many of the newest items the compaction may replace.
        """
        if limit <= 0:
            return None
        fold = NewestFirstFold(limit=limit)
        result = await self._read(fold)
        head = result.head or Head()
        items: list[TResponseInputItem] = result.items
        sid = self._sid()
        session = self

        async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
            replaced = len(items) - start
            if start < 0 or replaced <= 0:
                return False
            checked = validate_items(output)
            event = ItemsReplaced(
                session_id=sid, seq=head.seq + 1, ts=now_iso(), user_id=session.user_id,
                token=uuid.uuid4().hex, replaced=replaced, items=checked,
            )
            try:
                stored = await session._log.put(event, head.hash, ttl=session._ttl())
            except ConditionFailedError:
                session._forget()
                return False
            session._remember(stored)
            return True

        return _CompactionSnapshot(items=items, complete=len(items) < limit,
                                   replace_suffix=replace_suffix)

    async def _atomic_replace_items(self: SessionLike, items: list[TResponseInputItem]) -> bool:
        """Replace the whole history with ``items`` in one append (manual compaction)."""
        checked = validate_items(items)
        token = uuid.uuid4().hex
        await self._append(
            lambda seq, ts: ItemsReplaced(
                session_id=self._sid(), seq=seq, ts=ts, user_id=self.user_id, token=token,
                replaced=None, items=checked,
            )
        )
        return True
