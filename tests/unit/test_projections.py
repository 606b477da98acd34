"""Pure projections: stream records, snapshot/meta/tool-cache folds, filter and record shape."""

from __future__ import annotations

import base64
import copy
import itertools
import random
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from convlog.pump import lambda_record, matches_filter
from eventstore.errors import CorruptEventError, InvalidInputError
from eventstore.events import GENESIS_HASH, ItemPopped, ItemsAdded, SessionCleared, chain_hash
from eventstore.fold import Entry, Snapshot, fold_forward
from eventstore.records import StoredEvent, encode_event
from eventstore.table import STREAM_FILTER_PATTERN
from eventstore.views import (
    SessionMeta,
    ToolCacheEntry,
    arguments_hash,
    canonical_arguments,
    decode_meta,
    decode_tool_entry,
    encode_meta,
    encode_tool_entry,
)
from projections import (
    classify,
    first_user_text,
    project_session,
    record_location,
    tool_entries,
    view_ttl,
)
from projections.session import iso_time

NOW = 1_900_000_000.0


def ts(n: int) -> str:
    return datetime.fromtimestamp(NOW - 3600 + n, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z")


def make_events(specs: list[tuple[str, Any]], session: str = "s", user: str | None = "u",
                ttl: int | None = None) -> list[StoredEvent]:
    out, prev = [], GENESIS_HASH
    for seq, (kind, value) in enumerate(specs, start=1):
        common: dict[str, Any] = {"session_id": session, "seq": seq, "ts": ts(seq),
                                  "user_id": user, "token": f"t{seq}"}
        event = (ItemsAdded(items=value, **common) if kind == "add"
                 else ItemPopped(item=value, **common) if kind == "pop"
                 else SessionCleared(**common))
        digest = chain_hash(prev, event, ttl)
        out.append(StoredEvent(event, prev, digest, ttl))
        prev = digest
    return out


def wire(item: dict[str, Any], name: str = "INSERT", seqno: int = 7) -> dict[str, Any]:
    shaped = lambda_record({"eventName": name, "eventSource": "aws:dynamodb", "dynamodb": {
        "Keys": {"pk": item["pk"], "sk": item["sk"]}, "NewImage": item,
        "SequenceNumber": str(seqno), "SizeBytes": 1, "StreamViewType": "NEW_AND_OLD_IMAGES",
        "ApproximateCreationDateTime": datetime.fromtimestamp(NOW, UTC)}}, "arn:stream")
    return shaped


def head_of(stored: StoredEvent) -> dict[str, Any]:
    return encode_event(stored.event, stored.prev_hash, stored.hash, ttl=stored.ttl)[0]


# --- stream records ---------------------------------------------------------------------

def test_classify_decodes_an_event_insert() -> None:
    stored = make_events([("add", [{"role": "user", "content": "x" * 3000}])])[0]
    record = wire(head_of(stored))
    assert isinstance(record["dynamodb"]["NewImage"]["payload"]["B"], str)  # base64 on the wire
    rec = classify(record)
    assert rec is not None
    assert (rec.record_id, rec.session_id, rec.seq, rec.created_at) == ("7", "s", 1, NOW)
    assert rec.stored == stored


def test_classify_ignores_what_is_not_an_event_insert() -> None:
    stored = make_events([("add", [{"role": "user", "content": "hi"}])])[0]
    head = head_of(stored)
    assert classify(wire(head, "REMOVE")) is None
    assert classify(wire(head, "MODIFY")) is None
    for sk in ("META", "SNAPSHOT", "SNAPSHOT#0001", "EVENT#000000000001#0001"):
        assert classify(wire({**head, "sk": {"S": sk}})) is None
    assert classify(wire({**head, "pk": {"S": "TOOL#x"}})) is None


def test_classify_defers_events_with_parts_to_the_table() -> None:
    noise = base64.b64encode(random.Random(1).randbytes(600_000)).decode()
    stored = make_events([("add", [{"content": noise}])])[0]
    items = encode_event(stored.event, stored.prev_hash, stored.hash, ttl=None)
    assert len(items) > 1
    rec = classify(wire(items[0]))
    assert rec is not None and rec.stored is None and rec.seq == 1


@pytest.mark.parametrize("change", [
    {"payload": {"S": "{not json"}},
    {"v": {"N": "99"}},
    {"type": {"S": "items_renamed"}},
    {"seq": {"N": "9"}},
    {"payload": {"B": "***not base64***"}},
    {"enc": {"S": "brotli"}},
])
def test_classify_rejects_bad_images_naming_session_and_seq(change: dict[str, Any]) -> None:
    head = head_of(make_events([("add", [{"role": "user", "content": "hi"}])])[0])
    record = wire(head)
    record["dynamodb"]["NewImage"].update(change)
    with pytest.raises(CorruptEventError, match=r"session 's' EVENT#000000000001"):
        classify(record)
    assert record_location(record) == ("s", "1")


def test_classify_rejects_an_insert_without_image_or_with_other_keys() -> None:
    head = head_of(make_events([("add", [{"role": "user", "content": "hi"}])])[0])
    record = wire(head)
    del record["dynamodb"]["NewImage"]
    with pytest.raises(CorruptEventError):
        classify(record)
    record = wire(head)
    record["dynamodb"]["Keys"]["sk"] = {"S": "EVENT#000000000002"}
    with pytest.raises(CorruptEventError):
        classify(record)
    assert record_location({"junk": 1}) == ("?", "?")


# --- folds ------------------------------------------------------------------------------

def test_project_session_builds_snapshot_meta_and_title() -> None:
    events = make_events([
        ("add", [{"role": "system", "content": "be nice"}]),
        ("add", [{"role": "user", "content": [{"type": "input_text", "text": "  Book a\n table"},
                                              {"type": "input_image", "image_url": "x"}]}]),
        ("add", [{"role": "assistant", "content": "done"}]),
        ("pop", {"role": "assistant", "content": "done"}),
    ])
    result = project_session("s", None, None, events, now=NOW)
    assert result is not None
    assert result.snapshot == fold_forward(events, now=NOW)
    assert result.meta == SessionMeta("s", 4, ts(1), ts(4), 2, "u", "Book a table", None)
    assert result.applied == 4 and result.tool_entries == ()


def test_project_session_continues_from_prior_views_and_ignores_redelivery() -> None:
    events = make_events([("add", [{"role": "user", "content": f"m{i}"}]) for i in range(6)])
    first = project_session("s", None, None, events[:3], now=NOW)
    assert first is not None
    assert project_session("s", first.snapshot, first.meta, events[:3], now=NOW) is None
    second = project_session("s", first.snapshot, first.meta, events, now=NOW)
    assert second is not None and second.applied == 3
    assert second.snapshot == fold_forward(events, now=NOW)
    assert (second.meta.created, second.meta.last_active, second.meta.title) == (
        ts(1), ts(6), "m0")


def test_title_survives_a_clear_and_user_can_appear_later() -> None:
    events = make_events([("add", [{"role": "user", "content": "first"}]), ("clear", None),
                          ("add", [{"role": "user", "content": "second"}])], user=None)
    result = project_session("s", None, None, events, now=NOW)
    assert result is not None and result.meta.title == "first" and result.meta.item_count == 1
    assert result.meta.user_id is None
    assert first_user_text([{"role": "user", "content": "y" * 200}]) == "y" * 79 + "…"
    assert first_user_text([{"type": "function_call", "role": "user"}, {"role": "user"}]) is None


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "add", "pop", "clear"]), st.integers(0, 9)),
                min_size=1, max_size=30), st.lists(st.integers(1, 30), max_size=4))
def test_batches_in_any_split_and_redelivered_equal_one_fold(
    ops: list[tuple[str, int]], cuts: list[int]
) -> None:
    specs = [(k, [{"role": "user", "content": str(n)}] if k == "add" else
              {"role": "user", "content": str(n)}) for k, n in ops]
    events = make_events(specs)
    snapshot, meta = None, None
    bounds = sorted({0, len(events), *[c for c in cuts if c < len(events)]})
    for lo, hi in itertools.pairwise(bounds):
        for batch in (events[lo:hi], events[max(0, lo - 2):hi]):  # with redelivery
            result = project_session("s", snapshot, meta, batch, now=NOW)
            if result is not None:
                snapshot, meta = result.snapshot, result.meta
    whole = project_session("s", None, None, events, now=NOW)
    assert whole is not None
    assert (snapshot, meta) == (whole.snapshot, whole.meta)


def test_tool_entries_pair_outputs_with_calls_from_earlier_events() -> None:
    call = {"type": "function_call", "call_id": "c1", "name": "add",
            "arguments": '{"b": 2, "a": 1}'}
    events = make_events([
        ("add", [{"type": "function_call_output", "call_id": "c1", "output": "3"},
                 {"type": "function_call_output", "call_id": "nobody", "output": "?"}]),
        ("add", [{"type": "function_call", "call_id": "c2", "name": "add",
                  "arguments": '{"a":1,"b":2}'},
                 {"type": "function_call_output", "call_id": "c2", "output": "three"},
                 {"type": "function_call", "call_id": "c3", "name": "img", "arguments": "{}"},
                 {"type": "function_call_output", "call_id": "c3", "output": [{"type": "x"}]}]),
    ])
    # dated by the stream's clock (``times``), never by the ts the event claims
    times = {1: NOW - 100.0, 2: NOW - 50.0}
    found = tool_entries("s", [call], events[:1], ttl_seconds=7200, now=NOW, times=times)
    assert [(e.tool_name, e.output, e.call_id, e.created) for e in found] == [
        ("add", "3", "c1", iso_time(NOW - 100))]
    assert found[0].arguments_hash == arguments_hash({"a": 1, "b": 2})
    assert found[0].ttl == int(NOW - 100) + 7200 and found[0].scope is None
    newest = tool_entries("s", [call], events, ttl_seconds=7200, now=NOW, times=times)
    assert [(e.output, e.call_id) for e in newest] == [("three", "c2")]  # one key, newest wins
    assert tool_entries("s", [call], events, ttl_seconds=7200, now=NOW + 7200,
                        times=times) == []  # expired
    assert tool_entries("s", [call], events, ttl_seconds=7200, now=NOW) == []  # no trusted time
    scoped = tool_entries("acme/s", [call], events[:1], ttl_seconds=7200, now=NOW, times=times)
    assert [(e.scope, e.session_id) for e in scoped] == [("acme", "acme/s")]
    result = project_session("s", None, None, events, tool_ttl_seconds=0, now=NOW, times=times)
    assert result is not None and result.tool_entries == ()


def test_view_ttl_is_the_latest_expiry_unless_something_lives_forever() -> None:
    events = make_events([("add", [{"role": "user", "content": "a"}])], ttl=int(NOW) + 50)
    snap = fold_forward(events, now=NOW)
    assert view_ttl(snap, events[0]) == int(NOW) + 50
    forever = Snapshot(1, (*snap.entries, Entry({"x": 1}, 1, None)))
    assert view_ttl(forever, events[0]) is None


# --- codecs, filter, record shape -------------------------------------------------------

def test_meta_and_tool_entry_round_trip() -> None:
    meta = SessionMeta("s#1", 4, ts(1), ts(4), 2, "ann", "hello", 123)
    item = encode_meta(meta)
    assert item["gsi1pk"] == {"S": "USER#ann"} and item["gsi1sk"] == {"S": f"{ts(4)}#s#1"}
    assert decode_meta(item) == meta
    anonymous = encode_meta(SessionMeta("s", 1, ts(1), ts(1), 0))
    assert "gsi1pk" not in anonymous and decode_meta(anonymous).title is None
    entry = ToolCacheEntry("add", "ab" * 32, {"sum": 3}, ts(1), 99, "s", "c", 5)
    assert decode_tool_entry(encode_tool_entry(entry)) == entry
    with pytest.raises(CorruptEventError):
        decode_meta({"pk": {"S": "SESSION#s"}})


def test_canonical_arguments() -> None:
    assert canonical_arguments('{ "b": [1, 2], "a": "é" }') == '{"a":"é","b":[1,2]}'
    assert canonical_arguments("") == "{}"
    for bad in ("{oops", 42, {"x": {1, 2}}):
        with pytest.raises(InvalidInputError):
            canonical_arguments(bad)  # type: ignore[arg-type]


def test_filter_pattern_of_the_event_source_mapping() -> None:
    def rec(name: str, sk: str) -> dict[str, Any]:
        return {"eventName": name, "dynamodb": {"Keys": {"pk": {"S": "SESSION#s"},
                                                         "sk": {"S": sk}}}}
    assert matches_filter(STREAM_FILTER_PATTERN, rec("INSERT", "EVENT#000000000001"))
    assert matches_filter(STREAM_FILTER_PATTERN, rec("INSERT", "EVENT#000000000001#0001"))
    assert not matches_filter(STREAM_FILTER_PATTERN, rec("INSERT", "SNAPSHOT"))
    assert not matches_filter(STREAM_FILTER_PATTERN, rec("MODIFY", "EVENT#000000000001"))
    assert not matches_filter(STREAM_FILTER_PATTERN, rec("REMOVE", "EVENT#000000000001"))
    assert not matches_filter(STREAM_FILTER_PATTERN, {"eventName": "INSERT"})
    assert matches_filter({"a": [{"exists": False}], "b": [{"anything-but": ["x"]}]}, {"b": "y"})
    assert not matches_filter({"b": [{"anything-but": "y"}]}, {"b": "y"})
    with pytest.raises(ValueError, match="unsupported"):
        matches_filter({"a": [{"numeric": [">", 1]}]}, {"a": 2})


def test_lambda_record_shape() -> None:
    raw = {"eventID": "1", "eventName": "INSERT", "dynamodb": {
        "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
        "Keys": {"pk": {"S": "p"}},
        "NewImage": {"b": {"B": b"\x00\xff"}, "m": {"M": {"l": {"L": [{"B": b"a"}, {"N": "1"}]}}},
                     "bs": {"BS": [b"x"]}},
        "SequenceNumber": "5"}}
    original = copy.deepcopy(raw)
    shaped = lambda_record(raw, "arn:s")
    assert raw == original
    assert shaped["eventSourceARN"] == "arn:s"
    epoch = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
    assert shaped["dynamodb"]["ApproximateCreationDateTime"] == epoch
    image = shaped["dynamodb"]["NewImage"]
    assert image["b"] == {"B": "AP8="} and image["bs"] == {"BS": ["eA=="]}
    assert image["m"] == {"M": {"l": {"L": [{"B": "YQ=="}, {"N": "1"}]}}}
