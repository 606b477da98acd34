"""One adapter over boto3 and aiobotocore DynamoDB clients.

The log and the session are written once, against ``DynamoClient.call``; the adapter
awaits an aiobotocore client natively and runs a boto3 client in a worker thread, so the
event loop never blocks. It is also the single place where botocore errors become
``eventstore.errors`` exceptions.

Example:
    ```python
    import boto3
    from eventstore.client import wrap_client

    db = wrap_client(boto3.client("dynamodb"))
    response = await db.call("describe_table", TableName="agent_sessions")
    ```
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    NoRegionError,
    ReadTimeoutError,
)

from .errors import (
    AccessDeniedError,
    AmbiguousResultError,
    ConditionFailedError,
    ConvlogError,
    EndpointUnreachableError,
    InvalidClientError,
    StorageError,
    TableNotFoundError,
    TableSchemaError,
    ThrottledError,
)

_THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "Throttling",
    }
)
_ACCESS_CODES = frozenset(
    {
        "AccessDeniedException",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
    }
)
_SCHEMA_HINTS = (
    "key element does not match",
    "required keys",
    "Missing the key",
    "key schema",
    "Query key condition not supported",
    "Type mismatch for key",
    "does not match schema type",
)


class DynamoClient:
    """Adapter that gives boto3 and aiobotocore clients one awaitable interface.

    Example:
        ```python
        db = DynamoClient(aiobotocore_client)
        item = await db.call("get_item", TableName="t", Key=key)
        ```
    """

    def __init__(self, raw: Any, *, threads: int | None = None) -> None:
        if not hasattr(raw, "_make_api_call") or not hasattr(raw, "meta"):
            raise InvalidClientError(
                "dynamodb_client must be a boto3 or aiobotocore DynamoDB client, "
                f"got {type(raw).__name__}"
            )
        self.raw = raw
        self.is_async = asyncio.iscoroutinefunction(raw._make_api_call)
        # a boto3 client's calls run in worker threads: the loop's default pool
        # (about cpu + 4 threads), or a pool of their own when many go out at once
        self._pool = (
            ThreadPoolExecutor(threads, thread_name_prefix="convlog-db")
            if threads and not self.is_async else None
        )

    @property
    def endpoint(self) -> str:
        """The endpoint URL the client talks to."""
        return str(self.raw.meta.endpoint_url)

    async def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call one DynamoDB operation, translating every botocore error.

        Args:
            operation: The snake_case client method, e.g. ``"put_item"``.
            **kwargs: The operation's parameters.

        Returns:
            The response dictionary.
        """
        method = getattr(self.raw, operation)
        try:
            if self.is_async:
                result: dict[str, Any] = await method(**kwargs)
            elif self._pool is not None:
                loop = asyncio.get_running_loop()
                result = await loop.run_in_executor(self._pool, partial(method, **kwargs))
            else:
                result = await asyncio.to_thread(method, **kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate_error(exc, operation, self.endpoint, kwargs) from exc
        return result

    async def items(self, operation: str, **params: Any) -> AsyncIterator[dict[str, Any]]:
        """Yield every item of a paged ``query`` or ``scan``, following ``LastEvaluatedKey``.

        Args:
            operation: ``"query"`` or ``"scan"``.
            **params: The request parameters (without ``ExclusiveStartKey``).
        """
        page = dict(params)
        while True:
            response = await self.call(operation, **page)
            for item in response.get("Items", []):
                yield item
            start = response.get("LastEvaluatedKey")
            if start is None:
                return
            page["ExclusiveStartKey"] = start

    def call_sync(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        """Call one operation on a boto3 (synchronous) client, translating errors."""
        if self.is_async:
            raise TypeError("call_sync needs a boto3 client, not an aiobotocore one")
        try:
            result: dict[str, Any] = getattr(self.raw, operation)(**kwargs)
        except (ClientError, BotoCoreError) as exc:
            raise translate_error(exc, operation, self.endpoint, kwargs) from exc
        return result


def wrap_client(client: Any) -> DynamoClient:
    """Return ``client`` as a ``DynamoClient`` (wrapping it unless it already is one)."""
    return client if isinstance(client, DynamoClient) else DynamoClient(client)


def translate_error(
    exc: Exception, operation: str, endpoint: str, params: dict[str, Any] | None = None
) -> ConvlogError:
    """Turn a botocore exception into the matching ``eventstore.errors`` exception.

    Args:
        exc: The botocore exception.
        operation: The operation that failed.
        endpoint: The endpoint URL, for the message.
        params: The request parameters (only ``TableName`` is used, for the message).

    Returns:
        The typed error to raise (``raise translate_error(...) from exc``).
    """
    table = (params or {}).get("TableName")
    where = f"table {table!r}" if table else endpoint
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", ""))
        text = f"{operation} on {where}: {code}: {message}"
        if code == "ConditionalCheckFailedException":
            return ConditionFailedError(text, item=_as_item(exc.response.get("Item")))
        if code == "TransactionCanceledException":
            reasons = exc.response.get("CancellationReasons") or []
            if any(r.get("Code") == "ConditionalCheckFailed" for r in reasons):
                old = next((r.get("Item") for r in reasons if r.get("Item")), None)
                return ConditionFailedError(text, item=_as_item(old))
            if any(r.get("Code") in ("ThrottlingError",) for r in reasons):
                return ThrottledError(text, code=code)
        if code == "ResourceNotFoundException":
            return TableNotFoundError(
                f"{where} does not exist at {endpoint} (create it with "
                "create_table_if_not_exists or deploy template.yaml)",
                code=code,
            )
        if code in _THROTTLE_CODES:
            return ThrottledError(f"{text} (botocore's retries are exhausted)", code=code)
        if code in _ACCESS_CODES:
            return AccessDeniedError(f"credentials refused: {text}", code=code)
        if code == "ValidationException" and any(h in message for h in _SCHEMA_HINTS):
            return TableSchemaError(
                f"{where} does not have convlog's key schema (pk, sk): {message}", code=code
            )
        return StorageError(text, code=code)
    if isinstance(exc, NoCredentialsError):
        return AccessDeniedError(f"no AWS credentials found for {operation} on {where}")
    if isinstance(exc, NoRegionError):
        return StorageError("no AWS region configured (set AWS_DEFAULT_REGION or --region)")
    if isinstance(exc, ReadTimeoutError | ConnectionClosedError):
        return AmbiguousResultError(
            f"{operation} on {where}: the response was lost ({exc}); the request may "
            "have been applied"
        )
    if isinstance(exc, EndpointConnectionError | ConnectTimeoutError):
        return EndpointUnreachableError(f"endpoint {endpoint} did not answer: {exc}")
    return StorageError(f"{operation} on {where}: {exc}")


def _as_item(value: object) -> dict[str, Any] | None:
    """An item from an error response (``ALL_OLD``), if it holds one."""
    return value if isinstance(value, dict) else None
