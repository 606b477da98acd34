"""A snapshot decodes, or raises ``CorruptEventError`` -- whatever its bytes (issue 10)."""

from __future__ import annotations

import zlib
from typing import Any

import pytest

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
