"""Unit tests of botocore error translation (no network: exceptions built by hand)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from eventstore.client import translate_error
from eventstore.errors import (
    AccessDeniedError,
    AmbiguousResultError,
    ConditionFailedError,
    ConvlogError,
    EndpointUnreachableError,
    StorageError,
    TableNotFoundError,
    TableSchemaError,
    ThrottledError,
)

URL = "http://127.0.0.1:1"


def client_error(code: str, message: str = "m", **extra: Any) -> ClientError:
    response: Any = {"Error": {"Code": code, "Message": message}, **extra}
    return ClientError(response, "PutItem")


@pytest.mark.parametrize(
    ("exc", "kind", "text"),
    [
        (client_error("ProvisionedThroughputExceededException"), ThrottledError, "exhausted"),
        (client_error("ThrottlingException"), ThrottledError, "ThrottlingException"),
        (client_error("ResourceNotFoundException"), TableNotFoundError, "'t' does not exist"),
        (client_error("AccessDeniedException"), AccessDeniedError, "credentials refused"),
        (client_error("ValidationException", "Query condition missed key schema element: x"),
         TableSchemaError, "key schema"),
        (client_error("ValidationException", "something else"), StorageError, "something"),
        (client_error("InternalServerError"), StorageError, "InternalServerError"),
        (ReadTimeoutError(endpoint_url=URL), AmbiguousResultError, "may have been applied"),
        (ConnectionClosedError(endpoint_url=URL), AmbiguousResultError, "response was lost"),
        (EndpointConnectionError(endpoint_url=URL), EndpointUnreachableError, "did not answer"),
        (NoCredentialsError(), AccessDeniedError, "no AWS credentials"),
    ],
)
def test_translation(exc: Exception, kind: type[ConvlogError], text: str) -> None:
    error = translate_error(exc, "put_item", URL, {"TableName": "t"})
    assert type(error) is kind
    assert text in str(error)


def test_conditional_failure_keeps_the_old_item() -> None:
    old = {"pk": {"S": "p"}, "token": {"S": "abc"}}
    error = translate_error(client_error("ConditionalCheckFailedException", Item=old),
                            "put_item", URL)
    assert isinstance(error, ConditionFailedError) and error.item == old


def test_cancelled_transaction() -> None:
    old = {"token": {"S": "abc"}}
    reasons = [{"Code": "None"}, {"Code": "ConditionalCheckFailed", "Item": old}]
    error = translate_error(
        client_error("TransactionCanceledException", CancellationReasons=reasons),
        "transact_write_items", URL)
    assert isinstance(error, ConditionFailedError) and error.item == old
    throttled = translate_error(
        client_error("TransactionCanceledException",
                     CancellationReasons=[{"Code": "ThrottlingError"}]),
        "transact_write_items", URL)
    assert isinstance(throttled, ThrottledError)
