"""IAM for the payload bucket (issue 13): docs/iam and template.yaml grant what is sent.

The S3 requests of the library, the CLI, the console and the sweeper are recorded on
real clients talking to the embedded endpoint (botocore's ``provide-client-params``
hook: the API parameters, never altered), mapped to the IAM actions S3 authorises them
with, and evaluated against docs/iam and the template's roles with ARNs named as in
docs/iam. The DynamoDB side uses the recorder and evaluator of test_template_iam.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import requests
from test_session_size_ttl import noise
from test_template_iam import ARN, IAM, POLICY_TABLE, Access, Recorder, allowed, load

from convlog.cli import main as convlog
from convlog.console.app import create_app
from convlog.console.server import ConsoleServer
from convlog.local import EmbeddedEndpoint
from convlog.sweep import sweep_orphans
from convlog.templatecheck import load_template
from eventstore import DynamoDBSession
from eventstore.client import wrap_client
from eventstore.payloads import PayloadStore
from eventstore.records import encode_body

ROOT = Path(__file__).resolve().parents[2]
DOCS_BUCKET = "arn:aws:s3:::my-convlog-payloads"
DOCS_KEY = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"


class S3Recorder:
    """Records the S3 operations and parameters a botocore client or session sends."""

    def __init__(self, bucket: str) -> None:
        self.bucket = bucket
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def attach(self, events: Any) -> S3Recorder:
        events.register("provide-client-params.s3", self._on_params)
        return self

    def _on_params(self, params: dict[str, Any], model: Any, **_: Any) -> None:
        self.calls.append((model.name, dict(params)))

    @property
    def operations(self) -> set[str]:
        return {op for op, _ in self.calls}

    def accesses(self) -> list[tuple[Access, str | None]]:
        """(access, listed prefix) of every recorded call, resources named as in docs."""
        found: list[tuple[Access, str | None]] = []
        for op, params in self.calls:
            assert params["Bucket"] == self.bucket, params
            obj = f"{DOCS_BUCKET}/{params.get('Key', '')}"
            if op == "PutObject":
                found.append((Access("s3:PutObject", obj, ()), None))
                if "Tagging" in params:
                    found.append((Access("s3:PutObjectTagging", obj, ()), None))
            elif op in ("GetObject", "HeadObject"):
                found.append((Access("s3:GetObject", obj, ()), None))
            elif op == "ListObjectsV2":
                found.append((Access("s3:ListBucket", DOCS_BUCKET, ()), params.get("Prefix", "")))
            elif op == "DeleteObjects":
                found += [(Access("s3:DeleteObject", f"{DOCS_BUCKET}/{o['Key']}", ()), None)
                          for o in params["Delete"]["Objects"]]
            else:
                found.append((Access(f"s3:{op}", obj, ()), None))
        return found


def _like(pattern: str, value: str) -> bool:
    regex = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.S) is not None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def s3_allowed(policy: dict[str, Any], access: Access, prefix: str | None) -> bool:
    """Whether an Allow statement grants an S3 access (``StringLike s3:prefix`` honoured)."""
    for statement in policy["Statement"]:
        if not any(_like(a, access.action) for a in _list(statement["Action"])):
            continue
        if not any(_like(r, access.resource) for r in _list(statement["Resource"])):
            continue
        condition = statement.get("Condition", {})
        assert set(condition) <= {"StringLike"}, condition
        patterns = condition.get("StringLike", {}).get("s3:prefix")
        if patterns is None or (prefix is not None
                                and any(_like(p, prefix) for p in _list(patterns))):
            return True
    return False


def denied_s3(policy: dict[str, Any], recorder: S3Recorder) -> list[Access]:
    return [a for a, prefix in recorder.accesses() if not s3_allowed(policy, a, prefix)]


def _resolve(value: Any) -> Any:
    """Template ARNs as docs/iam names them."""
    known = {
        json.dumps({"Fn::GetAtt": ["EventsTable", "Arn"]}): ARN + POLICY_TABLE,
        json.dumps({"Fn::GetAtt": ["PayloadBucket", "Arn"]}): DOCS_BUCKET,
        json.dumps({"Fn::Sub": "${PayloadBucket.Arn}/sessions/*"}): DOCS_BUCKET + "/sessions/*",
        json.dumps({"Fn::GetAtt": ["PayloadKey", "Arn"]}): DOCS_KEY,
    }
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return known.get(json.dumps(value), value if isinstance(value, str) else "arn:other")


def template_policy(name: str) -> dict[str, Any]:
    """A role's inline policy or a managed policy, ARNs resolved (log statements out)."""
    props = load_template(ROOT / "template.yaml")["Resources"][name]["Properties"]
    document = props["Policies"][0]["PolicyDocument"] if "Policies" in props \
        else props["PolicyDocument"]
    return {"Statement": [{**s, "Resource": _resolve(s["Resource"])}
                          for s in document["Statement"] if s["Sid"] != "WriteOwnLogs"]}


def _payload_statements(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [s for s in policy["Statement"]
            if any(str(a).startswith(("s3:", "kms:")) for a in _list(s["Action"]))]


async def _big_sessions(client: Any, table: str, s3: Any, bucket: str) -> None:
    session = DynamoDBSession("iam-big", client, table, s3_client=s3, bucket_name=bucket,
                              user_id="carol", ttl_seconds=3 * 86400)
    await session.add_items([{"role": "tool", "content": noise(500_000, seed=51)}])
    plain = DynamoDBSession("iam-plain", client, table, s3_client=s3, bucket_name=bucket,
                            user_id="carol")
    await plain.add_items([{"role": "tool", "content": noise(500_000, seed=52)}])
    fresh = DynamoDBSession("iam-big", client, table, s3_client=s3, bucket_name=bucket)
    assert len(await fresh.get_items()) == 1


async def test_application_policy_allows_the_librarys_s3_requests(
    endpoint: EmbeddedEndpoint, table: str, bucket: str
) -> None:
    client, s3 = endpoint.client("dynamodb"), endpoint.client("s3")
    dynamo, objects = Recorder().attach(client.meta.events), S3Recorder(bucket)
    objects.attach(s3.meta.events)
    await _big_sessions(client, table, s3, bucket)
    assert objects.operations == {"PutObject", "GetObject"}
    assert any("Tagging" in p for _, p in objects.calls)  # the TTL session's object
    policy = load("application-policy.json")
    assert denied_s3(policy, objects) == []
    assert [a for a in dynamo.accesses() if not allowed(policy, a)] == []


def test_docs_application_policy_has_the_templates_payload_rights() -> None:
    docs = _payload_statements(load("application-policy.json"))
    template = _payload_statements(template_policy("ApplicationPayloadPolicy"))
    assert docs == template and docs


def test_docs_audit_policy_reads_payloads_as_the_console_role_does() -> None:
    docs = _payload_statements(load("audit-readonly-policy.json"))
    assert docs == _payload_statements(template_policy("ConsoleRole")) and docs
    actions = {a for s in docs for a in _list(s["Action"])}
    assert actions == {"s3:GetObject", "kms:Decrypt"}


async def test_audit_policy_allows_cli_verify_and_replay_with_a_bucket(
    endpoint: EmbeddedEndpoint, table: str, bucket: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import boto3

    await _big_sessions(endpoint.client("dynamodb"), table, endpoint.client("s3"), bucket)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", boto3.session.Session())
    dynamo = Recorder().attach(boto3.DEFAULT_SESSION.events)
    objects = S3Recorder(bucket).attach(boto3.DEFAULT_SESSION.events)
    conn = ["--table", table, "--endpoint-url", endpoint.url, "--bucket", bucket]
    assert convlog(["verify", "iam-big", *conn]) == 0
    assert convlog(["replay", "iam-big", "--format", "jsonl", *conn]) == 0
    capsys.readouterr()
    assert objects.operations == {"GetObject"}
    policy = load("audit-readonly-policy.json")
    assert denied_s3(policy, objects) == []
    assert [a for a in dynamo.accesses() if not allowed(policy, a)] == []


async def test_console_roles_allow_the_s3_requests_the_console_sends(
    endpoint: EmbeddedEndpoint, table: str, bucket: str
) -> None:
    client, s3 = endpoint.client("dynamodb"), endpoint.client("s3")
    await _big_sessions(client, table, s3, bucket)
    reader_s3 = endpoint.client("s3")
    reads = S3Recorder(bucket).attach(reader_s3.meta.events)
    app = create_app(client, table, s3_client=reader_s3, bucket_name=bucket)
    with ConsoleServer(app) as server:
        for path in ("timeline", "items", "export"):
            answer = requests.get(server.url + "api/" + path, timeout=60,
                                  params={"session_id": "iam-big"})
            assert answer.status_code == 200, answer.text
    purger_s3 = endpoint.client("s3")
    purges = S3Recorder(bucket).attach(purger_s3.meta.events)
    app = create_app(client, table, admin=True, s3_client=purger_s3, bucket_name=bucket)
    with ConsoleServer(app) as server:
        target = {"session_id": "iam-big"}
        plan = requests.post(server.url + "api/admin/purge/plan", json=target,
                             timeout=60).json()
        done = requests.post(server.url + "api/admin/purge", timeout=60,
                             json={**target, "confirm": plan["confirm"]})
        assert done.status_code == 200, done.text
    assert reads.operations == {"GetObject"}
    assert purges.operations == {"ListObjectsV2", "DeleteObjects"}
    assert denied_s3(template_policy("ConsoleRole"), reads) == []
    assert denied_s3(template_policy("ConsolePurgeRole"), purges) == []
    assert denied_s3(template_policy("ConsoleRole"), purges)  # the reader cannot erase


async def test_sweeper_role_allows_what_the_sweep_sends(
    endpoint: EmbeddedEndpoint, table: str, bucket: str
) -> None:
    client, s3 = endpoint.client("dynamodb"), endpoint.client("s3")
    await _big_sessions(client, table, s3, bucket)
    orphan = encode_body({"items": [{"role": "tool", "content": noise(500_000, seed=53)}]})
    await PayloadStore(s3, bucket).put("iam-plain", orphan, ttl_seconds=None)
    dynamo = Recorder().attach(client.meta.events)
    objects = S3Recorder(bucket).attach(s3.meta.events)
    report = await sweep_orphans(wrap_client(client), table, PayloadStore(s3, bucket),
                                 min_age_seconds=0)
    assert report.deleted == 1
    assert objects.operations == {"ListObjectsV2", "HeadObject", "DeleteObjects"}
    role = template_policy("SweeperRole")
    assert denied_s3(role, objects) == []
    assert dynamo.operations == {"Scan"}
    assert [a for a in dynamo.accesses() if not allowed(role, a)] == []
    assert not any(s3_allowed(role, Access(a, DOCS_BUCKET + "/sessions/x", ()), None)
                   for a in ("s3:PutObject", "s3:PutObjectTagging"))


def test_docs_policies_name_only_the_payload_bucket_and_key() -> None:
    for path in sorted(IAM.glob("*.json")):
        for statement in _payload_statements(json.loads(path.read_text())):
            for resource in _list(statement["Resource"]):
                assert resource in (DOCS_BUCKET + "/sessions/*", DOCS_KEY), (path, resource)
