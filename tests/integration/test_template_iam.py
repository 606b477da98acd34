"""docs/iam policies: valid, sufficient for what each caller really sends, and tenant-tight.

Requests are recorded (never altered) with a botocore ``before-send`` hook on real clients
talking to the embedded endpoint, then evaluated against the policy documents by a small
evaluator of exactly the IAM features the documents use (Allow statements, ``*``/``?``
wildcards, ``ForAllValues:StringLike`` on ``dynamodb:LeadingKeys``, ``${aws:PrincipalTag}``).
"""

from __future__ import annotations

import base64
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from convlog.cli import main as convlog
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession, ToolCache, list_sessions

ROOT = Path(__file__).resolve().parents[2]
IAM = ROOT / "docs" / "iam"
POLICY_TABLE = "agent_sessions"
ARN = "arn:aws:dynamodb:us-east-1:111122223333:table/"
# DynamoDB's IAM actions for data and table reads (Service Authorization Reference).
# There is no dynamodb:TransactWriteItems action: each Put/Update/Delete/ConditionCheck of a
# transaction is authorised as PutItem/UpdateItem/DeleteItem/ConditionCheckItem.
KNOWN_ACTIONS = {
    "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem", "dynamodb:DescribeStream", "dynamodb:DescribeTable",
    "dynamodb:DescribeTimeToLive", "dynamodb:GetItem", "dynamodb:GetRecords",
    "dynamodb:GetShardIterator", "dynamodb:ListStreams", "dynamodb:ListTables",
    "dynamodb:PutItem", "dynamodb:Query", "dynamodb:Scan", "dynamodb:UpdateItem",
}
# The payload bucket's objects and key as docs/iam names them (issue 13).
PAYLOAD_OBJECTS = "arn:aws:s3:::my-convlog-payloads/sessions/*"
PAYLOAD_KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
PAYLOAD_ACTIONS = {"s3:GetObject", "s3:PutObject", "s3:PutObjectTagging", "kms:Decrypt",
                   "kms:GenerateDataKey"}
WRITE_ACTIONS = {"dynamodb:BatchWriteItem", "dynamodb:DeleteItem", "dynamodb:PutItem",
                 "dynamodb:UpdateItem", "dynamodb:ConditionCheckItem"}
_TRANSACT = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem",
             "ConditionCheck": "ConditionCheckItem"}


@dataclass(frozen=True)
class Access:
    """One IAM authorisation a request needs: action, resource ARN, leading keys."""

    action: str
    resource: str
    leading_keys: tuple[str, ...]


def _pk(item: dict[str, Any]) -> str:
    return str(item["pk"]["S"])


def _query_leading_key(body: dict[str, Any]) -> str:
    names = body.get("ExpressionAttributeNames", {})
    first = re.search(r"(#?\w+)\s*=\s*(:\w+)", body["KeyConditionExpression"])
    assert first, body["KeyConditionExpression"]
    attribute = names.get(first.group(1), first.group(1))
    assert attribute == ("gsi1pk" if "IndexName" in body else "pk")
    return str(body["ExpressionAttributeValues"][first.group(2)]["S"])


def accesses(operation: str, body: dict[str, Any]) -> list[Access]:
    """The authorisations DynamoDB checks for one request (resource named for the docs)."""
    def arn(table: str, index: str | None = None) -> str:
        assert table.startswith("convlog-"), table  # only the test's own table
        return ARN + POLICY_TABLE + (f"/index/{index}" if index else "")

    if operation == "TransactWriteItems":
        found = []
        for entry in body["TransactItems"]:
            (kind, request), = entry.items()
            key = request.get("Item") or request["Key"]
            found.append(Access(f"dynamodb:{_TRANSACT[kind]}", arn(request["TableName"]),
                                (_pk(key),)))
        return found
    if operation == "BatchWriteItem":
        found = []
        for table, requests in body["RequestItems"].items():
            keys = tuple(sorted({_pk(r.get("PutRequest", {}).get("Item")
                                     or r["DeleteRequest"]["Key"]) for r in requests}))
            found.append(Access("dynamodb:BatchWriteItem", arn(table), keys))
        return found
    if operation == "BatchGetItem":
        return [Access("dynamodb:BatchGetItem", arn(table),
                       tuple(sorted({_pk(k) for k in request["Keys"]})))
                for table, request in body["RequestItems"].items()]
    table = body["TableName"]
    if operation == "Query":
        keys: tuple[str, ...] = (_query_leading_key(body),)
        return [Access("dynamodb:Query", arn(table, body.get("IndexName")), keys)]
    if operation in ("GetItem", "DeleteItem", "UpdateItem"):
        keys = (_pk(body["Key"]),)
    elif operation == "PutItem":
        keys = (_pk(body["Item"]),)
    else:  # Scan, DescribeTable, ...: no leading keys
        keys = ()
    return [Access(f"dynamodb:{operation}", arn(table), keys)]


class Recorder:
    """Records every DynamoDB request a botocore client or session sends."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def attach(self, events: Any) -> Recorder:
        events.register("before-send.dynamodb", self._on_send)
        return self

    def _on_send(self, request: Any, **_: Any) -> None:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        body = request.body or b"{}"
        self.requests.append((target.split(".")[-1], json.loads(body)))

    @property
    def operations(self) -> set[str]:
        return {op for op, _ in self.requests}

    def accesses(self) -> list[Access]:
        return [a for op, body in self.requests for a in accesses(op, body)]


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def _list(value: Any) -> list[str]:
    return value if isinstance(value, list) else [value]


def allowed(policy: dict[str, Any], access: Access, tags: dict[str, str] | None = None) -> bool:
    """Whether an Allow statement of ``policy`` grants ``access`` (no Deny statements used)."""
    def substitute(text: str) -> str:
        return re.sub(r"\$\{aws:PrincipalTag/(\w+)\}", lambda m: (tags or {})[m.group(1)], text)

    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        if not any(_like(a, access.action) for a in _list(statement["Action"])):
            continue
        if not any(_like(r, access.resource) for r in _list(statement["Resource"])):
            continue
        ok = True
        for operator, conditions in statement.get("Condition", {}).items():
            for key, values in conditions.items():
                assert (operator, key) == ("ForAllValues:StringLike", "dynamodb:LeadingKeys")
                patterns = [substitute(v) for v in _list(values)]
                ok = ok and all(any(_like(p, k) for p in patterns) for k in access.leading_keys)
        if ok:
            return True
    return False


def load(name: str) -> dict[str, Any]:
    policy: dict[str, Any] = json.loads((IAM / name).read_text(encoding="utf-8"))
    return policy


POLICIES = ("application-policy.json", "audit-readonly-policy.json",
            "tenant-isolation-policy.json")


@pytest.mark.parametrize("name", POLICIES)
def test_policy_files_are_valid_json_with_known_actions(name: str) -> None:
    policy = load(name)
    assert policy["Version"] == "2012-10-17"
    assert policy["Statement"]
    sids = [s["Sid"] for s in policy["Statement"]]
    assert len(set(sids)) == len(sids)
    for statement in policy["Statement"]:
        assert statement["Effect"] == "Allow"
        actions = set(_list(statement["Action"]))
        if actions <= PAYLOAD_ACTIONS:  # the payload bucket (test_payload_iam)
            assert _list(statement["Resource"]) in ([PAYLOAD_OBJECTS], [PAYLOAD_KEY])
            continue
        assert actions <= KNOWN_ACTIONS, actions - KNOWN_ACTIONS
        for resource in _list(statement["Resource"]):
            assert resource in (ARN + POLICY_TABLE, ARN + POLICY_TABLE + "/index/by_user")
    assert sorted(p.name for p in IAM.glob("*.json")) == sorted(POLICIES)


def test_audit_policy_is_read_only() -> None:
    actions = {a for s in load("audit-readonly-policy.json")["Statement"]
               for a in _list(s["Action"])}
    assert actions and not actions & WRITE_ACTIONS


def test_evaluator_denies_what_the_policies_leave_out() -> None:
    app = load("application-policy.json")
    table = ARN + POLICY_TABLE
    assert allowed(app, Access("dynamodb:UpdateItem", table, ("TOOL#add",)))
    # The application may not rewrite or delete the event log, nor scan the table.
    assert not allowed(app, Access("dynamodb:DeleteItem", table, ("SESSION#s",)))
    assert not allowed(app, Access("dynamodb:UpdateItem", table, ("SESSION#s",)))
    assert not allowed(app, Access("dynamodb:BatchWriteItem", table, ("TOOL#a", "SESSION#s")))
    assert not allowed(app, Access("dynamodb:Scan", table, ()))
    assert not allowed(app, Access("dynamodb:Query", ARN + "other", ("SESSION#s",)))


def _big_item() -> dict[str, Any]:
    noise = base64.b64encode(os.urandom(450_000)).decode()  # stays > 400 KB compressed
    return {"role": "user", "content": noise}


async def _session_workload(client: Any, table: str, session_id: str, user_id: str) -> None:
    session = DynamoDBSession(session_id, client, table, ttl_seconds=3600, user_id=user_id)
    await session.add_items([{"role": "user", "content": "hello"}])
    await session.add_items([{"role": "assistant", "content": "hi"}, _big_item()])
    assert len(await session.get_items()) == 3
    await session.pop_item()
    assert len(await session.get_items(limit=1)) == 1
    await session.clear_session()
    assert await session.get_items() == []
    await session.add_items([{"role": "user", "content": "again"}])


async def test_application_policy_allows_everything_the_library_sends(
    endpoint: EmbeddedEndpoint, table: str
) -> None:
    client = endpoint.client("dynamodb")
    recorder = Recorder().attach(client.meta.events)
    await _session_workload(client, table, "app-1", "alice")
    cache = ToolCache(client, table)
    await cache.put("add", {"a": 1, "b": 2}, "3", ttl_seconds=60)
    assert (await cache.get("add", '{"b": 2, "a": 1}')) is not None
    await cache.put("add", {"a": 2, "b": 2}, "4", ttl_seconds=60)
    await cache.invalidate("add", {"a": 1, "b": 2})
    await cache.invalidate("add")
    await list_sessions(client, table, "alice")
    assert {"Query", "PutItem", "UpdateItem",
            "BatchWriteItem"} <= recorder.operations
    assert "TransactWriteItems" not in recorder.operations  # parts, then the commit (issue 13)
    policy = load("application-policy.json")
    denied = [a for a in recorder.accesses() if not allowed(policy, a)]
    assert denied == []


async def test_audit_policy_allows_the_cli_replay_verify_and_sessions(
    endpoint: EmbeddedEndpoint, table: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await _session_workload(endpoint.client("dynamodb"), table, "audit-1", "bob")
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session())
    recorder = Recorder().attach(boto3.DEFAULT_SESSION.events)
    conn = ["--table", table, "--endpoint-url", endpoint.url, "--region", "us-east-1"]
    assert convlog(["replay", "audit-1", "--at-seq", "2", *conn]) == 0
    assert convlog(["verify", "audit-1", *conn]) == 0
    assert convlog(["verify", "--all", *conn]) == 0
    assert convlog(["sessions", "--user", "bob", *conn]) == 0
    capsys.readouterr()
    assert "Query" in recorder.operations and "Scan" in recorder.operations
    policy = load("audit-readonly-policy.json")
    denied = [a for a in recorder.accesses() if not allowed(policy, a)]
    assert denied == []


async def test_key_layout_makes_tenant_isolation_by_leading_keys_possible(
    endpoint: EmbeddedEndpoint, table: str
) -> None:
    client = endpoint.client("dynamodb")
    recorder = Recorder().attach(client.meta.events)
    await _session_workload(client, table, "acme/conv-1", "acme/alice")
    await list_sessions(client, table, "acme/alice")
    assert {"Query", "PutItem"} <= recorder.operations
    assert "TransactWriteItems" not in recorder.operations  # parts, then the commit (issue 13)
    found = recorder.accesses()
    # Every item a session's operations touch is in the session's own partition; the
    # listing also reads the user's usage totals (the user's own partition).
    session_keys = {k for a in found if not a.resource.endswith("/index/by_user")
                    for k in a.leading_keys}
    assert session_keys == {"SESSION#acme/conv-1", "USER#acme/alice"}
    policy = load("tenant-isolation-policy.json")
    assert all(allowed(policy, a, {"tenant": "acme"}) for a in found)
    assert not any(allowed(policy, a, {"tenant": "globex"}) for a in found)
    # A tenant whose name is a prefix of another's does not reach it ("acme" vs "acmex").
    assert not any(allowed(policy, a, {"tenant": "acm"}) for a in found)


async def test_tenant_policy_grants_exactly_the_tenants_tool_cache_scope(
    endpoint: EmbeddedEndpoint, table: str
) -> None:
    from eventstore import cache_owner

    client = endpoint.client("dynamodb")
    recorder = Recorder().attach(client.meta.events)
    cache = ToolCache(client, table, scope="acme")
    with cache_owner("acme/conv-1", "acme/alice"):
        await cache.put("get_weather", {"city": "Paris"}, "sunny")
    assert await cache.get("get_weather", {"city": "Paris"}) is not None
    await cache.invalidate("get_weather", {"city": "Paris"})
    await cache.put("get_weather", {"city": "Oslo"}, "snow")
    await cache.invalidate("get_weather")
    found = recorder.accesses()
    keys = {k for a in found for k in a.leading_keys}
    assert keys == {"TOOL#acme/get_weather", "SESSION#acme/conv-1"}
    policy = load("tenant-isolation-policy.json")
    assert all(allowed(policy, a, {"tenant": "acme"}) for a in found)
    assert not any(allowed(policy, a, {"tenant": "globex"}) for a in found)
    assert not any(allowed(policy, a, {"tenant": "acm"}) for a in found)
    # The global scope and other tenants' scopes stay out of reach.
    for pk in ("TOOL#get_weather", "TOOL#globex/get_weather", "TOOL#acmex/get_weather"):
        assert not allowed(policy, Access("dynamodb:PutItem", ARN + POLICY_TABLE, (pk,)),
                           {"tenant": "acme"})


def _role_policy() -> dict[str, Any]:
    """The projector role's inline policy from template.yaml, with ARNs for the docs' table."""
    from convlog.templatecheck import load_template

    template = load_template(ROOT / "template.yaml")
    policies = template["Resources"]["ProjectorRole"]["Properties"]["Policies"]
    assert len(policies) == 1
    arns = {"Arn": ARN + POLICY_TABLE, "StreamArn": ARN + POLICY_TABLE + "/stream/*"}

    def resolve(resource: Any) -> str:
        if resource == "*":
            return "*"
        if "Fn::Sub" in resource:  # e.g. the payload bucket's objects
            return f"arn:other:{resource['Fn::Sub']}"
        logical, attribute = resource["Fn::GetAtt"]
        return arns[attribute] if logical == "EventsTable" else f"arn:other:{logical}"

    statements = [
        {**s, "Resource": [resolve(r) for r in _list(s["Resource"])]}
        for s in policies[0]["PolicyDocument"]["Statement"]
    ]
    return {"Statement": statements}


async def test_projector_role_allows_exactly_what_the_projector_and_its_mapping_send(
    endpoint: EmbeddedEndpoint, table: str
) -> None:
    from convlog.pump import StreamPump
    from stream_handlers.projector import build_handler

    writer = endpoint.client("dynamodb")
    session = DynamoDBSession("proj-1", writer, table, user_id="carol")
    await session.add_items([{"role": "user", "content": "add 1 and 2"}])
    await session.add_items([
        {"type": "function_call", "call_id": "c1", "name": "add",
         "arguments": '{"a": 1, "b": 2}'},
        {"type": "function_call_output", "call_id": "c1", "output": "3"},
    ])
    await session.add_items([{"role": "assistant", "content": "3"}, _big_item()])

    projector_client = endpoint.client("dynamodb")
    streams = endpoint.client("dynamodbstreams")
    projector = Recorder().attach(projector_client.meta.events)
    mapping: list[str] = []
    streams.meta.events.register(
        "before-send", lambda request, **_: mapping.append(
            request.headers["X-Amz-Target"].decode().split(".")[-1]))
    pump = StreamPump(build_handler(projector_client, table), table,
                      dynamodb=endpoint.client("dynamodb"), streams=streams)
    assert pump.drain() >= 3  # an event split into parts is one record per part
    assert (await ToolCache(writer, table).get("add", {"b": 2, "a": 1})) is not None

    policy = _role_policy()
    found = projector.accesses()
    assert found and [a for a in found if not allowed(policy, a)] == []
    used = {a.action for a in found}
    granted = {a for s in policy["Statement"] if s["Sid"] == "ReadEventsWriteViews"
               for a in _list(s["Action"])}
    assert used <= granted
    # GetItem is granted for reading one view or event by key; everything else is used.
    assert granted - used <= {"dynamodb:GetItem"}
    stream_arn = ARN + POLICY_TABLE + "/stream/2026"
    stream_access = [Access(f"dynamodb:{op}", stream_arn, ()) for op in set(mapping)]
    assert {a.action for a in stream_access} >= {"dynamodb:GetShardIterator",
                                                 "dynamodb:GetRecords"}
    assert all(allowed(policy, a) for a in stream_access)
