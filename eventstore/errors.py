"""The one error hierarchy of convlog.

Every failure the library reports is a ``ConvlogError``. botocore's ``ClientError`` and
connection errors are translated at the client adapter (``eventstore.client``) and never
reach the caller untranslated; the original exception stays available as ``__cause__``.

Example:
    ```python
    from eventstore.errors import ConvlogError, PayloadTooLargeError

    try:
        await session.add_items(items)
    except PayloadTooLargeError as exc:
        print("split the turn:", exc)
    except ConvlogError as exc:
        print("storage problem:", exc)
    ```
"""

from __future__ import annotations

from typing import Any


class ConvlogError(Exception):
    """Base class of every error raised by convlog."""


class InvalidInputError(ConvlogError, ValueError):
    """An argument was rejected before anything was written."""


class InvalidSessionIdError(InvalidInputError):
    """The session id is empty, not a string, or longer than allowed."""


class InvalidUserIdError(InvalidInputError):
    """The user id is empty, too long for the index, or of another tenant than the session."""


class InvalidItemError(InvalidInputError):
    """An item is not a JSON object that can be stored and read back unchanged."""


class InvalidClientError(InvalidInputError, TypeError):
    """The object given as ``dynamodb_client`` is not a boto3 or aiobotocore client."""


class PayloadTooLargeError(InvalidInputError):
    """An add breaks a cap, or (without a payload bucket) does not fit in the table."""


class PayloadStoreRequiredError(InvalidInputError):
    """A payload lives in S3 (or is too large for the table) and no bucket was given."""


class StorageError(ConvlogError):
    """DynamoDB refused or failed a request (the botocore error is the ``__cause__``)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class TableNotFoundError(StorageError):
    """The table does not exist (or is not visible to these credentials)."""


class TableSchemaError(StorageError):
    """The table exists but does not have convlog's keys and index."""


class EndpointUnreachableError(StorageError):
    """The DynamoDB endpoint did not answer (connection refused, DNS, timeout)."""


class AccessDeniedError(StorageError):
    """The credentials were refused or lack a permission."""


class ThrottledError(StorageError):
    """DynamoDB kept throttling after botocore's retry mode gave up."""


class ConditionFailedError(StorageError):
    """A conditional write found the item already there (``item`` holds it, if returned)."""

    def __init__(self, message: str, *, item: dict[str, Any] | None = None) -> None:
        super().__init__(message, code="ConditionalCheckFailedException")
        self.item = item


class AmbiguousResultError(StorageError):
    """The request may or may not have been applied (the response was lost)."""


class ConcurrencyError(StorageError):
    """An append lost the race for the next sequence number too many times."""


class CorruptEventError(ConvlogError):
    """A stored event cannot be decoded (malformed image or unknown schema version)."""


class EventKeyError(CorruptEventError, ValueError):
    """A sort key under ``EVENT#`` that names no seq (no writer makes one; a table writer can)."""


class PayloadMissingError(CorruptEventError):
    """An event or snapshot points to an S3 object that is not there (erased or removed)."""


class OptionalDependencyError(ConvlogError, ImportError):
    """An optional extra is needed; the message names the ``pip install`` to run."""


class StreamPumpError(ConvlogError):
    """The local stream pump cannot go on (no stream, or a record failed too often)."""
