"""Pure audit logic: the chain walk over raw items, export lines, time parsing, rendering."""

from __future__ import annotations

import io
import json
import re
from datetime import UTC, datetime
from typing import Any

import pytest

from convlog.audit import export_line, import_line, parse_time, verify_items
from convlog.cli_format import Progress, render_table, summarize_event, summarize_item
from eventstore.errors import CorruptEventError, InvalidInputError
from eventstore.events import (
    GENESIS_HASH,
    ItemPopped,
    ItemsAdded,
    SessionCleared,
    chain_hash,
    event_body,
)
from eventstore.records import StoredEvent, decode_event, encode_event

NOW = 1_800_000_000.0


def _chain(
    n: int, *, ttl: list[int | None] | None = None, big: int | None = None
) -> list[dict[str, Any]]:
    """Raw items of a session with ``n`` events (event ``big`` split into parts)."""
    items: list[dict[str, Any]] = []
    prev = GENESIS_HASH
    for seq in range(1, n + 1):
        content = "".join(f"{i:08x}" for i in range(400_000)) if seq == big else f"m{seq}"
        event = ItemsAdded(session_id="s", seq=seq, ts=f"2026-01-01T00:00:{seq:02d}.000Z",
                           user_id="u", token=f"t{seq}",
                           items=[{"role": "user", "content": content}])
        expiry = (ttl or [None] * n)[seq - 1]
        digest = chain_hash(prev, event, expiry)
        items.extend(encode_event(event, prev, digest, ttl=expiry))
        prev = digest
    return items


def _drop(items: list[dict[str, Any]], seq: int) -> list[dict[str, Any]]:
    return [i for i in items if i["sk"]["S"] != f"EVENT#{seq:012d}"]


def test_intact_chain_with_parts_verifies() -> None:
    items = _chain(4, big=2)
    assert len(items) > 4  # event 2 has part items
    report = verify_items("s", items, now=NOW)
    assert report.ok and (report.events, report.first_seq, report.last_seq) == (4, 1, 4)


def test_missing_part_is_reported_as_corrupt() -> None:
    items = [i for i in _chain(3, big=2) if not i["sk"]["S"].startswith("EVENT#000000000002#")]
    report = verify_items("s", items, now=NOW)
    assert report.problem is not None
    assert (report.problem.seq, report.problem.kind) == (2, "corrupt")


def test_gap_and_wrong_genesis() -> None:
    report = verify_items("s", _drop(_chain(5), 3), now=NOW)
    assert report.problem is not None and report.problem.kind == "missing"
    assert report.problem.message == "seq 3 missing: the log jumps to seq 4"
    report = verify_items("s", _drop(_drop(_chain(6), 3), 4), now=NOW)
    assert report.problem is not None and report.problem.message.startswith("seq 3..4 missing")
    items = _chain(2)
    items[0]["prev_hash"] = {"S": "f" * 64}
    report = verify_items("s", items, now=NOW)
    assert report.problem is not None and report.problem.seq == 1


def test_expired_prefix_deleted_out_of_order_is_not_tampering() -> None:
    """DynamoDB deletes expired items lazily and in any order."""
    past, future = int(NOW) - 10, int(NOW) + 3600
    items = _chain(6, ttl=[past, past, past, future, future, future])
    report = verify_items("s", _drop(_drop(items, 2), 1), now=NOW)
    assert report.ok and report.expired_prefix == (1, 3) and report.first_seq == 3
    report = verify_items("s", _drop(items, 2), now=NOW)  # seq 1 and 3 still there
    assert report.ok and report.expired_prefix == (1, 3)
    report = verify_items("s", _drop(_drop(items, 1), 5), now=NOW)
    assert report.problem is not None and report.problem.message.startswith("seq 5 missing")


def test_gap_after_a_live_event_is_tampering_even_with_ttl() -> None:
    future = int(NOW) + 3600
    report = verify_items("s", _drop(_chain(4, ttl=[future] * 4), 2), now=NOW)
    assert report.problem is not None and report.problem.seq == 2


def test_empty_partition() -> None:
    report = verify_items("s", [], now=NOW)
    assert report.ok and report.events == 0 and report.expired_prefix is None


def test_export_line_round_trip_and_tamper_detection() -> None:
    event = ItemPopped(session_id="s", seq=3, ts="2026-01-01T00:00:00.000Z", token="t",
                       item={"role": "user", "content": "é"})
    stored = StoredEvent(event, "a" * 64, chain_hash("a" * 64, event, 123), ttl=123)
    line = json.loads(json.dumps(export_line(stored)))
    assert line == {**event_body(event), "prev_hash": "a" * 64, "hash": stored.hash, "ttl": 123}
    assert import_line(line) == stored
    with pytest.raises(CorruptEventError, match="does not match its hash"):
        import_line({**line, "item": {"role": "user", "content": "e"}})
    with pytest.raises(CorruptEventError, match="does not match its hash"):
        import_line({**line, "ttl": 1})  # the expiry is hashed too (schema 2)
    with pytest.raises(CorruptEventError, match="lacks 'hash'"):
        import_line({k: v for k, v in line.items() if k != "hash"})


def test_stored_items_decode_to_the_exported_event() -> None:
    items = _chain(1)
    stored = decode_event(items[0])
    assert import_line(export_line(stored)) == stored


def test_parse_time() -> None:
    assert parse_time("2026-01-31T12:00:00Z") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_time("2026-01-31T13:00:00+01:00") == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert parse_time("2026-01-31 12:00").tzinfo is UTC
    with pytest.raises(InvalidInputError, match="ISO 8601"):
        parse_time("last tuesday")


def test_summaries() -> None:
    assert summarize_item({"role": "user", "content": "Hi\nthere"}) == 'user: "Hi there"'
    assert summarize_item({"role": "assistant", "content": [
        {"type": "output_text", "text": "Sunny"}]}) == 'assistant: "Sunny"'
    assert summarize_item({"type": "function_call", "name": "f", "arguments": '{"a":1}'}) == (
        'tool call f({"a":1})'
    )
    assert summarize_item({"type": "function_call_output", "output": "ok"}) == "tool result ok"
    assert summarize_item({"role": "user", "content": "y" * 200}, 20).endswith("…")
    cleared = SessionCleared(session_id="s", seq=2, ts="t", token="t")
    assert summarize_event(cleared) == "cleared: every earlier item is gone"
    added = ItemsAdded(session_id="s", seq=1, ts="t", token="t",
                       items=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert summarize_event(added) == '+2 user: "a" | user: "b"'


def test_render_table_aligns_columns() -> None:
    assert render_table(["A", "BB"], [["xyz", "1"], ["q", "22"]]).splitlines() == [
        "A    BB", "xyz  1", "q    22",
    ]


def test_progress_without_a_terminal_prints_one_plain_line_with_rate_and_eta() -> None:
    stream = io.StringIO()
    bar = Progress(40, "sessions", stream, description="rebuild")
    for _ in range(40):
        bar.advance()
    bar.close()
    text = stream.getvalue()
    assert "\x1b[" not in text  # no colour or cursor codes when piped
    lines = text.splitlines()
    assert len(lines) == 1, lines
    assert re.fullmatch(r"rebuild\s+━+\s+40/40 sessions\s+100%\s+[0-9,.]+ sessions/s\s+"
                        r"\d:\d\d:\d\d eta \d:\d\d:\d\d", lines[0].strip()), lines[0]


def test_progress_on_a_terminal_redraws_in_colour() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    bar = Progress(3, "items", stream)
    for _ in range(3):
        bar.advance()
    bar.close()
    text = stream.getvalue()
    assert "\x1b[" in text
    assert "3/3 items" in re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_tables_are_plain_when_piped_and_coloured_on_a_terminal() -> None:
    from rich.console import Console

    rows = [["1", "x" * 300]]
    plain = render_table(["SEQ", "SUMMARY"], rows, Console(file=io.StringIO()))
    assert plain.splitlines() == ["SEQ  SUMMARY", "1    " + "x" * 300]  # never cut when piped
    tty = Console(file=io.StringIO(), force_terminal=True, width=60, color_system="standard")
    coloured = render_table(["SEQ", "SUMMARY"], rows, tty)
    assert "\x1b[1m" in coloured  # bold headers
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", coloured).splitlines()
    assert lines[0].startswith("SEQ  SUMMARY")  # the first columns keep their width
    assert all(len(line) <= 60 for line in lines) and lines[1].endswith("…")  # cut to fit
