"""What Lambda hands a stream handler, built locally: records, images, filter, context.

The local stream pump (``convlog.pump``) reads ``GetRecords`` output parsed by botocore;
Lambda's event source mapping delivers records in their wire shape instead (binary
values as base64 text, ``ApproximateCreationDateTime`` in epoch seconds, the
``eventSourceARN``) and drops those that do not match the mapping's filter pattern.
``lambda_record`` and ``matches_filter`` do the same, and ``LocalContext`` is the slice
of a Lambda context object a handler may read.

Example:
    ```python
    record = lambda_record(raw, stream_arn)
    if matches_filter(STREAM_FILTER_PATTERN, record):
        handler({"Records": [record]}, LocalContext())
    ```
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass
class LocalContext:
    """The slice of a Lambda context object the handler may read.

    Example:
        ```python
        handler({"Records": records}, LocalContext())
        ```
    """

    function_name: str = "convlog-projector-local"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:local:000000000000:function:convlog-projector"
    aws_request_id: str = "local"

    def get_remaining_time_in_millis(self) -> int:
        """Time left in the invocation (the pump does not time out)."""
        return 900_000


def matches_filter(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether a Lambda-shaped record matches an event-filtering pattern.

    Supports the rules convlog uses: exact values, ``prefix``, ``exists`` and
    ``anything-but`` (a value or a list of values), nested objects, lists as OR.

    Raises:
        ValueError: The pattern uses a rule this matcher does not know.
    """
    for key, sub in pattern.items():
        present = isinstance(record, Mapping) and key in record
        value = record.get(key) if present else None
        if isinstance(sub, Mapping):
            if not present or not isinstance(value, Mapping) or not matches_filter(sub, value):
                return False
        elif not any(_rule(rule, present, value) for rule in sub):
            return False
    return True


def _rule(rule: Any, present: bool, value: Any) -> bool:
    if not isinstance(rule, Mapping):
        return present and value == rule
    if "prefix" in rule:
        return present and isinstance(value, str) and value.startswith(rule["prefix"])
    if "exists" in rule:
        return present == bool(rule["exists"])
    if "anything-but" in rule:
        banned = rule["anything-but"]
        banned = banned if isinstance(banned, list) else [banned]
        return present and value not in banned
    raise ValueError(f"unsupported filter rule {dict(rule)!r}")


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """Convert a ``GetRecords`` record (botocore-parsed) to the shape Lambda delivers."""
    data = dict(record["dynamodb"])
    created = data.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        data["ApproximateCreationDateTime"] = round(created.timestamp(), 3)
    for image in ("Keys", "NewImage", "OldImage"):
        if image in data:
            data[image] = lambda_image(data[image])
    out = {k: v for k, v in record.items() if k != "dynamodb"}
    out["eventSourceARN"] = stream_arn
    out["dynamodb"] = data
    return out


def lambda_image(item: Mapping[str, Any]) -> dict[str, Any]:
    """A botocore-parsed item as a Lambda stream image (binary values base64-encoded)."""
    return {name: _wire_value(value) for name, value in item.items()}


def _wire_value(value: Mapping[str, Any]) -> dict[str, Any]:
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(bytes(inner)).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(bytes(v)).decode("ascii") for v in inner]}
    if kind == "M":
        return {"M": lambda_image(inner)}
    if kind == "L":
        return {"L": [_wire_value(v) for v in inner]}
    return {kind: inner}
