"""Unit tests of event encoding: compression, parts, sizes, corruption, hash chain."""

from __future__ import annotations

import hashlib
import random
from typing import Any

import pytest

from eventstore.errors import (
    CorruptEventError,
    EventKeyError,
    InvalidItemError,
    PayloadTooLargeError,
)
from eventstore.events import (
    GENESIS_HASH,
    ItemPopped,
    ItemsAdded,
    SessionCleared,
    canonical_json,
    chain_hash,
    event_body,
    link_hash,
    payload_data,
    payload_digest,
    validate_items,
)
from eventstore.keys import event_sk, is_part_sk, part_base, part_sk, seq_of, validate_session_id
from eventstore.records import (
    ITEM_LIMIT_BYTES,
    MAX_PAYLOAD_BYTES,
    decode_event,
    encode_event,
    encode_payload,
    item_size,
)


def added(items: list[Any], seq: int = 1, session_id: str = "s#1") -> ItemsAdded:
    return ItemsAdded(session_id=session_id, seq=seq, ts="2026-01-01T00:00:00.000Z",
                      token="tok", items=items, user_id="u")


@pytest.mark.parametrize(
    "event",
    [
        added([{"role": "user", "content": "hi"}]),
        added([{"role": "user", "content": "x" * 50_000}] * 3),
        ItemPopped(session_id="s", seq=2, ts="t", token="k", item={"a": [1, None]}),
        SessionCleared(session_id="s", seq=3, ts="t", token="k"),
    ],
)
def test_round_trip_keeps_the_event_and_its_hash(event: Any) -> None:
    digest = chain_hash(GENESIS_HASH, event, 123)
    items = encode_event(event, GENESIS_HASH, digest, ttl=123)
    stored = decode_event(items[0], items[1:])
    assert stored.event == event and stored.event.v == 2
    assert chain_hash(GENESIS_HASH, stored.event, stored.ttl) == digest == stored.hash
    assert stored.payload_sha256 == items[0]["payload_sha256"]["S"] == hashlib.sha256(
        canonical_json(payload_data(event)).encode("utf-8")).hexdigest()
    assert stored.ttl == 123 and all(i["ttl"] == {"N": "123"} for i in items)


def test_small_payload_is_plain_json_and_big_text_is_compressed() -> None:
    small = encode_event(added([{"c": "hi"}]), GENESIS_HASH, "h", ttl=None)[0]
    assert small["enc"] == {"S": "json"} and "S" in small["payload"]
    big = encode_event(added([{"c": "hello " * 10_000}]), GENESIS_HASH, "h", ttl=None)
    assert len(big) == 1 and big[0]["enc"] == {"S": "zlib"}
    assert item_size(big[0]) < 2_000


def test_incompressible_payload_is_split_into_parts_that_fit() -> None:
    text = random.Random(1).randbytes(600_000).hex()  # 1.2 MB, compresses to ~0.6 MB
    event = added([{"c": text}], seq=7)
    items = encode_event(event, GENESIS_HASH, "h", ttl=None)
    assert len(items) == int(items[0]["parts"]["N"]) >= 2
    base = part_base(event_sk(7), items[0]["payload_sha256"]["S"])  # content-addressed
    assert [i["sk"]["S"] for i in items[1:]] == [part_sk(base, n) for n in range(1, len(items))]
    assert all(item_size(i) < ITEM_LIMIT_BYTES for i in items)
    assert all(is_part_sk(i["sk"]["S"]) for i in items[1:]) and not is_part_sk(event_sk(7))
    shuffled = list(reversed(items[1:]))  # parts may arrive in any order
    assert decode_event(items[0], shuffled).event == event
    with pytest.raises(CorruptEventError, match="parts present"):
        decode_event(items[0], items[2:])


def test_payload_over_the_limit_is_refused() -> None:
    noise = random.Random(2).randbytes(MAX_PAYLOAD_BYTES + 1000).hex()  # >= 50% after zlib
    with pytest.raises(PayloadTooLargeError, match="at most 4,000,000 bytes"):
        encode_payload({"items": [{"c": noise}]})


def test_malformed_items_are_corrupt_not_key_errors() -> None:
    head = encode_event(added([{"c": 1}]), GENESIS_HASH, "h", ttl=None)[0]
    for broken in ({k: v for k, v in head.items() if k != "token"},
                   {**head, "v": {"N": "99"}},
                   {**head, "type": {"S": "exploded"}},
                   {**head, "enc": {"S": "zlib"}}):
        with pytest.raises(CorruptEventError):
            decode_event(broken)


def test_hash_depends_on_every_field_and_the_previous_hash() -> None:
    base = added([{"c": 1}])
    digest = chain_hash(GENESIS_HASH, base, 500)
    assert chain_hash("1" * 64, base, 500) != digest
    for change in ({"seq": 2}, {"ts": "x"}, {"token": "other"}, {"user_id": None},
                   {"items": [{"c": 2}]}, {"session_id": "s#2"}):
        assert chain_hash(GENESIS_HASH, base.model_copy(update=change), 500) != digest
    for ttl in (None, 499, 0):  # the expiry is hashed: moving it (or removing it) breaks it
        assert chain_hash(GENESIS_HASH, base, ttl) != digest
    popped = ItemPopped(session_id="s#1", seq=1, ts=base.ts, token="tok", user_id="u",
                        item={"c": 1})
    assert chain_hash(GENESIS_HASH, popped, 500) != digest  # the type is hashed


def test_schema_2_hashes_the_payload_through_its_digest() -> None:
    """A verifier holding only the stored digest (content erased) gets the same hash."""
    event = added([{"c": "secret"}])
    digest = chain_hash(GENESIS_HASH, event, 7)
    head = encode_event(event, GENESIS_HASH, digest, ttl=7)[0]
    header = {k: v for k, v in event_body(event).items() if k != "items"}
    assert link_hash(GENESIS_HASH, header, head["payload_sha256"]["S"], 7) == digest
    assert payload_digest({"items": [{"c": "secret"}]}) == head["payload_sha256"]["S"]


def test_schema_1_events_keep_verifying_under_their_own_hash() -> None:
    """Events written before schema 2 hash the whole body and not the ttl."""
    old = added([{"c": 1}]).model_copy(update={"v": 1})
    v1_digest = hashlib.sha256(
        (GENESIS_HASH + canonical_json(event_body(old))).encode("utf-8")).hexdigest()
    assert chain_hash(GENESIS_HASH, old, 123) == chain_hash(GENESIS_HASH, old) == v1_digest
    head = encode_event(old, GENESIS_HASH, v1_digest, ttl=123)[0]
    assert "payload_sha256" not in head and head["v"] == {"N": "1"}
    stored = decode_event(head)
    assert stored.event.v == 1 and stored.payload_sha256 is None and stored.hash == v1_digest


def test_validate_items_copies_and_accepts_json_values() -> None:
    original = [{"a": [1, 2.5, None, True, {"b": "é\x00"}]}]
    checked = validate_items(original)
    assert checked == original and checked[0] is not original[0]
    with pytest.raises(InvalidItemError, match=r"item 0\['a'\]\[1\] is a set"):
        validate_items([{"a": [1, {2}]}])


def test_keys() -> None:
    assert event_sk(42) == "EVENT#000000000042" and seq_of(part_sk(event_sk(42), 3)) == 42
    assert event_sk(9) < event_sk(10) < "META" < "SNAPSHOT" < "SNAPSHOT#0001"
    for junk in ("EVENT#zzz", "EVENT#00000000000x", "EVENT#1", "EVENT#-00000000001",
                 "EVENT#\uff10" + "0" * 11, "META"):  # \uff10: a full-width digit zero
        with pytest.raises(EventKeyError) as caught:
            seq_of(junk)
        assert isinstance(caught.value, CorruptEventError) and isinstance(caught.value, ValueError)
    assert validate_session_id("a#b/é") == "a#b/é"
