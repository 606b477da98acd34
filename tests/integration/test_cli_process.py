"""``convlog demo`` and ``convlog serve`` as real processes (the console script)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import requests

from convlog.local import free_port
from eventstore import DynamoDBSession

CONVLOG = str(Path(sys.executable).with_name("convlog"))
DEMO_SECTIONS = [
    "== conversation (Runner.run with DynamoDBSession, scripted model, no API key) ==",
    "== events of travel/alice-trip-paris ==",
    "== snapshot (written by the projector from the stream) ==",
    "== tool cache (scope travel: the tenant of these sessions) ==",
    "== sessions of user travel/alice ==",
    "== branches of travel/alice-trip-paris (list_branches) ==",
    "== usage of user travel/alice (store_run_usage, summed by the projector) ==",
    "== replay of travel/alice-trip-paris at seq 4 (after turn 1) ==",
    "== verify ==",
]


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "CONVLOG_TABLE")}
    env.update(extra)
    return env


def test_demo_prints_every_section_and_passes() -> None:
    proc = subprocess.run(
        [CONVLOG, "demo"], capture_output=True, text=True, timeout=120, env=_env()
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    positions = [out.index(section) for section in DEMO_SECTIONS]
    assert positions == sorted(positions)
    # 8 conversation events + a usage event after each of the 3 turns
    assert "SESSION#travel/alice-trip-paris / SNAPSHOT: seq 11, 10 items" in out
    assert "call_weather_1 ran the function; call_weather_2 was served from the cache" in out
    assert "hits 1" in out
    assert "TOOL#travel/get_weather / ARGS#" in out  # the tenant's scope, not the global one
    assert "TOOL#get_weather" not in out
    sessions = out.split("== sessions of user travel/alice ==")[1].split("==")[0]
    assert [line.split()[:2] for line in sessions.strip().splitlines()[1:]] == [
        ["travel/alice-trip-paris", "museum-instead"], ["travel/alice-trip-paris", "main"],
        ["travel/alice-museums", "main"]
    ]
    branches = out.split("(list_branches) ==")[1].split("==")[0]
    assert "main: 10 items, 3 user turns" in branches
    assert "museum-instead: 6 items, 2 user turns" in branches
    usage = out.split("summed by the projector) ==")[1].split("==")[0]
    assert [line.split()[:2] for line in usage.strip().splitlines()[-1:]] == [["TOTAL", "7"]]
    assert "equal to what get_items returned after turn 1: yes" in out
    for sid, count in (("travel/alice-museums", 3), ("travel/bob-chat", 3),
                       ("travel/alice-trip-paris", 11),
                       ("travel/alice-trip-paris#branch#museum-instead", 4)):
        assert f"OK      {sid}: {count} events, seq 1..{count}, hash chain intact" in out
    match = re.search(r"demo finished in ([0-9.]+)s", out)
    assert match is not None
    assert float(match.group(1)) < 20  # the budget (excludes interpreter start-up)
    assert proc.stderr == ""


class _Lines:
    """Collect a process's stdout lines on a thread; wait for a pattern."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, needle: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if needle in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.lines.append(line)
            if needle in line:
                return line
        raise AssertionError(f"{needle!r} not printed; got {self.lines}")


def test_serve_projects_while_running_and_stops_cleanly_on_sigint() -> None:
    port, console_port = free_port(), free_port()
    table = f"serve-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [CONVLOG, "serve", "--port", str(port), "--table", table,
         "--console-port", str(console_port)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(),
    )
    try:
        out = _Lines(proc.stdout)
        line = out.wait_for("export AWS_ENDPOINT_URL_DYNAMODB=")
        url = line.split("=", 1)[1]
        assert url == f"http://127.0.0.1:{port}"
        assert out.wait_for("export CONVLOG_TABLE=").endswith(table)
        assert out.wait_for("export AWS_ENDPOINT_URL_S3=").endswith(
            f"AWS_ENDPOINT_URL_KMS={url} AWS_ENDPOINT_URL_STS={url}")
        exports = dict(pair.split("=", 1) for pair in out.wait_for(
            "export CONVLOG_DIGEST_BUCKET=").split()[1:])
        local = {"endpoint_url": url, "region_name": "us-east-1",
                 "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
        lock = boto3.client("s3", **local).get_object_lock_configuration(
            Bucket=exports["CONVLOG_DIGEST_BUCKET"])["ObjectLockConfiguration"]
        assert lock["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
        key = boto3.client("kms", **local).describe_key(KeyId=exports["CONVLOG_SIGNING_KEY"])
        assert key["KeyMetadata"]["KeySpec"] == "ECC_NIST_P256"
        assert "stream pump on" in out.lines[0]
        client = boto3.client("dynamodb", endpoint_url=url, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        session = DynamoDBSession("dev-1", client, table, user_id="dev")
        import asyncio

        asyncio.run(session.add_items([{"role": "user", "content": "hello from my app"}]))
        logged = out.wait_for("SESSION#dev-1 EVENT#000000000001", timeout=30)
        assert "projected" in logged and "items_added" in logged
        meta = client.get_item(TableName=table,
                               Key={"pk": {"S": "SESSION#dev-1"}, "sk": {"S": "META"}})
        assert meta["Item"]["title"]["S"] == "hello from my app"
        assert "export CONVLOG_BUCKET=convlog-payloads " in out.wait_for("CONVLOG_BUCKET=")
        s3 = boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
        big = {"role": "tool", "content": os.urandom(450_000).hex()}  # above an item
        large = DynamoDBSession("dev-2", client, table, s3_client=s3,
                                bucket_name="convlog-payloads")
        asyncio.run(large.add_items([big]))
        assert "projected" in out.wait_for("SESSION#dev-2 EVENT#000000000001", timeout=30)
        assert s3.list_objects_v2(Bucket="convlog-payloads")["KeyCount"] == 2  # event, snapshot
        console = out.wait_for("console: ")
        assert console.startswith(f"console: http://127.0.0.1:{console_port}/ ")
        assert "read-only" in console
        sessions = requests.get(f"http://127.0.0.1:{console_port}/api/sessions",
                                params={"user_id": "dev"}, timeout=30).json()
        assert [s["session_id"] for s in sessions["sessions"]] == ["dev-1"]
        busy = subprocess.run(
            [CONVLOG, "serve", "--port", str(port), "--console-port", str(free_port())],
            capture_output=True, text=True, timeout=60, env=_env(),
        )
        assert busy.returncode == 2
        assert busy.stderr.strip() == (
            f"convlog serve: error: cannot listen on 127.0.0.1:{port}: port {port} is in use"
        )
        busy_console = subprocess.run(
            [CONVLOG, "serve", "--port", str(free_port()), "--console-port", str(console_port)],
            capture_output=True, text=True, timeout=60, env=_env(),
        )
        assert busy_console.returncode == 2
        assert busy_console.stderr.strip() == (
            f"convlog serve: error: console cannot listen on 127.0.0.1:{console_port}: "
            f"port {console_port} is in use"
        )
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        out.wait_for("convlog serve: stopped", timeout=5)
        assert "Traceback" not in (proc.stderr.read() if proc.stderr else "")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
