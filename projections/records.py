"""Stream records in, events out: what the projector accepts from a DynamoDB stream.

A Lambda DynamoDB-stream record carries the item image in DynamoDB JSON, with binary
values base64-encoded. ``classify`` turns a record into an ``EventRecord`` (an event
``INSERT``), ``None`` (anything else: view writes, event parts, ``MODIFY``, TTL
``REMOVE``), or raises ``CorruptEventError`` naming the session and seq (a malformed
image, an unknown schema version).

Example:
    ```python
    from projections.records import classify

    rec = classify(lambda_record)
    if rec is not None:
        print(rec.session_id, rec.seq, rec.stored.event.type if rec.stored else "parts")
    ```
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventstore.errors import CorruptEventError
from eventstore.keys import SESSION_PREFIX, is_event_sk, is_part_sk, seq_of, session_id_of
from eventstore.records import OBJECT_ATTR, AttrMap, StoredEvent, decode_event


@dataclass(frozen=True)
class EventRecord:
    """One event ``INSERT`` from the stream.

    Attributes:
        record_id: The stream sequence number (what ``batchItemFailures`` names).
        session_id: The session the event belongs to.
        seq: The event's sequence number in its session.
        stored: The decoded event, or ``None`` when its payload lives in other items
            or in S3 (the projector then reads it from the table).
        created_at: ``ApproximateCreationDateTime`` in epoch seconds, if present.

    Example:
        ```python
        rec = classify(record)
        if rec is not None and rec.stored is not None:
            print(rec.session_id, rec.seq, rec.stored.event.type)
        ```
    """

    record_id: str
    session_id: str
    seq: int
    stored: StoredEvent | None
    created_at: float | None = None


def record_location(record: Mapping[str, Any]) -> tuple[str, str]:
    """Best-effort ``(session_id, seq)`` of a record, for log lines (``"?"`` if unknown)."""
    keys = record.get("dynamodb", {}).get("Keys", {}) if isinstance(record, Mapping) else {}
    pk = _string(keys, "pk") or ""
    sk = _string(keys, "sk") or ""
    session = session_id_of(pk) if pk.startswith(SESSION_PREFIX) else "?"
    try:
        seq = str(seq_of(sk)) if is_event_sk(sk) else "?"
    except ValueError:
        seq = "?"
    return session, seq


def classify(record: Mapping[str, Any]) -> EventRecord | None:
    """Decode a Lambda-shaped stream record into an event, or ``None`` to ignore it.

    Raises:
        CorruptEventError: An event ``INSERT`` whose image cannot be decoded (malformed,
            unknown schema version, keys that disagree with the image).
    """
    if record.get("eventName") != "INSERT":
        return None
    data = record.get("dynamodb")
    if not isinstance(data, Mapping):
        raise CorruptEventError("stream record has no 'dynamodb' member")
    keys = data.get("Keys") or {}
    pk, sk = _string(keys, "pk"), _string(keys, "sk")
    if pk is None or sk is None or not pk.startswith(SESSION_PREFIX) or not is_event_sk(sk):
        return None
    if is_part_sk(sk):
        return None
    session_id, where = session_id_of(pk), f"session {session_id_of(pk)!r} {sk}"
    try:
        seq = seq_of(sk)
    except ValueError as exc:
        raise CorruptEventError(f"stream record of {where}: bad sort key") from exc
    image = data.get("NewImage")
    if not isinstance(image, Mapping):
        raise CorruptEventError(f"event INSERT of {where} has no NewImage")
    head = image_to_attrs(image, where)
    if head.get("pk") != {"S": pk} or head.get("sk") != {"S": sk}:
        raise CorruptEventError(f"event INSERT of {where}: image keys differ from Keys")
    parts = int(head.get("parts", {}).get("N", "1")) if _is_number(head.get("parts")) else 1
    if parts > 1 or OBJECT_ATTR in head:  # the payload is in other items, or in S3
        return EventRecord(_record_id(record), session_id, seq, None, _created_at(data))
    try:
        stored = decode_event(head)
    except CorruptEventError as exc:
        raise CorruptEventError(f"event INSERT of {where}: {exc}") from exc
    if stored.event.seq != seq:
        raise CorruptEventError(f"event INSERT of {where}: image seq {stored.event.seq}")
    return EventRecord(_record_id(record), session_id, seq, stored, _created_at(data))


def image_to_attrs(image: Mapping[str, Any], where: str = "item") -> AttrMap:
    """Convert a Lambda stream image (binary as base64 text) to a botocore-shaped item."""
    return {name: _attr(value, where) for name, value in image.items()}


def _attr(value: Any, where: str) -> Any:
    if not isinstance(value, Mapping) or len(value) != 1:
        raise CorruptEventError(f"{where}: malformed attribute value {value!r:.80}")
    ((kind, inner),) = value.items()
    try:
        if kind == "B":
            return {"B": inner if isinstance(inner, bytes) else base64.b64decode(inner)}
        if kind == "BS":
            return {"BS": [v if isinstance(v, bytes) else base64.b64decode(v) for v in inner]}
    except (binascii.Error, TypeError, ValueError) as exc:
        raise CorruptEventError(f"{where}: binary value is not base64") from exc
    if kind == "M":
        return {"M": image_to_attrs(inner, where)}
    if kind == "L":
        return {"L": [_attr(v, where) for v in inner]}
    return {kind: inner}


def _string(keys: Mapping[str, Any], name: str) -> str | None:
    value = keys.get(name)
    if isinstance(value, Mapping) and isinstance(value.get("S"), str):
        text: str = value["S"]
        return text
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, Mapping) and isinstance(value.get("N"), str) and value["N"].isdigit()


def _record_id(record: Mapping[str, Any]) -> str:
    return str(record.get("dynamodb", {}).get("SequenceNumber", ""))


def _created_at(data: Mapping[str, Any]) -> float | None:
    value = data.get("ApproximateCreationDateTime")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, datetime):
        return value.timestamp()
    return None
