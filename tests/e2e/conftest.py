"""End-to-end fixtures: LocalStack when it answers, otherwise the embedded endpoint.

Clients always come from ``localstack_client.session.Session()``, which builds endpoint
URLs from ``LOCALSTACK_HOST`` (default ``localhost:4566``).

- **LocalStack answers** at ``LOCALSTACK_HOST`` (``/_localstack/health``): the tests use
  the stack that ``localstack/init/ready.d/10-deploy-convlog.sh`` deployed (stack
  ``$CONVLOG_STACK``, default ``convlog``; table from its ``TableName`` output), and the
  projections come from LocalStack's event source mapping running the projector Lambda.
- **Otherwise** the embedded endpoint (moto's server) is started on the port
  ``LOCALSTACK_HOST`` names, or on a free port when that one is busy, and
  ``LOCALSTACK_HOST`` is set to it for the session; the table is created from
  ``eventstore.table`` and the local stream pump runs ``stream_handlers.projector`` with
  the event source mapping's filter and batch size.

Either way the same tests run; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest

from .e2e_support import DEFAULT_HOST, STACK_ENV, E2EStack, probe, split_host


def _localstack_stack() -> E2EStack:
    from localstack_client.session import Session

    name = os.environ.get(STACK_ENV, "convlog")
    cfn = Session().client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=name)["Stacks"]
    except Exception as exc:  # the message is the point: tell the developer what to do
        pytest.fail(
            f"LocalStack answers but stack {name!r} is not deployed ({exc}); see README "
            "'LocalStack': python localstack/build_bundle.py, then docker compose up"
        )
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
    if stacks[0]["StackStatus"] not in ("CREATE_COMPLETE", "UPDATE_COMPLETE"):
        pytest.fail(f"stack {name!r} is {stacks[0]['StackStatus']}")
    return E2EStack(mode="localstack", table=outputs["TableName"])


_RAN_AGAINST: list[str] = []


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which backend the end-to-end tests used."""
    for line in _RAN_AGAINST:
        terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def e2e() -> Iterator[E2EStack]:
    """The stack under test (LocalStack or the embedded endpoint plus the stream pump)."""
    host, port = split_host(os.environ.get("LOCALSTACK_HOST", DEFAULT_HOST))
    state, wanted = probe(host, port), port
    if state == "localstack":
        stack = _localstack_stack()
        _RAN_AGAINST.append(f"e2e: LocalStack at {host}:{port}, table {stack.table}")
        yield stack
        return

    from convlog.local import EmbeddedEndpoint, free_port
    from convlog.pump import StreamPump
    from eventstore.table import create_table_if_not_exists
    from stream_handlers.projector import build_handler

    if state == "busy" or host not in ("localhost", "127.0.0.1"):
        port = free_port()
    saved = os.environ.get("LOCALSTACK_HOST")
    os.environ["LOCALSTACK_HOST"] = f"127.0.0.1:{port}"
    endpoint = EmbeddedEndpoint(port=port).start()
    _RAN_AGAINST.append(f"e2e: embedded endpoint at {endpoint.url} + local stream pump "
                        f"(LocalStack did not answer at {host}:{wanted}, which is {state})")
    try:
        stack = E2EStack(mode="embedded", table=f"convlog-e2e-{uuid.uuid4().hex[:8]}",
                         endpoint=endpoint)
        asyncio.run(create_table_if_not_exists(stack.client(), stack.table))
        stack.pump = StreamPump(
            build_handler(stack.client(), stack.table), stack.table,
            dynamodb=stack.client(), streams=stack.client("dynamodbstreams"),
        )
        yield stack
    finally:
        endpoint.stop()
        if saved is None:
            os.environ.pop("LOCALSTACK_HOST", None)
        else:
            os.environ["LOCALSTACK_HOST"] = saved


@pytest.fixture
def run_id() -> str:
    """A short unique suffix for session and user ids (tests share one table)."""
    return uuid.uuid4().hex[:8]
