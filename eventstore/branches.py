"""Conversation branches for ``DynamoDBSession``, as ``AdvancedSQLiteSession`` has them.

Same method names, arguments, return shapes and meaning. A branch is a partition of its
own whose first event points at its parent (``eventstore.history``); a small registry
item per branch (``BRANCH#<id>`` in the session's partition) reserves the id, as
``AdvancedSQLiteSession`` does, and lets ``list_branches`` find them. The current
branch is remembered by the session object (``main`` at first), as in the SDK.

Example:
    ```python
    session = DynamoDBSession("chat", client, "agent_sessions")
    branch = await session.create_branch_from_turn(2, "try-again")  # now on it
    await session.add_items([{"role": "user", "content": "Another idea"}])
    await session.switch_to_branch("main")
    print(await session.list_branches())
    ```
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from .errors import ConditionFailedError, InvalidInputError
from .events import GENESIS_HASH, BranchCreated, BranchDeleted, Event, now_iso
from .fold import NewestFirstFold
from .history import (
    MAIN_BRANCH,
    History,
    branch_session_id,
    check_branch_id,
    read_history,
)
from .keys import session_pk
from .log import EventLog, ReadResult
from .records import Payload, StoredEvent
from .turns import current_turn, is_user_message

REGISTRY_PREFIX = "BRANCH#"


class SessionLike(Protocol):
    """What the branch, usage, query and compaction methods need of the session."""

    session_id: str
    user_id: str | None
    _log: EventLog
    _branch: str

    def _sid(self, branch_id: str | None = None) -> str: ...
    def _ttl(self) -> int | None: ...
    def _forget(self) -> None: ...
    def _remember(self, stored: StoredEvent) -> None: ...
    async def _append(
        self, build: Callable[[int, str], Event], payload: Payload | None = None
    ) -> StoredEvent: ...
    async def _read(
        self, fold: NewestFirstFold, branch_id: str | None = None
    ) -> ReadResult: ...
    async def _history(self, branch_id: str | None = None) -> History: ...
    async def _branch_ids(self) -> list[tuple[str, str]]: ...
    async def _end_branch(self, branch_id: str) -> None: ...
    async def _put_removal(
        self, branch_id: str, build: Callable[[str, int, str], Event]
    ) -> StoredEvent: ...
    async def list_branches(self) -> list[dict[str, Any]]:  # noqa: D102
        ...
    async def switch_to_branch(self, branch_id: str) -> None:  # noqa: D102
        ...
    async def create_branch_from_turn(  # noqa: D102
        self, turn_number: int, branch_name: str | None = None
    ) -> str: ...
    async def find_turns_by_content(  # noqa: D102
        self, search_term: str, branch_id: str | None = None
    ) -> list[dict[str, Any]]: ...


class BranchMixin:
    """``create_branch_from_turn``, ``switch_to_branch``, ``delete_branch``, ..."""

    @property
    def _current_branch_id(self: SessionLike) -> str:
        """The current branch (``AdvancedSQLiteSession``'s attribute of that name)."""
        return self._branch

    async def _history(self: SessionLike, branch_id: str | None = None) -> History:
        """The full history of a branch (default: the current one)."""
        return await read_history(self._log, self._sid(branch_id))

    async def _branch_ids(self: SessionLike) -> list[tuple[str, str]]:
        """``(branch id, created)`` of every live registered branch (``main`` excluded)."""
        found: list[tuple[str, str]] = []
        async for item in self._log.db.items(
            "query",
            TableName=self._log.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :b)",
            ExpressionAttributeValues={
                ":pk": {"S": session_pk(self.session_id)},
                ":b": {"S": REGISTRY_PREFIX},
            },
            ConsistentRead=True,
        ):
            branch_id = item.get("branch_id", {}).get("S")
            created = item.get("created", {}).get("S")
            if branch_id != item["sk"]["S"][len(REGISTRY_PREFIX):] or not isinstance(
                    created, str):
                continue  # no writer makes it (a table writer can): not a branch
            if not item.get("deleted", {}).get("BOOL", False):
                found.append((branch_id, created))
        return found

    async def create_branch_from_turn(
        self: SessionLike, turn_number: int, branch_name: str | None = None
    ) -> str:
        """Create a branch that starts before user turn ``turn_number``, and switch to it.

        Args:
            turn_number: The turn (user message) of the current branch to branch from;
                the new branch holds the items before it.
            branch_name: The new branch's id (never used before in this session);
                ``branch_from_turn_<n>_<time>`` when ``None``.

        Returns:
            The id of the new branch.

        Raises:
            InvalidInputError: (a ``ValueError``) the turn has no user message, or the
                name is blank or already used.
        """
        if branch_name is not None:
            check_branch_id(branch_name)
            if branch_name == MAIN_BRANCH:
                raise InvalidInputError(
                    f"Branch ID '{branch_name}' has already been used. Choose a new branch ID."
                )
        source = self._branch
        history = await self._history()
        users = [i for i, e in enumerate(history.entries) if is_user_message(e.item)]
        if not isinstance(turn_number, int) or not 1 <= turn_number <= len(users):
            raise InvalidInputError(
                f"Turn {turn_number} does not contain a user message in branch '{source}'"
            )
        keep = users[turn_number - 1]
        branch_id = await _reserve(self, branch_name, turn_number)
        event = BranchCreated(
            session_id=branch_session_id(self.session_id, branch_id), seq=1, ts=now_iso(),
            user_id=self.user_id, token=uuid.uuid4().hex, branch_id=branch_id,
            parent_session=self._sid(source), parent_seq=history.head.seq,
            parent_hash=history.head.hash, keep=keep, from_turn=turn_number,
        )
        await self._log.put(event, GENESIS_HASH, ttl=self._ttl())
        self._branch = branch_id
        self._forget()
        return branch_id

    async def create_branch_from_content(
        self: SessionLike, search_term: str, branch_name: str | None = None
    ) -> str:
        """Create a branch from the first user turn containing ``search_term``.

        Raises:
            InvalidInputError: (a ``ValueError``) no user turn matches, or a bad name.
        """
        matches = await self.find_turns_by_content(search_term)
        if not matches:
            raise InvalidInputError(f"No user turns found containing '{search_term}'")
        return await self.create_branch_from_turn(matches[0]["turn"], branch_name)

    async def switch_to_branch(self: SessionLike, branch_id: str) -> None:
        """Make ``branch_id`` the current branch (reads and writes go to it).

        Raises:
            InvalidInputError: (a ``ValueError``) the branch does not exist.
        """
        check_branch_id(branch_id, "Branch ID")
        if branch_id != MAIN_BRANCH and branch_id not in dict(await self._branch_ids()):
            raise InvalidInputError(f"Branch '{branch_id}' does not exist")
        if branch_id != self._branch:
            self._branch = branch_id
            self._forget()

    async def delete_branch(self: SessionLike, branch_id: str, force: bool = False) -> None:
        """Delete a branch: its items are gone from reads; its events stay for audit.

        Args:
            branch_id: The branch (never ``main``); its id stays reserved.
            force: Allow deleting the current branch (the session switches to ``main``).

        Raises:
            InvalidInputError: (a ``ValueError``) ``main``, unknown, or current without
                ``force``.
        """
        check_branch_id(branch_id, "Branch ID")
        if branch_id == MAIN_BRANCH:
            raise InvalidInputError("Cannot delete the 'main' branch")
        if branch_id == self._branch and not force:
            raise InvalidInputError(
                f"Cannot delete current branch '{branch_id}'. Use force=True or switch "
                "branches first"
            )
        if branch_id not in dict(await self._branch_ids()):
            raise InvalidInputError(f"Branch '{branch_id}' does not exist")
        if branch_id == self._branch:
            await self.switch_to_branch(MAIN_BRANCH)
        await self._end_branch(branch_id)

    async def _end_branch(self: SessionLike, branch_id: str) -> None:
        """Append ``branch_deleted`` to a branch, then mark its registry item deleted."""
        token = uuid.uuid4().hex
        await self._put_removal(branch_id, lambda sid, seq, ts: BranchDeleted(
            session_id=sid, seq=seq, ts=ts, user_id=self.user_id, token=token,
            branch_id=branch_id))
        await self._log.db.call(
            "update_item",
            TableName=self._log.table_name,
            Key={"pk": {"S": session_pk(self.session_id)},
                 "sk": {"S": REGISTRY_PREFIX + branch_id}},
            UpdateExpression="SET deleted = :t",
            ExpressionAttributeValues={":t": {"BOOL": True}},
        )

    async def list_branches(self: SessionLike) -> list[dict[str, Any]]:
        """Every branch with items: id, message count, user turns, current, created.

        Returns:
            Dicts with ``branch_id``, ``message_count``, ``user_turns``, ``is_current``
            and ``created_at``, oldest branch first.
        """
        branches: list[dict[str, Any]] = []
        for branch_id, created in [(MAIN_BRANCH, ""), *await self._branch_ids()]:
            history = await self._history(branch_id)
            if not history.entries:
                continue
            branches.append({
                "branch_id": branch_id,
                "message_count": len(history.entries),
                "user_turns": current_turn(history.items),
                "is_current": branch_id == self._branch,
                "created_at": created or history.created,
            })
        return branches


async def _reserve(session: SessionLike, name: str | None, turn_number: int) -> str:
    """Write the registry item of a new branch id (conditional: ids are never reused)."""
    base = name or f"branch_from_turn_{turn_number}_{int(time.time())}"
    for suffix in range(1, 1000):
        branch_id = base if suffix == 1 else f"{base}_{suffix}"
        try:
            await session._log.db.call(
                "put_item",
                TableName=session._log.table_name,
                Item={
                    "pk": {"S": session_pk(session.session_id)},
                    "sk": {"S": REGISTRY_PREFIX + branch_id},
                    "branch_id": {"S": branch_id},
                    "created": {"S": now_iso()},
                    "from_turn": {"N": str(turn_number)},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )
            return branch_id
        except ConditionFailedError as exc:
            if name is not None:
                raise InvalidInputError(
                    f"Branch ID '{name}' has already been used. Choose a new branch ID."
                ) from exc
    raise InvalidInputError(f"no free branch id from {base!r}")

