"""The full benchmark run carries issue 13's memory figures into BENCHMARKS.md and README.

``python -m benchmarks`` measures them (``benchmarks.memory.measure_memory``, each
operation in its own child process) and writes the tables into the README's marked
memory block; nothing else of the README changes. An operation that overruns its time
budget is reported as such, never dropped.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.memory import DEFAULT_EVENTS, DEFAULT_SIZES, EVENT_OPS, memory_tables
from benchmarks.readme import MEMORY_END, MEMORY_START, memory_block, replace_block
from benchmarks.run import STEPS

ROOT = Path(__file__).resolve().parents[2]


def _figures() -> dict[str, object]:
    done = {"seconds": 1.25, "peak_mb": 12.4}
    return {
        "timeout": 900.0,
        "sizes": [{"mb": mb, "add": done, "get": done} for mb in DEFAULT_SIZES],
        "events": [{"events": n, "write_seconds": 1.0,
                    "ops": {op: ({"timeout": 900.0} if op == "projector" and n == 100_000
                                 else done) for op in EVENT_OPS}}
                   for n in DEFAULT_EVENTS],
    }


def test_the_full_run_measures_what_issue_13_asks_for() -> None:
    assert "memory" in STEPS
    assert DEFAULT_SIZES == [1, 10, 100]
    assert DEFAULT_EVENTS == [10_000, 100_000]
    assert EVENT_OPS == ["projector", "get10", "get", "verify", "replay"]


def test_tables_show_every_figure_and_say_when_one_overran() -> None:
    text = memory_tables(_figures())
    assert "| 100 MB | 1.2 | +12 MB | 1.2 | +12 MB |" in text
    assert "| 10,000 | +12 MB | +12 MB | +12 MB | +12 MB | +12 MB |" in text
    assert "| 100,000 | not done in 900 s | +12 MB |" in text


def test_only_the_readme_memory_block_is_replaced(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert readme.count(MEMORY_START) == 1 and readme.count(MEMORY_END) == 1
    copy = tmp_path / "README.md"
    copy.write_text(readme, encoding="utf-8")
    block = memory_block(_figures(), "full", "2026-11-23 00:00 UTC")
    assert replace_block(copy, MEMORY_START, MEMORY_END, block)
    after = copy.read_text(encoding="utf-8")
    head, rest = after.split(MEMORY_START)
    inside, tail = rest.split(MEMORY_END)
    assert head == readme.split(MEMORY_START)[0]
    assert tail == readme.split(MEMORY_END)[1]
    assert inside.strip() == block and "python -m benchmarks" in inside
    assert not replace_block(copy, "<!-- nowhere -->", MEMORY_END, block)
