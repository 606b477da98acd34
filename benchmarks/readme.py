"""What ``python -m benchmarks`` writes into README.md: two marked blocks, nothing else.

The benchmarks section (the command, the summary table and issue 14's targets) and,
in the payloads section, the memory block (issue 13's peak RSS tables). Each is
replaced between its markers; the rest of the README is left as it is.

Example:
    ```python
    update_readme(Path("README.md"), readme_section(results, args))
    replace_block(Path("README.md"), MEMORY_START, MEMORY_END, memory_block(data, "full"))
    ```
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from . import report, scenarios, targets
from .memory import memory_tables

HEADLINE_AT = 1_000
MEMORY_START = "<!-- benchmarks: memory -->"
MEMORY_END = "<!-- /benchmarks: memory -->"


README_START = "<!-- section: benchmarks (owner: benchmarks) -->"
README_END = "<!-- /section: benchmarks -->"


def readme_section(results: scenarios.Results, args: argparse.Namespace) -> str:
    """The README's benchmarks section: the command and the summary table."""
    at = HEADLINE_AT if HEADLINE_AT in results.lengths else max(results.lengths)
    mode = " (`--quick` run)" if args.quick else ""
    return "\n".join([
        "## Benchmarks",
        "",
        "```bash",
        "pip install -r benchmarks/requirements.txt && python -m benchmarks   # --quick: a few min",
        "python -m benchmarks --only delayed --only memory --no-write   # single steps, printed",
        "```",
        "",
        "It runs convlog, the single-item `DynamoDBSession` of `openai-agents-session` and "
        "the SDK's `SQLiteSession` side by side on the embedded endpoint, prints the tables, "
        "rewrites [BENCHMARKS.md](BENCHMARKS.md) (method, every figure, caveats) and "
        "[the chart](benchmarks/cost_vs_history.png), and copies this summary here and "
        "the memory tables into [Large payloads](#large-payloads-caps-and-memory). "
        "Capacity units are computed from item sizes with DynamoDB's rounding rules; "
        "`tests/integration/test_costs.py` asserts convlog's request and capacity figures "
        f"in CI. Summary as generated{mode}:",
        "",
        report.headline(results, at),
        "",
        "Issue 14's targets, from the same run (wall-clock figures on moto, whose `Query` "
        "walks the whole table; see BENCHMARKS.md):",
        "",
        targets.targets_table(results),
    ])


def update_readme(path: Path, section: str) -> bool:
    """Replace the text between this section's markers in README.md (nothing else)."""
    return replace_block(path, README_START, README_END, section)


def replace_block(path: Path, start_marker: str, end_marker: str, block: str) -> bool:
    """Replace the text between two markers of ``path``; ``False`` if they are missing."""
    text = path.read_text(encoding="utf-8")
    start, end = text.find(start_marker), text.find(end_marker)
    if start < 0 or end < start:
        return False
    body = text[: start + len(start_marker)] + "\n" + block + "\n" + text[end:]
    path.write_text(body, encoding="utf-8")
    return True


def memory_block(data: dict[str, Any], mode: str, when: str) -> str:
    """The README's memory figures, with the run they come from."""
    return "\n".join([
        f"**Memory, measured** by `python -m benchmarks` ({mode} run, {when}; the same "
        "tables are in BENCHMARKS.md) on the embedded endpoint, this 2-core machine shared "
        "with other jobs, so the seconds are loose; each figure is the peak RSS of a fresh "
        "process above its resident size just before the call; one item of base64 text per "
        "add, `max_add_bytes` raised to 128 MiB:",
        "",
        memory_tables(data),
    ])


