"""Sealed chunks of a snapshot: the older entries, in items the projector never rewrites.

A snapshot (``eventstore.snapshots``) keeps its newest entries, the *tail*, inline in
the ``SNAPSHOT`` item; once the tail passes ``TAIL_ENTRIES`` entries (or ``TAIL_BYTES``
of JSON), ``seal`` moves its oldest entries into chunks of ``CHUNK_ENTRIES`` and the
tail keeps the newest. A chunk never changes once written: the projector's work per
batch follows the batch (the tail, at most one or two new chunks), not the session.

Keys: chunk ``index`` of ``epoch`` lives at ``SNAPSHOT#C<rev epoch>#<rev index>`` (both
counted down from their maximum), so an ascending ``Query`` from ``SNAPSHOT`` meets the
head, then the newest chunk of the newest epoch, then older chunks: a read that needs the
newest entries reads the head and the first chunks only. An epoch is the seq at which a
chunk set was started; a clear, a compaction or a removal deeper than the tail starts a
new one, and the chunks of the old epoch (which sort after the new one's) are left for
``convlog rebuild`` / ``purge`` to delete (the projector has no ``DeleteItem``).

Chunks are chained: ``chain = sha256(prev + digest)``, where a chunk's ``digest`` joins
the sha256 of its canonical JSON (``payload_sha256``, what an S3 object is checked
against) and the sha256 of its stored bytes (``sdig``: compressed, so a reader hashes a
quarter of the bytes); each chunk stores the chain value before it (``prev``) and the
head stores the last one, so a reader checks whichever newest chunks it reads against the
head, and a full read checks the whole chain from ``GENESIS_CHAIN``.

Example:
    ```python
    head_state, new_chunks = seal(snapshot)
    for chunk in new_chunks:
        items = encode_chunk("s1", chunk)
    ```
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import CorruptEventError
from .events import canonical_json
from .fold import Entry, Sealed, Snapshot
from .keys import SNAPSHOT_SK, part_base, session_pk
from .limits import DEFAULT_MAX_STATE_BYTES
from .records import (
    DIGEST_ATTR,
    AttrMap,
    Body,
    chunk_of,
    encode_body,
    inflate_payload,
    object_attrs,
    part_items,
    payload_attrs,
    select_parts,
)

CHUNK_ENTRIES = 64
TAIL_ENTRIES = 2 * CHUNK_ENTRIES  # seal once the tail holds this many entries...
TAIL_BYTES = 96 * 1024  # ...or this much JSON; the tail then keeps about half
CHUNK_BYTES = 256 * 1024  # JSON per chunk (one larger entry gets a chunk of its own)
CHUNK_PREFIX = SNAPSHOT_SK + "#C"
GENESIS_CHAIN = "0" * 64
MAX_EPOCH = 10**12 - 1
MAX_INDEX = 10**6 - 1

Rows = list[list[Any]]  # decoded entries: [item, seq, ttl] each


@dataclass(frozen=True)
class Chunk:
    """A chunk to write: its place, its entries, the chain value before it, its body."""

    epoch: int
    index: int
    prev: str
    body: Body
    count: int
    ttl: int | None

    @property
    def stored_digest(self) -> str:
        """The sha256 of the stored bytes (``sdig``)."""
        return hashlib.sha256(self.body.data).hexdigest()


def chunk_sk(epoch: int, index: int) -> str:
    """Sort key of chunk ``index`` of ``epoch`` (newest epoch and index sort first)."""
    return f"{CHUNK_PREFIX}{MAX_EPOCH - epoch:012d}#{MAX_INDEX - index:06d}"


def chunk_place(sk: str) -> tuple[int, int] | None:
    """``(epoch, index)`` of a chunk's sort key, ``None`` for any other key (or a part)."""
    if not sk.startswith(CHUNK_PREFIX) or sk.count("#") != 2:
        return None
    try:
        rev_epoch, rev_index = sk[len(CHUNK_PREFIX) :].split("#")
        return MAX_EPOCH - int(rev_epoch), MAX_INDEX - int(rev_index)
    except ValueError:
        return None


def is_chunk_key(sk: str) -> bool:
    """Whether ``sk`` is a chunk or one of a chunk's parts."""
    return sk.startswith(CHUNK_PREFIX)


def link(chain: str, digest: str) -> str:
    """The chain value after a chunk whose digest is ``digest``."""
    return hashlib.sha256((chain + digest).encode("ascii")).hexdigest()


def _ttl_of(entries: Sequence[Entry]) -> int | None:
    ttls = [e.ttl for e in entries]
    return None if any(t is None for t in ttls) else max(t for t in ttls if t is not None)


def _size(entry: Entry) -> int:
    return len(canonical_json([entry.item, entry.seq, entry.ttl]).encode("utf-8"))


def seal(snapshot: Snapshot, *, tail_bytes: int | None = None) -> tuple[Snapshot, list[Chunk]]:
    """Move the oldest tail entries into new chunks once the tail is too long.

    Args:
        snapshot: The state (``entries`` is the tail when ``sealed`` is set).
        tail_bytes: The tail's JSON size if known (saves measuring a short tail).

    Returns:
        The state to store in the head (tail and sealed summary) and the new chunks.
    """
    tail = list(snapshot.entries)
    if len(tail) < TAIL_ENTRIES and (tail_bytes is not None and tail_bytes <= TAIL_BYTES):
        return snapshot, []
    sizes = [_size(e) for e in tail]
    total = sum(sizes)
    if len(tail) < TAIL_ENTRIES and total <= TAIL_BYTES:
        return snapshot, []
    sealed = snapshot.sealed or Sealed(snapshot.seq, 0, 0, GENESIS_CHAIN)
    chain, index, count, ttls = sealed.chain, sealed.chunks, sealed.count, [sealed.ttl]
    never = sealed.count > 0 and sealed.ttl is None
    chunks: list[Chunk] = []
    start = 0
    while start < len(tail) and (len(tail) - start >= TAIL_ENTRIES or total > TAIL_BYTES // 2):
        end, size = start, 0
        while end < len(tail) and end - start < CHUNK_ENTRIES and (
            end == start or size + sizes[end] <= CHUNK_BYTES
        ):
            size += sizes[end]
            end += 1
        piece = tail[start:end]
        body = encode_body([[e.item, e.seq, e.ttl] for e in piece], inline_limit=None)
        ttl = _ttl_of(piece)
        chunk = Chunk(sealed.epoch, index, chain, body, len(piece), ttl)
        chunks.append(chunk)
        chain = link(chain, body.digest + chunk.stored_digest)
        index, count = index + 1, count + len(piece)
        never = never or ttl is None
        ttls.append(ttl)
        total -= size
        start = end
    known = [t for t in ttls if t is not None]
    summary = None if never or not known else max(known)
    new = Sealed(sealed.epoch, index, count, chain, summary)
    return Snapshot(snapshot.seq, tuple(tail[start:]), snapshot.ttl, snapshot.hash, new), chunks


def encode_chunk(session_id: str, chunk: Chunk, *, object_key: str | None = None) -> list[AttrMap]:
    """The items of one chunk: its head item and, for a large inline body, its parts."""
    pk = session_pk(session_id)
    sk = chunk_sk(chunk.epoch, chunk.index)
    pieces = [] if object_key else chunk.body.chunks()
    item: AttrMap = {
        "pk": {"S": pk}, "sk": {"S": sk}, "prev": {"S": chunk.prev},
        "count": {"N": str(chunk.count)},
        **(object_attrs(chunk.body, object_key) if object_key
           else payload_attrs(chunk.body.encoding, pieces)),
        DIGEST_ATTR: {"S": chunk.body.digest},
        "sdig": {"S": chunk.stored_digest},
    }
    if chunk.ttl is not None:
        item["ttl"] = {"N": str(chunk.ttl)}
    return [item, *part_items(pk, part_base(sk, chunk.body.digest), pieces, {})]


def chunk_prev(item: AttrMap) -> str:
    """The chain value before a chunk, as stored on it.

    Raises:
        CorruptEventError: The item is malformed.
    """
    try:
        return str(item["prev"]["S"])
    except (KeyError, TypeError) as exc:
        raise CorruptEventError(f"snapshot chunk is malformed: {exc!r}") from exc


def decode_rows(
    item: AttrMap, parts: Sequence[AttrMap] = (), *, raw: bytes | None = None,
) -> tuple[Rows, str]:
    """The entries of a chunk as ``[item, seq, ttl]`` lists, and its chain digest.

    The digest of inline bytes is computed here (the chain then checks them); ``raw``:
    the chunk's canonical JSON fetched from S3 and checked against ``payload_sha256``.

    Raises:
        CorruptEventError: Parts missing, bad bytes, a digest mismatch or a wrong shape.
    """
    try:
        digest = str(item[DIGEST_ATTR]["S"])
        if raw is None:
            pieces = [chunk_of(item)] + [chunk_of(p) for p in select_parts(item, parts)]
            stored = b"".join(pieces)
            digest += hashlib.sha256(stored).hexdigest()
            raw = inflate_payload(item["enc"]["S"], [stored], DEFAULT_MAX_STATE_BYTES)
        else:
            digest += str(item["sdig"]["S"])
        return rows_of(parse(raw)), digest
    except CorruptEventError:
        raise
    except (KeyError, ValueError, TypeError, AttributeError, IndexError, zlib.error,
            RecursionError) as exc:
        raise CorruptEventError(f"snapshot chunk is malformed: {exc!r}") from exc


def rows_of(data: Any) -> Rows:
    """Check decoded entries' shape: a list of ``[item (object), seq (int), ttl]``.

    Raises:
        ValueError: Another shape.
    """
    if type(data) is not list:
        raise ValueError("snapshot entries have the wrong shape")
    for r in data:  # a plain loop: the read path's hottest check
        if type(r) is not list or len(r) != 3 or type(r[0]) is not dict or (
            type(r[1]) is not int or (r[2] is not None and type(r[2]) is not int)
        ):
            raise ValueError("snapshot entries have the wrong shape")
    return data


def parse(raw: bytes) -> Any:
    """Parse canonical JSON with orjson (about 2x faster), falling back to ``json``.

    ``json`` wrote it, and accepts what orjson refuses (integers beyond 64 bits).

    Raises:
        ValueError: Not JSON.
    """
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def entries_of(rows: Rows) -> tuple[Entry, ...]:
    """Rows as ``Entry`` values (for the projector and the audit tools)."""
    return tuple(Entry(r[0], r[1], r[2]) for r in rows)
