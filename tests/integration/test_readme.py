"""Issue 12, item 1: every Python block of README.md runs as written on the local endpoint.

The blocks run in README order, each as its own script in a fresh interpreter, with the
environment that ``convlog serve`` tells a developer to export (endpoint, region, dummy
credentials, table), against a real ``convlog serve`` process (embedded endpoint, table,
stream pump and projector). A block may declare what it needs that a test machine does
not have, in a first-line comment ``# needs: OPENAI_API_KEY``; it is skipped for that
reason alone (unless ``CONVLOG_README_NEEDS=1``: then it runs with the real variables).
Everything else must run: no undefined names, no top-level ``await``, every import
written out, no traceback and nothing on stderr (the SDK's "skipping trace export" line
included). ``# prints: TEXT`` in a block names a line its output must contain.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from convlog.local import free_port

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
CONVLOG = str(Path(sys.executable).with_name("convlog"))
OPT_IN = "CONVLOG_README_NEEDS"
NEEDS = re.compile(r"^# needs: (?P<vars>[A-Z_, ]+)$")


def python_blocks() -> list[tuple[str, str]]:
    """(id, code) of every ```python block, ids from the README section and position."""
    text = README.read_text(encoding="utf-8")
    blocks = []
    section = "top"
    for match in re.finditer(r"<!-- section: (\S+)|^```python\n(.*?)^```", text,
                             re.MULTILINE | re.DOTALL):
        if match.group(1):
            section = match.group(1)
            continue
        blocks.append((f"{section}-{len(blocks) + 1}", match.group(2)))
    return blocks


BLOCKS = python_blocks()


def test_the_readme_has_the_blocks_this_test_runs() -> None:
    assert len(BLOCKS) >= 5
    assert [b for b, _ in BLOCKS if b.startswith("quickstart")]


def test_the_quick_start_install_line_has_every_extra_the_blocks_use() -> None:
    text = README.read_text(encoding="utf-8")
    quick = text.split("<!-- section: quickstart")[1].split("<!-- /section: quickstart")[0]
    installs = re.findall(r"pip install [^`\n]*-e '\.\[([a-z,]+)\]'", quick)
    assert installs, "the quick start shows no install line"
    extras = set(installs[0].split(","))
    # aiobotocore block -> aio; convlog serve -> local; its projector (list_sessions) -> lambda
    assert {"aio", "lambda", "local"} <= extras


@pytest.fixture(scope="module")
def serve() -> Iterator[dict[str, str]]:
    """A real ``convlog serve``; yields the environment it says to export."""
    port = free_port()
    table = f"readme-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AWS_", "CONVLOG_", "OPENAI_AGENTS_"))}
    if os.environ.get(OPT_IN) != "1":
        env.pop("OPENAI_API_KEY", None)  # the blocks run as on a machine without a key
    else:
        env[OPT_IN] = "1"
    proc = subprocess.Popen([CONVLOG, "serve", "--port", str(port), "--table", table,
                             "--no-console"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    exports: dict[str, str] = {}
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip().startswith("export "):
                for pair in line.split()[1:]:
                    name, _, value = pair.partition("=")
                    exports[name] = value
            if line.startswith("press Ctrl-C"):
                break
        assert "AWS_ENDPOINT_URL_DYNAMODB" in exports, proc.stderr.read() if proc.stderr else ""
        yield {**env, **exports}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _wait_for_projector(env: dict[str, str], timeout: float = 30) -> None:
    """Until every session's meta item has caught up with its newest event (or timeout)."""
    client = boto3.client("dynamodb", endpoint_url=env["AWS_ENDPOINT_URL_DYNAMODB"],
                          region_name=env["AWS_DEFAULT_REGION"],
                          aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"])
    table = env["CONVLOG_TABLE"]
    if table not in client.list_tables()["TableNames"]:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        heads: dict[str, int] = {}
        metas: dict[str, int] = {}
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = client.scan(**params)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        for item in items:
            pk, sk = item["pk"]["S"], item["sk"]["S"]
            if sk.startswith("EVENT#") and sk.count("#") == 1:
                heads[pk] = max(heads.get(pk, 0), int(sk[6:]))
            elif sk == "META":
                metas[pk] = int(item["seq"]["N"])
        if all(metas.get(pk, 0) >= seq for pk, seq in heads.items()):
            return
        time.sleep(0.2)


@pytest.mark.parametrize(("block_id", "code"), BLOCKS, ids=[b for b, _ in BLOCKS])
def test_readme_python_block_runs_as_written(
    serve: dict[str, str], tmp_path: Path, block_id: str, code: str
) -> None:
    first = code.splitlines()[0]
    needs = NEEDS.match(first)
    if needs and os.environ.get(OPT_IN) != "1":
        # A key in the environment may be a placeholder, and the call costs money: such a
        # block runs only when asked for, with the real variables set.
        pytest.skip(f"the block declares that it needs {needs.group('vars').strip()} "
                    f"(a real one, and {OPT_IN}=1 to run it)")
    _wait_for_projector(serve)
    script = tmp_path / f"{block_id}.py"
    script.write_text(code, encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          env=serve, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, f"{block_id} failed:\n{code}\n--- stderr:\n{done.stderr}"
    assert done.stderr == "", done.stderr
    expected = re.findall(r"^# prints: (.*)$", code, re.MULTILINE)
    for line in expected:
        assert line in done.stdout.splitlines(), (line, done.stdout)
