"""convlog's event store: an event-sourced OpenAI Agents SDK session in DynamoDB.

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

from .errors import ConvlogError
from .log import EventLog
from .session import DynamoDBSession
from .table import create_table_if_not_exists

__all__ = [
    "ConvlogError",
    "DynamoDBSession",
    "EventLog",
    "create_table_if_not_exists",
]
