"""Who a cached tool result belongs to: the session (and user) of the run producing it.

``DynamoDBSession`` sets the owner whenever a run reads or writes it (``get_items``,
``add_items``); the Agents SDK runs tools in tasks that copy the context of the run, so
``cached_tool`` and ``ToolCache.put`` find the owner there and record it on the entry.
Erasure (``convlog purge``) finds and removes the entries of a session through it.
Code that runs tools outside a session can set the owner itself.

Example:
    ```python
    from eventstore.ownership import cache_owner, current_owner

    with cache_owner("acme/conv-1", "acme/alice"):
        await cache.put("get_weather", {"city": "Paris"}, "sunny")  # owned by acme/conv-1
    assert current_owner() is None
    ```
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class CacheOwner:
    """The session and user a cached result is recorded under.

    Example:
        ```python
        owner = current_owner()
        if owner is not None:
            print(owner.session_id, owner.user_id)
        ```
    """

    session_id: str
    user_id: str | None = None


_OWNER: ContextVar[CacheOwner | None] = ContextVar("convlog_cache_owner", default=None)


def current_owner() -> CacheOwner | None:
    """The owner set for the current run (``None`` outside one)."""
    return _OWNER.get()


def set_owner(session_id: str, user_id: str | None) -> None:
    """Make ``session_id`` (and ``user_id``) the owner for the rest of this context."""
    owner = _OWNER.get()
    if owner is None or owner.session_id != session_id or owner.user_id != user_id:
        _OWNER.set(CacheOwner(session_id, user_id))


@contextmanager
def cache_owner(session_id: str, user_id: str | None = None) -> Iterator[CacheOwner]:
    """Set the owner inside a ``with`` block and restore the previous one after it."""
    token = _OWNER.set(CacheOwner(session_id, user_id))
    try:
        yield CacheOwner(session_id, user_id)
    finally:
        _OWNER.reset(token)
