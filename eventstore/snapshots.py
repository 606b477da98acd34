"""Encoding of session snapshots (the projector writes them, ``get_items`` reads them).

A snapshot is the folded state after ``seq``: the live items with the seq that added
each and its expiry. Version 3 (written now) sits at ``sk = SNAPSHOT`` with its newest
entries (the *tail*) inline and a summary of its sealed chunks (``eventstore.chunks``):
epoch, number of chunks and of entries, the chain value over their digests, the latest
expiry among them. The chunks are written first; the conditional put of ``SNAPSHOT``
(stored ``seq`` older) is the one write that makes them visible -- no transaction.
Version 2 (one body, in S3 or in parts at ``SNAPSHOT#<digest16>#0001``...) is still read.

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

import hashlib
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from .chunks import (
    GENESIS_CHAIN,
    Rows,
    chunk_place,
    chunk_prev,
    decode_rows,
    encode_chunk,
    entries_of,
    link,
    parse,
    rows_of,
    seal,
)
from .errors import CorruptEventError
from .fold import Entry, Sealed, Snapshot
from .keys import SNAPSHOT_SK, session_pk
from .limits import DEFAULT_MAX_STATE_BYTES
from .records import (
    DIGEST_ATTR,
    AttrMap,
    Body,
    check_digest,
    chunk_of,
    encode_body,
    inflate_payload,
    object_ref,
    payload_attrs,
    select_parts,
)

SNAPSHOT_VERSION = 3


def tail_body(snapshot: Snapshot) -> Body:
    """The inline body of a head: its tail as ``[[item, seq, ttl], ...]``."""
    return encode_body([[e.item, e.seq, e.ttl] for e in snapshot.entries], inline_limit=None)


def encode_head(
    session_id: str, snapshot: Snapshot, *, ttl: int | None, body: Body | None = None
) -> AttrMap:
    """The ``SNAPSHOT`` item of a sealed state (``snapshot.entries`` is its tail)."""
    body = body or tail_body(snapshot)
    head: AttrMap = {
        "pk": {"S": session_pk(session_id)},
        "sk": {"S": SNAPSHOT_SK},
        "v": {"N": str(SNAPSHOT_VERSION)},
        "seq": {"N": str(snapshot.seq)},
        "count": {"N": str(snapshot.count)},
        **payload_attrs(body.encoding, [body.data]),
        DIGEST_ATTR: {"S": body.digest},
    }
    if ttl is not None:
        head["ttl"] = {"N": str(ttl)}
    if snapshot.hash is not None:
        head["hash"] = {"S": snapshot.hash}
    sealed = snapshot.sealed
    if sealed is not None and sealed.chunks:
        head.update({"epoch": {"N": str(sealed.epoch)}, "chunks": {"N": str(sealed.chunks)},
                     "sealed": {"N": str(sealed.count)}, "chain": {"S": sealed.chain}})
        if sealed.ttl is not None:
            head["sttl"] = {"N": str(sealed.ttl)}
    return head


def encode_snapshot(session_id: str, snapshot: Snapshot, *, ttl: int | None) -> list[AttrMap]:
    """Return the head item and the items of every chunk of a whole state.

    The chunks start an epoch at ``snapshot.seq``; write them before the head.
    """
    state, chunks = seal(Snapshot(snapshot.seq, snapshot.entries, snapshot.ttl, snapshot.hash))
    items = [encode_head(session_id, state, ttl=ttl)]
    for chunk in chunks:
        items.extend(encode_chunk(session_id, chunk))
    return items


def head_rows(head: AttrMap) -> Rows:
    """The tail of a version 3 head as ``[item, seq, ttl]`` rows (digest checked).

    Raises:
        CorruptEventError: Malformed.
    """
    try:
        if "parts" in head or object_ref(head) is not None:
            raise CorruptEventError("snapshot tail: a version 3 head holds its tail inline")
        raw = inflate_payload(head["enc"]["S"], [chunk_of(head)], DEFAULT_MAX_STATE_BYTES)
        if hashlib.sha256(raw).hexdigest() != head[DIGEST_ATTR]["S"]:
            raise CorruptEventError("snapshot tail: not what its digest says")
        return rows_of(parse(raw))
    except CorruptEventError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, zlib.error,
            RecursionError) as exc:
        raise CorruptEventError(f"snapshot item is malformed: {exc!r}") from exc


def sealed_of(head: AttrMap) -> Sealed | None:
    """The sealed-chunk summary of a version 3 head (``None``: no chunks).

    Raises:
        CorruptEventError: Malformed.
    """
    try:
        if "chunks" not in head:
            return None
        ttl = int(head["sttl"]["N"]) if "sttl" in head else None
        sealed = Sealed(int(head["epoch"]["N"]), int(head["chunks"]["N"]),
                        int(head["sealed"]["N"]), str(head["chain"]["S"]), ttl)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptEventError(f"snapshot item is malformed: {exc!r}") from exc
    if sealed.chunks <= 0 or sealed.count < 0:
        raise CorruptEventError("snapshot item names no chunks")
    return sealed


def is_chunked(head: AttrMap) -> bool:
    """Whether a head is version 3 (tail inline, older entries in chunks)."""
    return bool(head.get("v", {}).get("N") == str(SNAPSHOT_VERSION))


def decode_head(head: AttrMap) -> Snapshot:
    """The state a head holds by itself: a version 3 tail with its sealed summary.

    Raises:
        CorruptEventError: Malformed, or a version 2 head whose body is elsewhere.
    """
    if not is_chunked(head):
        return decode_snapshot(head)
    rows = head_rows(head)
    return _state(head, entries_of(rows), sealed_of(head))


def _state(head: AttrMap, entries: tuple[Entry, ...], sealed: Sealed | None) -> Snapshot:
    try:
        ttl = int(head["ttl"]["N"]) if "ttl" in head else None
        digest = str(head["hash"]["S"]) if "hash" in head else None
        return Snapshot(int(head["seq"]["N"]), entries, ttl, digest, sealed)
    except (KeyError, ValueError, TypeError) as exc:
        raise CorruptEventError(f"snapshot item is malformed: {exc!r}") from exc


def chain_rows(
    sealed: Sealed, items: Sequence[AttrMap], fetched: Mapping[str, bytes] | None = None
) -> Rows:
    """Every sealed entry, oldest first, from the chunk items of ``sealed.epoch``.

    The chain is checked from ``GENESIS_CHAIN`` to the head's value. ``fetched``: the
    canonical JSON of chunks kept in S3, by sort key.

    Raises:
        CorruptEventError: A chunk is missing, corrupt or out of the chain.
    """
    chunks: dict[int, AttrMap] = {}
    parts: list[AttrMap] = []
    for item in items:
        place = chunk_place(item["sk"]["S"])
        if place is None:
            parts.append(item)
        elif place[0] == sealed.epoch:
            chunks[place[1]] = item
    rows: Rows = []
    chain = GENESIS_CHAIN
    for index in range(sealed.chunks):
        chunk = chunks.get(index)
        if chunk is None:
            raise CorruptEventError(f"snapshot chunk {index} of {sealed.chunks} is missing")
        if chunk_prev(chunk) != chain:
            raise CorruptEventError(f"snapshot chunk {index} is out of the chain")
        raw = (fetched or {}).get(chunk["sk"]["S"])
        if raw is None and object_ref(chunk) is not None:
            raise CorruptEventError(f"snapshot chunk {index}: its S3 payload was not read")
        found, digest = decode_rows(chunk, parts, raw=raw)
        rows.extend(found)
        chain = link(chain, digest)
    if chain != sealed.chain:
        raise CorruptEventError("snapshot chunks do not end the chain the head names")
    return rows


def decode_snapshot(
    head: AttrMap, parts: Sequence[AttrMap] = (), *, raw: bytes | None = None,
    fetched: Mapping[str, bytes] | None = None,
) -> Snapshot:
    """Rebuild a whole snapshot from its head and its other items (parts or chunks).

    Version 3: the chunks among ``parts`` (``fetched``: the S3 bodies of chunks kept
    there, by sort key) and the inline tail. Version 2: parts live under
    ``SNAPSHOT#<digest16>#NNNN``, so parts of an older snapshot (not yet deleted) are
    left out, and the reassembled payload is checked against the digest; ``raw`` is its
    fetched S3 payload. (Parts written before, under ``SNAPSHOT#NNNN``, must carry the
    head's seq.)

    Raises:
        CorruptEventError: Parts are missing or mismatched, or the payload is malformed.
    """
    if is_chunked(head):
        sealed = sealed_of(head)
        tail = head_rows(head)
        rows = (chain_rows(sealed, parts, fetched) if sealed else []) + tail
        return _state(head, entries_of(rows), None)
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
            pieces = [chunk_of(head)] + [chunk_of(p) for p in ordered]
            inflated = inflate_payload(head["enc"]["S"], pieces, DEFAULT_MAX_STATE_BYTES)
            if ordered:
                check_digest(head, inflated)
            data = json.loads(inflated.decode("utf-8"))
        entries = tuple(_entry(e) for e in data["entries"])
        return _state(head, entries, None)
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
