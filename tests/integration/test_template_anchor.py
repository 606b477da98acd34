"""template.yaml's anchor: the scheduled function, the signing key, the locked bucket and
least-privilege IAM (issue 10). The deployed checks use moto's CloudFormation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from test_template_iam import PAYLOAD_KEY, PAYLOAD_OBJECTS

import convlog.templatecheck as tc

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    template: dict[str, Any] = tc.load_template(ROOT / "template.yaml")
    return dict(template["Resources"])


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return [action] if isinstance(action, str) else list(action)


def test_the_anchor_runs_on_a_schedule_with_its_own_role(resources: dict[str, Any]) -> None:
    function = resources["AnchorFunction"]["Properties"]
    assert function["Handler"] == "stream_handlers.anchor.handler"
    assert function["Role"] == {"Fn::GetAtt": ["AnchorRole", "Arn"]}
    assert function["Events"]["Schedule"]["Type"] == "Schedule"
    env = function["Environment"]["Variables"]
    assert env["SIGNING_KEY"] == {"Fn::GetAtt": ["SigningKey", "Arn"]}
    assert env["DIGEST_BUCKET"] == {"Ref": "DigestBucket"}


def test_only_the_anchor_and_the_console_purge_may_sign(resources: dict[str, Any]) -> None:
    key = resources["SigningKey"]["Properties"]
    assert (key["KeySpec"], key["KeyUsage"]) == ("ECC_NIST_P256", "SIGN_VERIFY")
    signers = [s["Principal"] for s in key["KeyPolicy"]["Statement"]
               if s["Effect"] == "Allow" and any(
                   a in ("kms:Sign", "kms:*", "*") for a in _actions(s))]
    assert signers == [{"AWS": [{"Fn::GetAtt": ["AnchorRole", "Arn"]},
                                {"Fn::GetAtt": ["ConsolePurgeRole", "Arn"]}]}]
    for name in ("ProjectorRole", "AnchorRole", "ConsolePurgeRole", "ConsoleRole"):
        for policy in resources[name]["Properties"]["Policies"]:
            for statement in policy["PolicyDocument"]["Statement"]:
                kms = {a for a in _actions(statement) if a.startswith("kms:")}
                if kms and statement["Resource"] == {"Fn::GetAtt": ["PayloadKey", "Arn"]}:
                    # the payload bucket's SSE-KMS key (issue 13): encrypt/decrypt, no signing
                    assert kms <= {"kms:Decrypt", "kms:GenerateDataKey"}, name
                    continue
                assert not kms, name


def test_digests_are_locked_in_compliance_mode_and_nobody_may_delete_them(
    resources: dict[str, Any]
) -> None:
    bucket = resources["DigestBucket"]
    props = bucket["Properties"]
    assert props["ObjectLockEnabled"] is True
    assert props["ObjectLockConfiguration"]["Rule"]["DefaultRetention"]["Mode"] == "COMPLIANCE"
    assert props["VersioningConfiguration"] == {"Status": "Enabled"}
    assert bucket["DeletionPolicy"] == "Retain"
    anchor = resources["AnchorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    granted = {a for s in anchor["Statement"] for a in _actions(s)}
    assert granted == {"dynamodb:Scan", "s3:ListBucket", "s3:GetObject", "s3:PutObject",
                       "s3:PutObjectRetention", "logs:CreateLogStream", "logs:PutLogEvents"}
    deny = resources["DigestBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"][0]
    assert (deny["Effect"], deny["Action"]) == ("Deny", "s3:PutObject")
    assert deny["Condition"]["ArnNotEquals"]["aws:PrincipalArn"] == [
        {"Fn::GetAtt": ["AnchorRole", "Arn"]}, {"Fn::GetAtt": ["ConsolePurgeRole", "Arn"]}]


def test_the_console_purge_signs_its_records_and_cannot_delete_digests(
    resources: dict[str, Any]
) -> None:
    """A deployed console purge signs what it erases (issue 11): without the digest
    settings and rights, verify would report every purged anchored session as deleted."""
    env = resources["ConsolePurgeFunction"]["Properties"]["Environment"]["Variables"]
    assert env["CONVLOG_DIGEST_BUCKET"] == {"Ref": "DigestBucket"}
    assert env["CONVLOG_SIGNING_KEY"] == {"Fn::GetAtt": ["SigningKey", "Arn"]}
    statements = resources["ConsolePurgeRole"]["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"]
    on_digests = [s for s in statements
                  if "DigestBucket" in json.dumps(s["Resource"])]
    granted = {a for s in on_digests for a in _actions(s)}
    assert granted == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:PutObjectRetention"}
    everything = {a for s in statements for a in _actions(s)}
    assert not any(a.startswith("s3:Delete") and "Payload" not in json.dumps(s["Resource"])
                   for s in statements for a in _actions(s)), everything


@pytest.mark.parametrize("name", ["application-policy.json", "tenant-isolation-policy.json"])
def test_application_and_tenant_policies_can_neither_sign_nor_touch_digests(name: str) -> None:
    document = json.loads((ROOT / "docs" / "iam" / name).read_text())
    actions = {a for s in document["Statement"] for a in _actions(s)}
    assert not any(a in ("kms:Sign", "kms:*", "s3:*", "*") for a in actions), actions
    # S3 and KMS only on the payload bucket's objects and key (issue 13), never digests
    for statement in document["Statement"]:
        if any(a.startswith(("kms:", "s3:")) for a in _actions(statement)):
            assert statement["Resource"] in (PAYLOAD_OBJECTS, PAYLOAD_KEY), statement
