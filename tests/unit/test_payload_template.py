"""template.yaml's payload bucket agrees with eventstore.payloads (issue 13)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convlog.templatecheck import load_template
from eventstore.payloads import EXPIRY_TAG, OBJECT_PREFIX, lifecycle_rules

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"


def _api_shape(rule: dict[str, Any]) -> dict[str, Any]:
    """A CloudFormation lifecycle rule in the shape of the S3 API (``lifecycle_rules``)."""
    shaped: dict[str, Any] = {"ID": rule["Id"], "Status": rule["Status"]}
    if "TagFilters" in rule:
        (tag,) = rule["TagFilters"]
        shaped["Filter"] = {"Tag": {"Key": tag["Key"], "Value": tag["Value"]}}
    else:
        shaped["Filter"] = {"Prefix": rule["Prefix"]}
    if "ExpirationInDays" in rule:
        shaped["Expiration"] = {"Days": rule["ExpirationInDays"]}
    if "AbortIncompleteMultipartUpload" in rule:
        shaped["AbortIncompleteMultipartUpload"] = rule["AbortIncompleteMultipartUpload"]
    return shaped


def test_bucket_lifecycle_is_the_one_create_bucket_if_not_exists_applies() -> None:
    bucket = load_template(TEMPLATE)["Resources"]["PayloadBucket"]["Properties"]
    rules = [_api_shape(r) for r in bucket["LifecycleConfiguration"]["Rules"]]
    assert rules == lifecycle_rules()
    assert all(r["Filter"].get("Tag", {}).get("Key", EXPIRY_TAG) == EXPIRY_TAG for r in rules)


def test_bucket_is_private_and_kms_encrypted() -> None:
    bucket = load_template(TEMPLATE)["Resources"]["PayloadBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    (sse,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert sse["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_app_and_projector_may_touch_only_payload_objects() -> None:
    resources = load_template(TEMPLATE)["Resources"]
    projector = resources["ProjectorRole"]["Properties"]["Policies"][0]["PolicyDocument"]
    app = resources["ApplicationPayloadPolicy"]["Properties"]["PolicyDocument"]
    for document in (projector, app):
        s3 = [s for s in document["Statement"]
              if any(str(a).startswith("s3:") for a in s["Action"])]
        assert len(s3) == 1
        assert sorted(s3[0]["Action"]) == ["s3:GetObject", "s3:PutObject", "s3:PutObjectTagging"]
        assert s3[0]["Resource"] == {"Fn::Sub": "${PayloadBucket.Arn}/" + OBJECT_PREFIX + "*"}
    env = resources["ProjectorFunction"]["Properties"]["Environment"]["Variables"]
    assert env["PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}


def _statements(resources: dict[str, Any], role: str) -> dict[str, dict[str, Any]]:
    (policy,) = resources[role]["Properties"]["Policies"]
    return {s["Sid"]: s for s in policy["PolicyDocument"]["Statement"]}


def _actions(statement: dict[str, Any]) -> list[str]:
    action = statement["Action"]
    return sorted([action] if isinstance(action, str) else action)


def test_the_sweeper_runs_daily_with_list_get_delete_on_the_bucket_only() -> None:
    resources = load_template(TEMPLATE)["Resources"]
    function = resources["SweeperFunction"]["Properties"]
    assert function["Handler"] == "stream_handlers.sweeper.handler"
    assert function["Role"] == {"Fn::GetAtt": ["SweeperRole", "Arn"]}
    assert function["Events"]["Schedule"]["Type"] == "Schedule"
    assert function["Events"]["Schedule"]["Properties"]["Schedule"] == "rate(1 day)"
    env = function["Environment"]["Variables"]
    assert env["PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}
    assert env["TABLE_NAME"] == {"Ref": "EventsTable"}
    by_sid = _statements(resources, "SweeperRole")
    assert sorted(by_sid) == ["CheckAndDeleteOrphans", "ListPayloadObjects",
                              "ScanObjectReferences", "WriteOwnLogs"]
    listing = by_sid["ListPayloadObjects"]
    assert _actions(listing) == ["s3:ListBucket"]
    assert listing["Resource"] == {"Fn::GetAtt": ["PayloadBucket", "Arn"]}
    assert listing["Condition"] == {"StringLike": {"s3:prefix": OBJECT_PREFIX + "*"}}
    objects = by_sid["CheckAndDeleteOrphans"]
    assert _actions(objects) == ["s3:DeleteObject", "s3:GetObject"]
    assert objects["Resource"] == {"Fn::Sub": "${PayloadBucket.Arn}/" + OBJECT_PREFIX + "*"}
    scan = by_sid["ScanObjectReferences"]
    assert _actions(scan) == ["dynamodb:Scan"]
    assert scan["Resource"] == {"Fn::GetAtt": ["EventsTable", "Arn"]}


def test_the_consoles_read_and_purge_payload_objects() -> None:
    resources = load_template(TEMPLATE)["Resources"]
    for name in ("ConsoleFunction", "ConsolePurgeFunction"):
        env = resources[name]["Properties"]["Environment"]["Variables"]
        assert env["PAYLOAD_BUCKET"] == {"Ref": "PayloadBucket"}
    reader = _statements(resources, "ConsoleRole")
    assert _actions(reader["ReadPayloadObjects"]) == ["s3:GetObject"]
    assert _actions(reader["DecryptPayloads"]) == ["kms:Decrypt"]
    purger = _statements(resources, "ConsolePurgeRole")
    assert _actions(purger["ListPayloadObjects"]) == ["s3:ListBucket"]
    assert _actions(purger["DeletePayloadObjects"]) == ["s3:DeleteObject"]
    s3_actions = {a for role in ("ConsoleRole", "ConsolePurgeRole")
                  for s in _statements(resources, role).values() for a in _actions(s)
                  if a.startswith("s3:") and "PayloadBucket" in str(s["Resource"])}
    assert s3_actions == {"s3:GetObject", "s3:ListBucket", "s3:DeleteObject"}
    # the purge role's other S3 rights are on the digest bucket (its signed records)
    others = {str(s["Resource"]) for role in ("ConsoleRole", "ConsolePurgeRole")
              for s in _statements(resources, role).values()
              if any(a.startswith("s3:") for a in _actions(s))
              and "PayloadBucket" not in str(s["Resource"])}
    assert others and all("DigestBucket" in r for r in others), others
