"""Encoding of session snapshots (the projector writes them, ``get_items`` reads them).

A snapshot is the folded state after ``seq``: the live items with the seq that added
each and its expiry. It sits at ``sk = SNAPSHOT``; a large one keeps its payload in S3
or, without a bucket, in parts at ``SNAPSHOT#<digest16>#0001``... The parts (or the
object) are written first; the conditional put of ``SNAPSHOT`` (stored ``seq`` older)
is the one write that makes them visible -- no transaction.

A snapshot is bound to the chain: it names the ``hash`` of the event at ``seq``, and a
reader uses it only when the event it reads at ``seq`` carries that hash (a snapshot
copied from another session, or left ahead of a truncated log, proves nothing). A
snapshot without a hash (version 1) is never used. Decoding never raises anything
but ``CorruptEventError``, whatever the bytes, so a corrupt snapshot is ignored.

Example:
    ```python
    items = encode_snapshot("s1", Snapshot(7, entries), ttl=None)
    snapshot = decode_snapshot(items[0], items[1:])
    ```
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .errors import CorruptEventError
from .fold import Entry, Snapshot
from .keys import SNAPSHOT_SK, part_base, session_pk
from .limits import DEFAULT_MAX_STATE_BYTES
from .records import (
    DIGEST_ATTR,
    MAX_PAYLOAD_BYTES,
    AttrMap,
    Body,
    check_digest,
    chunk_of,
    encode_body,
    inflate_payload,
    object_attrs,
    object_ref,
    part_items,
    payload_attrs,
    select_parts,
)

SNAPSHOT_VERSION = 2


def snapshot_body(snapshot: Snapshot, *, inline_limit: int | None = MAX_PAYLOAD_BYTES) -> Body:
    """The payload of a snapshot, encoded (``inline_limit=None``: any size, for S3).

    Raises:
        PayloadTooLargeError: The stored form is larger than ``inline_limit``.
    """
    data = {"entries": [{"i": e.item, "s": e.seq, "t": e.ttl} for e in snapshot.entries]}
    hint = " (give the projector a payload bucket to snapshot larger states)"
    return encode_body(data, inline_limit=inline_limit, store_hint=hint)


def encode_snapshot(
    session_id: str, snapshot: Snapshot, *, ttl: int | None, body: Body | None = None,
    object_key: str | None = None,
) -> list[AttrMap]:
    """Return the head item and part items of a snapshot.

    Args:
        session_id: The session.
        snapshot: The state.
        ttl: Expiry of the view.
        body: ``snapshot_body(snapshot)`` if already computed.
        object_key: The S3 key ``body`` was stored under (no parts then).

    Raises:
        PayloadTooLargeError: The snapshot does not fit in the table.
    """
    body = body or snapshot_body(snapshot)
    encoding, chunks = body.encoding, [] if object_key else body.chunks()
    pk = session_pk(session_id)
    shared: AttrMap = {"seq": {"N": str(snapshot.seq)}}
    if ttl is not None:
        shared["ttl"] = {"N": str(ttl)}
    head: AttrMap = {
        "pk": {"S": pk},
        "sk": {"S": SNAPSHOT_SK},
        "v": {"N": str(SNAPSHOT_VERSION)},
        "count": {"N": str(len(snapshot.entries))},
        **shared,
        **(object_attrs(body, object_key) if object_key else payload_attrs(encoding, chunks)),
        DIGEST_ATTR: {"S": body.digest},
    }
    if snapshot.hash is not None:
        head["hash"] = {"S": snapshot.hash}
    return [head, *part_items(pk, part_base(SNAPSHOT_SK, body.digest), chunks, shared)]


def decode_snapshot(
    head: AttrMap, parts: Sequence[AttrMap] = (), *, raw: bytes | None = None
) -> Snapshot:
    """Rebuild a snapshot from its head and part items (``raw``: its fetched S3 payload).

    Parts live under ``SNAPSHOT#<digest16>#NNNN``, so parts of an older snapshot (not
    yet deleted) are left out, and the reassembled payload is checked against the
    digest. (Parts written before, under ``SNAPSHOT#NNNN``, must carry the head's seq.)

    Raises:
        CorruptEventError: Parts are missing or mismatched, or the payload is malformed.
    """
    try:
        seq = int(head["seq"]["N"])
        ordered = select_parts(head, parts)
        if DIGEST_ATTR not in head and any(int(p["seq"]["N"]) != seq for p in ordered):
            raise CorruptEventError(f"snapshot at seq {seq}: parts missing or mismatched")
        if object_ref(head) is not None:
            if raw is None:
                raise CorruptEventError(f"snapshot at seq {seq}: its S3 payload was not read")
            data = json.loads(raw.decode("utf-8"))
        else:
            chunks = [chunk_of(head)] + [chunk_of(p) for p in ordered]
            inflated = inflate_payload(head["enc"]["S"], chunks, DEFAULT_MAX_STATE_BYTES)
            if ordered:
                check_digest(head, inflated)
            data = json.loads(inflated.decode("utf-8"))
        entries = tuple(_entry(e) for e in data["entries"])
        ttl = int(head["ttl"]["N"]) if "ttl" in head else None
        digest = str(head["hash"]["S"]) if "hash" in head else None
        return Snapshot(seq, entries, ttl, digest)
    except CorruptEventError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, zlib.error,
            RecursionError) as exc:  # any codec reason: the bytes are not trusted
        raise CorruptEventError(f"snapshot item is malformed: {exc!r}") from exc


def _entry(data: Any) -> Entry:
    item, seq, ttl = data["i"], data["s"], data["t"]
    if not isinstance(item, dict) or type(seq) is not int or not (
        ttl is None or type(ttl) is int
    ):
        raise ValueError(f"snapshot entry has the wrong shape: {data!r:.80}")
    return Entry(item, seq, ttl)


class LazySnapshot:
    """The snapshot a newest-first read met, decoded only once an event proves it.

    Issue 10's rule: a snapshot stands for the events up to its ``seq`` only when the
    stored event at that seq carries the hash the snapshot names; otherwise (a forged
    or stale view, or no such event any more) the events are folded instead. The check
    uses the raw items, so a snapshot that turns out unproven is never decoded (nor its
    S3 object fetched). An unusable snapshot (corrupt, parts missing, object gone) and an
    expired one (its ``ttl`` is that of the newest event it folded) are ignored too.
    """

    def __init__(
        self, decode: Callable[[AttrMap, list[AttrMap]], Awaitable[Snapshot]], now: float
    ) -> None:
        self.decode = decode
        self.now = now
        self.head: AttrMap | None = None
        self.parts: list[AttrMap] = []
        self.failed = False
        self.seq_used: int | None = None

    def add(self, item: AttrMap, part: bool) -> None:
        """Keep a snapshot head or part item met by the read."""
        if part:
            self.parts.append(item)
        else:
            self.head = item

    def covers(self, seq: int) -> bool:
        """Whether a live, not yet rejected snapshot claims the event at ``seq``."""
        if self.head is None or self.failed:
            return False
        try:
            if "ttl" in self.head and int(self.head["ttl"]["N"]) <= self.now:
                self.failed = True
                return False
            return seq <= int(self.head["seq"]["N"])
        except (KeyError, ValueError, TypeError):
            self.failed = True
            return False

    async def proven_by(self, event_item: AttrMap) -> Snapshot | None:
        """The decoded snapshot if ``event_item`` (the first event it covers) proves it."""
        head, self.failed = self.head, True  # one chance: proven now, or never
        if head is None:
            return None
        try:
            if (event_item["seq"]["N"] != head["seq"]["N"]
                    or "hash" not in head or event_item["hash"]["S"] != head["hash"]["S"]):
                return None
            snapshot = await self.decode(head, self.parts)
        except (CorruptEventError, KeyError, ValueError, TypeError):
            return None
        self.seq_used = snapshot.seq
        return snapshot
