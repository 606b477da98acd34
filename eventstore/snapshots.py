"""Encoding of session snapshots (the projector writes them, ``get_items`` reads them).

A snapshot is the folded state after ``seq``: the live items with the seq that added
each and its expiry. It sits at ``sk = SNAPSHOT`` (more parts at ``SNAPSHOT#0001``...),
all written in one transaction with the condition that the stored ``seq`` is older.

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

import zlib
from collections.abc import Sequence
from typing import Any

from .errors import CorruptEventError
from .fold import Entry, Snapshot
from .keys import SNAPSHOT_SK, session_pk
from .records import AttrMap, chunk_of, decode_payload, encode_payload, part_items, payload_attrs

SNAPSHOT_VERSION = 2


def encode_snapshot(session_id: str, snapshot: Snapshot, *, ttl: int | None) -> list[AttrMap]:
    """Return the head item and part items of a snapshot.

    Raises:
        PayloadTooLargeError: The snapshot does not fit in one transaction.
    """
    data = {"entries": [{"i": e.item, "s": e.seq, "t": e.ttl} for e in snapshot.entries]}
    encoding, chunks = encode_payload(data)
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
        **payload_attrs(encoding, chunks),
    }
    if snapshot.hash is not None:
        head["hash"] = {"S": snapshot.hash}
    return [head, *part_items(pk, SNAPSHOT_SK, chunks, shared)]


def decode_snapshot(head: AttrMap, parts: Sequence[AttrMap] = ()) -> Snapshot:
    """Rebuild a snapshot from its head and part items.

    Parts left over from an older, larger snapshot are ignored; a part written for
    another ``seq`` (a read that straddled a rewrite) makes the snapshot unusable.

    Raises:
        CorruptEventError: Parts are missing or mismatched, or the payload is malformed.
    """
    try:
        seq = int(head["seq"]["N"])
        expected = int(head.get("parts", {}).get("N", "1"))
        wanted = {p["part"]["N"]: p for p in parts if int(p["part"]["N"]) < expected}
        ordered = [wanted.get(str(n)) for n in range(1, expected)]
        if any(p is None or int(p["seq"]["N"]) != seq for p in ordered):
            raise CorruptEventError(f"snapshot at seq {seq}: parts missing or mismatched")
        chunks = [chunk_of(head)] + [chunk_of(p) for p in ordered if p is not None]
        data = decode_payload(head["enc"]["S"], chunks)
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
