"""Conversation queries of ``DynamoDBSession``, with ``AdvancedSQLiteSession``'s results.

``get_conversation_turns``, ``find_turns_by_content``, ``get_conversation_by_turns`` and
``get_tool_usage`` fold a branch (the current one unless ``branch_id`` names another)
and hand its items to the pure functions of ``eventstore.turns``.

What each reads: ``get_conversation_by_turns`` and ``get_tool_usage`` need only the
items, so they read what ``get_items`` reads (the projected snapshot and the events
newer than it, newest first, stopping at a clear). ``get_conversation_turns`` and
``find_turns_by_content`` report when each user message was added, which the snapshot
does not keep, so they fold the branch's whole history (``eventstore.history``), as
``get_turn_usage`` and ``get_session_usage`` do (usage per turn depends on the order of
pops and usage events).

Example:
    ```python
    session = DynamoDBSession("chat", client, "agent_sessions")
    for turn in await session.find_turns_by_content("weather"):
        print(turn["turn"], turn["content"])
    print(await session.get_tool_usage())
    ```
"""

from __future__ import annotations

from typing import Any

from .branches import SessionLike
from .fold import NewestFirstFold
from .turns import conversation_by_turns, conversation_turns, find_turns, tool_usage


class QueryMixin:
    """``get_conversation_turns``, ``find_turns_by_content`` and the structure queries."""

    async def get_conversation_turns(
        self: SessionLike, branch_id: str | None = None
    ) -> list[dict[str, Any]]:
        """User turns of a branch: ``turn``, ``content`` (100 chars), ``full_content``, ..."""
        return conversation_turns((await self._history(branch_id)).entries)

    async def find_turns_by_content(
        self: SessionLike, search_term: str, branch_id: str | None = None
    ) -> list[dict[str, Any]]:
        """User turns whose text contains ``search_term`` (ASCII case-insensitive)."""
        return find_turns((await self._history(branch_id)).entries, search_term)

    async def get_conversation_by_turns(
        self: SessionLike, branch_id: str | None = None
    ) -> dict[int, list[dict[str, str | None]]]:
        """Items of a branch grouped by turn: ``{turn: [{"type", "tool_name"}, ...]}``."""
        return conversation_by_turns((await self._read(NewestFirstFold(), branch_id)).items)

    async def get_tool_usage(
        self: SessionLike, branch_id: str | None = None
    ) -> list[tuple[str, int, int]]:
        """``(tool name, calls, turn)`` per tool and turn of a branch."""
        return tool_usage((await self._read(NewestFirstFold(), branch_id)).items)
