"""convlog's event store: an event-sourced OpenAI Agents SDK session in DynamoDB.

Public names are imported lazily, so that pure modules (``eventstore.fold``,
``eventstore.events``, ...) can be used without loading botocore.

Example:
    ```python
    import boto3
    from eventstore import DynamoDBSession, create_table_if_not_exists

    client = boto3.client("dynamodb")
    await create_table_if_not_exists(client, "agent_sessions")
    session = DynamoDBSession("user-123", client, "agent_sessions")
    await session.add_items([{"role": "user", "content": "Hello"}])
    ```
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "ConvlogError": "eventstore.errors",
    "DynamoDBSession": "eventstore.session",
    "EventLog": "eventstore.log",
    "create_table_if_not_exists": "eventstore.table",
    "create_bucket_if_not_exists": "eventstore.payloads",
    "ToolCache": "eventstore.toolcache",
    "cached_tool": "eventstore.toolcache",
    "cache_owner": "eventstore.ownership",
    "list_sessions": "eventstore.sessions_index",
    "SessionInfo": "eventstore.sessions_index",
    "SessionPage": "eventstore.sessions_index",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .errors import ConvlogError as ConvlogError
    from .log import EventLog as EventLog
    from .ownership import cache_owner as cache_owner
    from .payloads import create_bucket_if_not_exists as create_bucket_if_not_exists
    from .session import DynamoDBSession as DynamoDBSession
    from .sessions_index import SessionInfo as SessionInfo
    from .sessions_index import SessionPage as SessionPage
    from .sessions_index import list_sessions as list_sessions
    from .table import create_table_if_not_exists as create_table_if_not_exists
    from .toolcache import ToolCache as ToolCache
    from .toolcache import cached_tool as cached_tool


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
