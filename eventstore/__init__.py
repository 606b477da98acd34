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
    "ToolCache": "eventstore.toolcache",
    "cached_tool": "eventstore.toolcache",
    "list_sessions": "eventstore.sessions_index",
    "SessionInfo": "eventstore.sessions_index",
    "SessionPage": "eventstore.sessions_index",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from .errors import ConvlogError
    from .log import EventLog
    from .session import DynamoDBSession
    from .table import create_table_if_not_exists


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'eventstore' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value
