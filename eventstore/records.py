"""Encoding of events (and other large payloads) as DynamoDB items.

A payload is canonical JSON, compressed with zlib when that makes it smaller. When it is
still larger than one item can hold, it is split into chunks: the head item carries the
first chunk and ``parts``, and each further chunk lives in its own item under the same
partition (``<sk>#0001``, ...), written in the same transaction as the head.

Example:
    ```python
    from eventstore.records import encode_event, decode_event

    items = encode_event(event, prev_hash, digest, ttl=None)
    stored = decode_event(items[0], items[1:])
    ```
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptEventError, PayloadTooLargeError
from .events import Event, canonical_json, parse_event, payload_data, payload_digest
from .keys import event_sk, part_sk, session_pk

ITEM_LIMIT_BYTES = 400 * 1024
CHUNK_BYTES = 380_000
MAX_PAYLOAD_BYTES = 4_000_000
COMPRESS_ABOVE_BYTES = 1024

AttrMap = dict[str, Any]
Payload = tuple[str, list[bytes]]  # (encoding, chunks) as returned by encode_payload


@dataclass(frozen=True)
class StoredEvent:
    """An event as read from the table, with its chain links, expiry and payload digest.

    ``payload_sha256`` is the digest stored on the item (schema 2); ``None`` for a
    schema-1 event, whose hash covers the payload itself.
    """

    event: Event
    prev_hash: str
    hash: str
    ttl: int | None = None
    payload_sha256: str | None = field(default=None, compare=False)


def encode_payload(data: Any) -> tuple[str, list[bytes]]:
    """Encode ``data`` as JSON, compress it when that helps, and cut it into chunks.

    Returns:
        The encoding name (``"json"`` or ``"zlib"``) and the chunks.

    Raises:
        PayloadTooLargeError: Even compressed, the payload exceeds ``MAX_PAYLOAD_BYTES``.
    """
    raw = canonical_json(data).encode("utf-8")
    encoding, body = "json", raw
    if len(raw) > COMPRESS_ABOVE_BYTES:
        packed = zlib.compress(raw, 6)
        if len(packed) < len(raw):
            encoding, body = "zlib", packed
    if len(body) > MAX_PAYLOAD_BYTES:
        raise PayloadTooLargeError(
            f"payload is {len(raw):,} bytes ({len(body):,} stored); one write can carry "
            f"at most {MAX_PAYLOAD_BYTES:,} bytes after compression -- split it into "
            "several add_items calls"
        )
    chunks = [body[i : i + CHUNK_BYTES] for i in range(0, len(body), CHUNK_BYTES)] or [b""]
    return encoding, chunks


def decode_payload(encoding: str, chunks: Sequence[bytes]) -> Any:
    """Reassemble, decompress and parse a payload written by ``encode_payload``."""
    body = b"".join(chunks)
    if encoding == "zlib":
        body = zlib.decompress(body)
    elif encoding != "json":
        raise ValueError(f"unknown payload encoding {encoding!r}")
    return json.loads(body.decode("utf-8"))


def payload_attrs(encoding: str, chunks: Sequence[bytes]) -> AttrMap:
    """Attributes of the head item that describe a payload (its first chunk)."""
    attrs: AttrMap = {"enc": {"S": encoding}}
    if encoding == "json" and len(chunks) == 1:
        attrs["payload"] = {"S": chunks[0].decode("utf-8")}
    else:
        attrs["payload"] = {"B": chunks[0]}
    if len(chunks) > 1:
        attrs["parts"] = {"N": str(len(chunks))}
    return attrs


def chunk_of(item: AttrMap) -> bytes:
    """The payload chunk held by a head or part item."""
    value = item["payload"]
    return value["S"].encode("utf-8") if "S" in value else bytes(value["B"])


def part_items(pk: str, base_sk: str, chunks: Sequence[bytes], extra: AttrMap) -> list[AttrMap]:
    """Items for chunks 1..n-1 of a payload, each with ``extra`` attributes."""
    return [
        {"pk": {"S": pk}, "sk": {"S": part_sk(base_sk, n)}, "part": {"N": str(n)},
         "payload": {"B": chunk}, **extra}
        for n, chunk in enumerate(chunks[1:], start=1)
    ]


event_data = payload_data  # the payload part of an event (not stored as its own attribute)


def encode_event(
    event: Event, prev_hash: str, digest: str, *, ttl: int | None,
    payload: Payload | None = None, payload_sha256: str | None = None,
) -> list[AttrMap]:
    """Return the head item of an event followed by its part items.

    Args:
        event: The event.
        prev_hash: Hash of the previous event.
        digest: Hash of this event.
        ttl: Expiry (epoch seconds) written on every item, or ``None``.
        payload: ``encode_payload(event_data(event))`` if already computed (an append
            retried at another seq reuses it instead of compressing again).
        payload_sha256: The payload digest, if already computed (schema 2 stores it).
    """
    encoding, chunks = payload or encode_payload(event_data(event))
    pk, sk = session_pk(event.session_id), event_sk(event.seq)
    shared: AttrMap = {"seq": {"N": str(event.seq)}, "hash": {"S": digest}}
    if ttl is not None:
        shared["ttl"] = {"N": str(ttl)}
    head: AttrMap = {
        "pk": {"S": pk},
        "sk": {"S": sk},
        "type": {"S": event.type},
        "ts": {"S": event.ts},
        "token": {"S": event.token},
        "v": {"N": str(event.v)},
        "prev_hash": {"S": prev_hash},
        **shared,
        **payload_attrs(encoding, chunks),
    }
    if event.user_id is not None:
        head["user_id"] = {"S": event.user_id}
    if event.v >= 2:
        digest_of_payload = payload_sha256 or payload_digest(payload_data(event))
        head["payload_sha256"] = {"S": digest_of_payload}
    return [head, *part_items(pk, sk, chunks, shared)]


def decode_event(head: AttrMap, parts: Sequence[AttrMap] = ()) -> StoredEvent:
    """Rebuild a ``StoredEvent`` from its head item and its part items.

    Raises:
        CorruptEventError: The item is malformed, parts are missing, or the schema
            version is unknown.
    """
    where = f"{head.get('pk', {}).get('S', '?')} {head.get('sk', {}).get('S', '?')}"
    try:
        expected = int(head.get("parts", {}).get("N", "1"))
        ordered = sorted(parts, key=lambda p: int(p["part"]["N"]))
        if len(ordered) != expected - 1:
            raise CorruptEventError(
                f"event {where}: {len(ordered)} of {expected - 1} parts present"
            )
        data = decode_payload(head["enc"]["S"], [chunk_of(head), *map(chunk_of, ordered)])
        body = {
            "v": int(head["v"]["N"]),
            "session_id": head["pk"]["S"].split("#", 1)[1],
            "seq": int(head["seq"]["N"]),
            "ts": head["ts"]["S"],
            "user_id": head.get("user_id", {}).get("S"),
            "token": head["token"]["S"],
            "type": head["type"]["S"],
            **data,
        }
        ttl = int(head["ttl"]["N"]) if "ttl" in head else None
        event = parse_event(body)
        digest = head["payload_sha256"]["S"] if event.v >= 2 else None
        return StoredEvent(event, head["prev_hash"]["S"], head["hash"]["S"], ttl, digest)
    except CorruptEventError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, zlib.error) as exc:
        raise CorruptEventError(f"event {where} is malformed: {exc!r}") from exc


def item_size(item: AttrMap) -> int:
    """Approximate DynamoDB size of an item in bytes (names plus values)."""
    total = 0
    for name, value in item.items():
        total += len(name.encode("utf-8"))
        (kind, inner), = value.items()
        if kind == "S":
            total += len(inner.encode("utf-8"))
        elif kind == "B":
            total += len(inner)
        elif kind == "N":
            total += len(inner.lstrip("-").replace(".", "")) // 2 + 1
        else:
            total += len(json.dumps(inner))
    return total
