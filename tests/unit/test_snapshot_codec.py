"""A snapshot decodes, or raises ``CorruptEventError`` -- whatever its bytes (issue 10)."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

from eventstore.chunks import CHUNK_ENTRIES, TAIL_ENTRIES, seal
from eventstore.errors import CorruptEventError
from eventstore.fold import Entry, Snapshot
from eventstore.snapshots import decode_snapshot, encode_snapshot


def big_snapshot() -> list[dict[str, Any]]:
    entries = tuple(Entry({"content": f"m{n} " + "word " * 200}, n) for n in range(1, 6))
    return encode_snapshot("s", Snapshot(5, entries, hash="a" * 64), ttl=None)


def test_round_trip_keeps_the_hash_of_the_last_folded_event() -> None:
    items = big_snapshot()
    assert items[0]["enc"] == {"S": "zlib"} and items[0]["hash"] == {"S": "a" * 64}
    snapshot = decode_snapshot(items[0], items[1:])
    assert (snapshot.seq, snapshot.hash, len(snapshot.entries)) == (5, "a" * 64, 5)


@pytest.mark.parametrize("change", [
    lambda h: {**h, "payload": {"B": bytes(b ^ 0xFF for b in h["payload"]["B"])}},
    lambda h: {**h, "payload": {"B": h["payload"]["B"][:-7]}},
    lambda h: {**h, "payload": {"B": zlib.compress(b"\xff\xfe not utf-8")}},
    lambda h: {**h, "payload": {"B": zlib.compress(b'{"entries": 7}')}},
    lambda h: {**h, "payload": {"B": zlib.compress(b'{"entries": [{"i": 1, "s": 1, "t": null}]}')}},
    lambda h: {**h, "payload": {"B": zlib.compress(b'{"entries": [{"i": {}, "s": 1, "t": "x"}]}')}},
    lambda h: {**h, "payload": {"B": zlib.compress(b"[1]")}},
    lambda h: {**h, "enc": {"S": "brotli"}},
    lambda h: {**h, "seq": {"N": "five"}},
    lambda h: {**h, "parts": {"N": "3"}},
])
def test_any_codec_failure_is_a_corrupt_event_error(change: Any) -> None:
    with pytest.raises(CorruptEventError):
        decode_snapshot(change(big_snapshot()[0]))


def _append(state: Snapshot, entries: list[Entry], seq: int) -> Snapshot:
    return Snapshot(seq, state.entries + tuple(entries), hash=f"{seq:064x}", sealed=state.sealed)


def test_chunks_do_not_depend_on_how_the_entries_were_batched() -> None:
    entries = [Entry({"role": "user", "content": f"m{n}"}, n) for n in range(1, 1001)]
    by_ones, by_hundreds = Snapshot(0), Snapshot(0)
    ones: list[Any] = []
    hundreds: list[Any] = []
    for n in range(1000):
        by_ones, sealed = seal(_append(by_ones, entries[n : n + 1], n + 1))
        ones += sealed
    for n in range(0, 1000, 100):
        by_hundreds, sealed = seal(_append(by_hundreds, entries[n : n + 100], n + 100))
        hundreds += sealed
    assert [c.body.digest for c in ones] == [c.body.digest for c in hundreds]
    one, hundred = by_ones.sealed, by_hundreds.sealed
    assert one is not None and hundred is not None
    assert by_ones.entries == by_hundreds.entries  # the epoch is the seq of the first seal
    assert (one.chunks, one.count, one.chain) == (hundred.chunks, hundred.count, hundred.chain)
    assert CHUNK_ENTRIES <= len(by_ones.entries) < TAIL_ENTRIES
    assert by_ones.count == 1000 and len(ones) == (1000 - len(by_ones.entries)) // CHUNK_ENTRIES


def test_a_whole_state_round_trips_through_chunks_and_a_broken_chain_is_corrupt() -> None:
    entries = tuple(Entry({"content": f"m{n}"}, n, None if n % 3 else 2_000_000_000 + n)
                    for n in range(1, 701))
    items = encode_snapshot("s", Snapshot(700, entries, hash="b" * 64), ttl=None)
    head, chunks = items[0], items[1:]
    assert head["v"] == {"N": "3"} and len(chunks) == int(head["chunks"]["N"]) > 5
    assert decode_snapshot(head, chunks).entries == entries
    assert decode_snapshot(head, list(reversed(chunks))).entries == entries  # by key, not order
    swapped = [{**c, "prev": chunks[0]["prev"]} if n == 3 else c for n, c in enumerate(chunks)]
    with pytest.raises(CorruptEventError):
        decode_snapshot(head, swapped)
    with pytest.raises(CorruptEventError):
        decode_snapshot(head, chunks[:-1])  # a chunk missing
