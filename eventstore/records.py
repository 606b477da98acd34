"""Encoding of events (and other large payloads) as DynamoDB items.

A payload is canonical JSON, compressed with zlib when that makes it smaller. A large
one goes to S3 (``eventstore.payloads``) when a bucket is configured: the head item then
carries the object key and the payload digest (``obj``, ``payload_sha256``). Without a
bucket, a payload still larger than one item can hold is split into chunks: the head
item carries the first chunk and ``parts``, and each further chunk lives in its own item
under the same partition (``<sk>#0001``, ...).

Example:
    ```python
    from eventstore.records import encode_event, decode_event

    items = encode_event(event, prev_hash, digest, ttl=None)
    stored = decode_event(items[0], items[1:])
    ```
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptEventError, PayloadStoreRequiredError, PayloadTooLargeError
from .events import Event, canonical_json, parse_event, payload_data, payload_digest
from .keys import event_sk, part_base, part_sk, session_pk
from .limits import Limits, bounded_inflate

ITEM_LIMIT_BYTES = 400 * 1024
CHUNK_BYTES = 380_000
MAX_PAYLOAD_BYTES = 4_000_000
COMPRESS_ABOVE_BYTES = 1024
OBJECT_ATTR = "obj"
DIGEST_ATTR = "payload_sha256"
# zlib level 1: on conversation JSON about 6x less CPU than level 6 for ~30% more bytes;
# the projector compresses the whole snapshot on every batch, writers compress big events
COMPRESS_LEVEL = 1

ERASED_ENCODING = "erased"  # ``enc`` of an event whose payload was erased
ROLES = ("user", "assistant", "system", "developer")  # what an erased item keeps
ERASED_TEXT = "[erased]"

AttrMap = dict[str, Any]


@dataclass(frozen=True)
class StoredEvent:
    """An event as read from the table, with its chain links, expiry and payload digest.

    ``payload_sha256`` is the digest stored on the item (schema 2); ``None`` for a
    schema-1 event, whose hash covers the payload itself. ``erased``: the payload was
    erased (``convlog purge --shared content``); the event holds placeholders and only
    the stored digest links it into the chain.
    """

    event: Event
    prev_hash: str
    hash: str
    ttl: int | None = None
    payload_sha256: str | None = field(default=None, compare=False)
    erased: bool = field(default=False, compare=False)


@dataclass(frozen=True)
class Body:
    """A payload ready to store: its stored bytes, encoding, digest and JSON size.

    ``digest`` is the sha256 (hex) of the canonical JSON: the payload digest the event
    item carries (``payload_sha256``) and S3 objects are addressed by.

    Example:
        ```python
        body = encode_body({"items": items})
        print(body.encoding, len(body.data), body.digest)
        ```
    """

    encoding: str
    data: bytes
    digest: str
    size: int

    def chunks(self) -> list[bytes]:
        """The stored bytes cut into chunks that fit in one item each."""
        data = self.data
        return [data[i : i + CHUNK_BYTES] for i in range(0, len(data), CHUNK_BYTES)] or [b""]


Payload = Body


def encode_body(
    data: Any, *, limits: Limits | None = None, inline_limit: int | None = MAX_PAYLOAD_BYTES,
    store_hint: str = "",
) -> Body:
    """Encode ``data`` as canonical JSON and compress it when that helps.

    Args:
        data: The JSON value.
        limits: Caps to check the canonical JSON against (``None``: none).
        inline_limit: Most stored bytes the table may hold for it (``None``: the payload
            goes to S3, any size within ``limits``).
        store_hint: Appended to the too-large message (how to lift the limit).

    Raises:
        PayloadTooLargeError: The JSON is larger than ``limits.max_add_bytes``, or the
            stored form is larger than ``inline_limit``.
    """
    raw = canonical_json(data).encode("utf-8")
    if limits is not None:
        limits.check_encoded(len(raw))
    encoding, body = "json", raw
    if len(raw) > COMPRESS_ABOVE_BYTES:
        packed = zlib.compress(raw, COMPRESS_LEVEL)
        if len(packed) < len(raw):
            encoding, body = "zlib", packed
    if inline_limit is not None and len(body) > inline_limit:
        raise PayloadTooLargeError(
            f"payload is {len(raw):,} bytes ({len(body):,} stored); one write can carry "
            f"at most {inline_limit:,} bytes after compression -- split it into "
            "several add_items calls" + store_hint
        )
    return Body(encoding, body, hashlib.sha256(raw).hexdigest(), len(raw))


def encode_payload(data: Any, *, limits: Limits | None = None) -> tuple[str, list[bytes]]:
    """Encode ``data`` for the table: ``(encoding, chunks)`` (see ``encode_body``)."""
    body = encode_body(data, limits=limits)
    return body.encoding, body.chunks()


def decode_payload(
    encoding: str, chunks: Sequence[bytes], max_bytes: int
) -> Any:
    """Reassemble, decompress (never beyond ``max_bytes``) and parse a payload.

    Raises:
        CorruptEventError: The payload is larger than ``max_bytes`` once inflated, or is
            not valid zlib data.
        ValueError: Unknown encoding, or the text is not JSON.
    """
    return json.loads(inflate_payload(encoding, chunks, max_bytes).decode("utf-8"))


def inflate_payload(encoding: str, chunks: Sequence[bytes], max_bytes: int) -> bytes:
    """Reassemble and decompress a payload into its canonical JSON (within ``max_bytes``).

    Raises:
        CorruptEventError: Larger than ``max_bytes`` once inflated, or bad zlib data.
        ValueError: Unknown encoding.
    """
    body = b"".join(chunks)
    if encoding == "zlib":
        return bounded_inflate(body, max_bytes)
    if encoding != "json":
        raise ValueError(f"unknown payload encoding {encoding!r}")
    if len(body) > max_bytes:
        raise CorruptEventError(f"payload is {len(body):,} bytes, above the cap {max_bytes:,}")
    return body


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
    payload: Body | None = None, payload_sha256: str | None = None,
    object_key: str | None = None,
    extra: AttrMap | None = None,
) -> list[AttrMap]:
    """Return the head item of an event followed by its part items.

    Args:
        event: The event.
        prev_hash: Hash of the previous event.
        digest: Hash of this event.
        ttl: Expiry (epoch seconds) written on every item, or ``None``.
        payload: ``encode_body(event_data(event))`` if already computed (an append
            retried at another seq reuses it instead of compressing again).
        payload_sha256: The payload digest, if already computed (schema 2 stores it).
        object_key: The S3 key the payload was stored under (``PayloadStore.put``): the
            head then carries the key and the payload digest instead of the payload.
        extra: More attributes for the head item, outside the hash (the user-index
            record that erasure reads, see ``DynamoDBSession``).
    """
    body = payload or encode_body(event_data(event), inline_limit=None if object_key else
                                  MAX_PAYLOAD_BYTES)
    pk, sk = session_pk(event.session_id), event_sk(event.seq)
    shared: AttrMap = {"seq": {"N": str(event.seq)}, "hash": {"S": digest}}
    if ttl is not None:
        shared["ttl"] = {"N": str(ttl)}
    chunks = [] if object_key else body.chunks()
    head: AttrMap = {
        "pk": {"S": pk},
        "sk": {"S": sk},
        "type": {"S": event.type},
        "ts": {"S": event.ts},
        "token": {"S": event.token},
        "v": {"N": str(event.v)},
        "prev_hash": {"S": prev_hash},
        **shared,
        **(object_attrs(body, object_key) if object_key else payload_attrs(body.encoding,
                                                                          chunks)),
    }
    if event.user_id is not None:
        head["user_id"] = {"S": event.user_id}
    if event.v >= 2:
        digest_of_payload = (
            payload_sha256 or (payload.digest if payload else payload_digest(payload_data(event)))
        )
        head["payload_sha256"] = {"S": digest_of_payload}
    head.update(extra or {})
    if len(chunks) > 1:
        head[DIGEST_ATTR] = {"S": body.digest}  # the parts are found (and checked) by it
    part_attrs = {k: v for k, v in shared.items() if k != "hash"}
    return [head, *part_items(pk, part_base(sk, body.digest), chunks, part_attrs)]


def select_parts(head: AttrMap, parts: Sequence[AttrMap]) -> list[AttrMap]:
    """The parts that belong to ``head``, in order, among the parts read next to it.

    Parts live under ``<sk>#<digest16>#NNNN`` (``keys.part_base``); parts of a commit
    that lost, or of an older snapshot, sit beside them and are left out. Items written
    before parts were addressed by digest (``<sk>#NNNN``) are still found.

    Raises:
        CorruptEventError: A part is missing.
    """
    expected = int(head.get("parts", {}).get("N", "1"))
    if expected <= 1:
        return []
    head_sk = head["sk"]["S"]
    by_sk = {p["sk"]["S"]: p for p in parts}
    digest = head.get(DIGEST_ATTR, {}).get("S")
    bases = ([part_base(head_sk, digest)] if digest else []) + [head_sk]
    found = 0
    for base in bases:
        chosen = [by_sk.get(part_sk(base, n)) for n in range(1, expected)]
        present = [p for p in chosen if p is not None]
        if len(present) == expected - 1:
            return present
        found = max(found, len(present))
    where = f"{head.get('pk', {}).get('S', '?')} {head_sk}"
    raise CorruptEventError(f"event {where}: {found} of {expected - 1} parts present")


def check_digest(head: AttrMap, raw: bytes) -> None:
    """Check reassembled parts against the digest on their head item.

    Raises:
        CorruptEventError: They differ.
    """
    digest = head.get(DIGEST_ATTR, {}).get("S")
    if digest is not None and hashlib.sha256(raw).hexdigest() != digest:
        raise CorruptEventError(
            f"{head.get('sk', {}).get('S', '?')}: its parts do not match its payload digest"
        )


def object_attrs(body: Body, key: str) -> AttrMap:
    """Attributes of a head item whose payload lives in S3 under ``key``."""
    return {"enc": {"S": body.encoding}, OBJECT_ATTR: {"S": key},
            DIGEST_ATTR: {"S": body.digest}, "psize": {"N": str(body.size)}}


def object_ref(head: AttrMap) -> tuple[str, str, str] | None:
    """``(key, digest, encoding)`` of a head item whose payload lives in S3, else ``None``."""
    if OBJECT_ATTR not in head:
        return None
    try:
        return head[OBJECT_ATTR]["S"], head[DIGEST_ATTR]["S"], head["enc"]["S"]
    except (KeyError, TypeError) as exc:
        raise CorruptEventError(f"payload reference is malformed: {exc!r}") from exc


def decode_event(
    head: AttrMap, parts: Sequence[AttrMap] = (), *, max_bytes: int | None = None,
    raw: bytes | None = None,
) -> StoredEvent:
    """Rebuild a ``StoredEvent`` from its head item and its part items.

    An event whose payload lives in S3 needs ``raw``: the canonical JSON fetched (and
    verified) by ``PayloadStore.get``.

    Raises:
        CorruptEventError: The item is malformed, parts are missing, or the schema
            version is unknown.
    """
    where = f"{head.get('pk', {}).get('S', '?')} {head.get('sk', {}).get('S', '?')}"
    try:
        ordered = select_parts(head, parts)
        erased = head.get("enc", {}).get("S") == ERASED_ENCODING
        if erased:  # convlog purge --shared content: placeholders, the digest links it
            raw = canonical_json(erased_payload(head)).encode("utf-8")
        elif object_ref(head) is not None:
            if raw is None:
                raise PayloadStoreRequiredError(
                    f"event {where} keeps its payload in S3; give an s3_client and "
                    "bucket_name to read it"
                )
        else:
            raw = inflate_payload(
                head["enc"]["S"], [chunk_of(head), *map(chunk_of, ordered)],
                max_bytes or Limits.from_env().max_add_bytes,
            )
            if ordered:
                check_digest(head, raw)
        data = json.loads(raw.decode("utf-8"))
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
        return StoredEvent(event, head["prev_hash"]["S"], head["hash"]["S"], ttl, digest,
                           erased)
    except (CorruptEventError, PayloadStoreRequiredError):
        raise
    except (KeyError, ValueError, TypeError, AttributeError, zlib.error) as exc:
        raise CorruptEventError(f"event {where} is malformed: {exc!r}") from exc


def erased_payload(head: AttrMap) -> dict[str, Any]:
    """The placeholder payload of an erased event (one item per erased item, same role)."""
    kind = head["type"]["S"]
    roles = [r["S"] for r in head.get("erased_roles", {}).get("L", [])]
    items = [{"role": r, "content": ERASED_TEXT} for r in roles]
    if kind == "items_added":
        return {"items": items}
    if kind == "items_replaced":
        replaced = head.get("erased_replaced", {}).get("N")
        return {"items": items, "replaced": None if replaced is None else int(replaced)}
    if kind == "usage_recorded":  # the turn stays, the counts go
        return {"turn": int(head.get("erased_turn", {}).get("N", "1")), "usage": {}}
    if kind == "item_popped":
        return {"item": {}}
    return {}


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
