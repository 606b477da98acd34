"""template.yaml vs eventstore: lint, SAM transform, deploy into the embedded CloudFormation.

The transformed template is deployed into moto's CloudFormation (the session's embedded
endpoint), after a "package" step that zips the code into moto's S3 as `sam package`
would. moto's CloudFormation creates the table, queue, role, log group, function and
event source mapping; it has no AWS::CloudWatch::Alarm support (it would skip them with a
warning), so the alarms are stripped before create_stack and put through moto's
CloudWatch API (PutMetricAlarm) instead. moto does not apply TTL, SSE or point-in-time
recovery from a template, so those are checked on the template's own properties.
"""

from __future__ import annotations

import copy
import io
import json
import re
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from convlog import templatecheck as tc
from convlog.local import EmbeddedEndpoint
from eventstore import table as tabledef

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
BUCKET = "convlog-artifacts"
CODE_PACKAGES = ("eventstore", "projections", "stream_handlers")
ALARM_TYPE = "AWS::CloudWatch::Alarm"


def package_code() -> bytes:
    """Zip the Python packages the function's CodeUri (`lambda/`) holds, as `sam build` does."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for package in CODE_PACKAGES:
            for path in sorted((ROOT / package).rglob("*.py")):
                archive.write(path, path.relative_to(ROOT).as_posix())
    return buffer.getvalue()


class Stack:
    """One deployment of a (possibly mutated) transformed template into moto."""

    def __init__(self, endpoint: EmbeddedEndpoint, template: dict[str, Any]) -> None:
        self.endpoint = endpoint
        self.name = f"convlog-{uuid.uuid4().hex[:8]}"
        self.table_name = f"{self.name}-table"
        self.key = f"{self.name}/projector.zip"
        s3 = endpoint.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        self.zip = package_code()
        s3.put_object(Bucket=BUCKET, Key=self.key, Body=self.zip)
        transformed = tc.transform(template, code_uri=f"s3://{BUCKET}/{self.key}")
        resources = transformed["Resources"]
        # moto's CloudFormation cannot create alarms: deploy them through CloudWatch below.
        self.alarms = {k: v for k, v in resources.items() if v["Type"] == ALARM_TYPE}
        for name in self.alarms:
            del resources[name]
        self.transformed = transformed
        cfn = endpoint.client("cloudformation")
        cfn.create_stack(
            StackName=self.name,
            TemplateBody=json.dumps(transformed),
            Parameters=[{"ParameterKey": "TableName", "ParameterValue": self.table_name}],
            Capabilities=["CAPABILITY_IAM", "CAPABILITY_AUTO_EXPAND"],
        )
        self.description = cfn.describe_stacks(StackName=self.name)["Stacks"][0]
        self.outputs = {o["OutputKey"]: o["OutputValue"] for o in self.description["Outputs"]}
        self.physical = {
            r["LogicalResourceId"]: r["PhysicalResourceId"]
            for r in cfn.list_stack_resources(StackName=self.name)["StackResourceSummaries"]
        }

    def delete(self) -> None:
        self.endpoint.client("cloudformation").delete_stack(StackName=self.name)
        # The table has DeletionPolicy Retain (it is the audit log): remove it by hand.
        self.endpoint.client("dynamodb").delete_table(TableName=self.table_name)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return tc.load_template(TEMPLATE)


@pytest.fixture(scope="module")
def stack(endpoint: EmbeddedEndpoint, template: dict[str, Any]) -> Iterator[Stack]:
    deployed = Stack(endpoint, template)
    yield deployed
    deployed.delete()


# ---- static checks ---------------------------------------------------------------------


def test_cfn_lint_is_clean_including_informational_rules() -> None:
    assert tc.lint_problems(TEMPLATE) == []


def test_template_table_and_mapping_agree_with_eventstore(template: dict[str, Any]) -> None:
    assert tc.table_problems(template) == []
    transformed = tc.transform(template)
    assert tc.template_mapping_problems(transformed) == []
    types = sorted(r["Type"] for r in transformed["Resources"].values())
    # Explicit roles mean SAM adds none (no broad AWSLambdaDynamoDBExecutionRole).
    roles = {n for n, r in transformed["Resources"].items() if r["Type"] == "AWS::IAM::Role"}
    assert roles == {"ProjectorRole", "ConsoleRole", "ConsolePurgeRole", "AnchorRole",
                     "SweeperRole"}
    assert types.count(ALARM_TYPE) == 4
    assert types.count("AWS::Lambda::EventSourceMapping") == 1


def test_every_handler_resolves_to_the_real_callable(template: dict[str, Any]) -> None:
    import importlib

    transformed = tc.transform(template)
    assert tc.handler_problems(transformed) == []
    handlers = {
        r["Properties"]["Handler"]
        for r in transformed["Resources"].values()
        if r["Type"] == tc.LAMBDA_FUNCTION
    }
    assert handlers == {"stream_handlers.projector.handler", "stream_handlers.console.handler",
                        "stream_handlers.anchor.handler", "stream_handlers.sweeper.handler"}
    for module in ("stream_handlers.projector", "stream_handlers.console",
                   "stream_handlers.anchor", "stream_handlers.sweeper"):
        real = importlib.import_module(module).handler
        assert tc.resolve_handler(f"{module}.handler") is real


def test_command_line_passes_on_the_real_template() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "convlog.templatecheck", str(TEMPLATE)],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "agree with eventstore" in done.stdout


def test_alarms_watch_the_projector_and_its_queue(template: dict[str, Any]) -> None:
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in template["Resources"].values()
        if r["Type"] == ALARM_TYPE
    }
    assert set(alarms) == {"IteratorAge", "Errors", "Throttles",
                           "ApproximateNumberOfMessagesVisible"}
    for metric in ("IteratorAge", "Errors", "Throttles"):
        assert alarms[metric]["Dimensions"] == [
            {"Name": "FunctionName", "Value": {"Ref": "ProjectorFunction"}}
        ]
    assert alarms["ApproximateNumberOfMessagesVisible"]["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["ProjectorDeadLetterQueue", "QueueName"]}}
    ]


# ---- deployed into the embedded endpoint's CloudFormation ------------------------------


def test_deployed_table_matches_eventstore_definition(stack: Stack) -> None:
    assert stack.description["StackStatus"] == "CREATE_COMPLETE"
    assert stack.outputs["TableName"] == stack.table_name
    table = stack.endpoint.client("dynamodb").describe_table(TableName=stack.table_name)["Table"]
    assert tc.description_problems(table) == []
    assert stack.outputs["TableStreamArn"] == table["LatestStreamArn"]


def test_deployed_mapping_function_and_queue(stack: Stack) -> None:
    lam = stack.endpoint.client("lambda")
    function = stack.outputs["ProjectorFunctionName"]
    config = lam.get_function_configuration(FunctionName=function)
    assert config["Runtime"] == "python3.12"
    variables = config["Environment"]["Variables"]
    assert variables["TABLE_NAME"] == stack.table_name
    # TtlSeconds reaches the variable the projector reads for tool-cache lifetimes.
    assert str(variables["TOOL_CACHE_TTL_SECONDS"]) == "3600"  # moto keeps the int
    assert '"TOOL_CACHE_TTL_SECONDS"' in (ROOT / "stream_handlers" / "projector.py").read_text()
    assert variables["POWERTOOLS_LOG_LEVEL"] == "INFO"
    # The deployed handler imports, and the packaged code holds its module.
    handler = config["Handler"]
    assert callable(tc.resolve_handler(handler))
    module_file = handler.rpartition(".")[0].replace(".", "/") + ".py"
    assert module_file in zipfile.ZipFile(io.BytesIO(stack.zip)).namelist()

    mappings = lam.list_event_source_mappings(FunctionName=function)["EventSourceMappings"]
    assert len(mappings) == 1
    mapping = mappings[0]
    assert tc.mapping_problems(mapping) == []
    assert mapping["EventSourceArn"] == stack.outputs["TableStreamArn"]
    queue_url = stack.outputs["DeadLetterQueueUrl"]
    queue_arn = stack.endpoint.client("sqs").get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    assert mapping["DestinationConfig"]["OnFailure"]["Destination"] == queue_arn


def _resolve(value: Any, stack: Stack) -> Any:
    if isinstance(value, dict) and "Ref" in value:
        return stack.physical[value["Ref"]]
    if isinstance(value, dict) and "Fn::GetAtt" in value:
        logical, attribute = value["Fn::GetAtt"]
        assert attribute == "QueueName"
        return stack.physical[logical].rsplit("/", 1)[-1]
    return value


def test_alarms_are_accepted_by_cloudwatch(stack: Stack) -> None:
    cloudwatch = stack.endpoint.client("cloudwatch")
    names = []
    for logical, alarm in stack.alarms.items():
        props = copy.deepcopy(alarm["Properties"])
        props["Dimensions"] = [
            {"Name": d["Name"], "Value": _resolve(d["Value"], stack)} for d in props["Dimensions"]
        ]
        name = f"{stack.name}-{logical}"
        cloudwatch.put_metric_alarm(AlarmName=name, **props)
        names.append(name)
    found = cloudwatch.describe_alarms(AlarmNames=names)["MetricAlarms"]
    assert {a["AlarmName"] for a in found} == set(names)
    function = stack.outputs["ProjectorFunctionName"]
    assert {d["Value"] for a in found for d in a["Dimensions"]} >= {function}


def test_role_is_least_privilege(stack: Stack, template: dict[str, Any]) -> None:
    iam = stack.endpoint.client("iam")
    role = stack.physical["ProjectorRole"]
    assert iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"] == []
    names = iam.list_role_policies(RoleName=role)["PolicyNames"]
    assert names == ["convlog-projector"]
    statements = template["Resources"]["ProjectorRole"]["Properties"]["Policies"][0][
        "PolicyDocument"]["Statement"]
    by_sid = {s["Sid"]: s for s in statements}
    assert sorted(by_sid["ReadEventsWriteViews"]["Action"]) == [
        "dynamodb:BatchGetItem",
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem"]
    assert by_sid["ReadEventsWriteViews"]["Resource"] == {"Fn::GetAtt": ["EventsTable", "Arn"]}
    wildcard = [s["Sid"] for s in statements if s["Resource"] == "*"]
    assert wildcard == ["ListStreams"]
    assert all(s["Effect"] == "Allow" for s in statements)


# ---- drift: change one side, the check goes red ----------------------------------------


def _mutate_key(t: dict[str, Any]) -> None:
    props = t["Resources"]["EventsTable"]["Properties"]
    props["KeySchema"][1]["AttributeName"] = "sort"
    props["AttributeDefinitions"][1]["AttributeName"] = "sort"


def _mutate_index(t: dict[str, Any]) -> None:
    props = t["Resources"]["EventsTable"]["Properties"]
    props["GlobalSecondaryIndexes"][0]["IndexName"] = "by_owner"


def _mutate_index_key(t: dict[str, Any]) -> None:
    props = t["Resources"]["EventsTable"]["Properties"]
    props["GlobalSecondaryIndexes"][0]["KeySchema"] = [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"}
    ]
    props["AttributeDefinitions"] = props["AttributeDefinitions"][:3]


def _mutate_stream(t: dict[str, Any]) -> None:
    t["Resources"]["EventsTable"]["Properties"]["StreamSpecification"] = {
        "StreamViewType": "NEW_IMAGE"
    }


DEPLOYED_MUTATIONS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "key": (_mutate_key, "key schema"),
    "index name": (_mutate_index, "global secondary indexes"),
    "index key": (_mutate_index_key, "global secondary indexes"),
    "stream view type": (_mutate_stream, "stream"),
}


@pytest.mark.parametrize("mutation", sorted(DEPLOYED_MUTATIONS))
def test_mutated_template_fails_static_and_deployed_checks(
    mutation: str, template: dict[str, Any], endpoint: EmbeddedEndpoint
) -> None:
    mutate, words = DEPLOYED_MUTATIONS[mutation]
    mutant = copy.deepcopy(template)
    mutate(mutant)
    assert any(words in p for p in tc.table_problems(mutant))
    deployed = Stack(endpoint, mutant)
    try:
        table = endpoint.client("dynamodb").describe_table(TableName=deployed.table_name)["Table"]
        problems = tc.description_problems(table)
        assert any(words in p for p in problems), problems
    finally:
        deployed.delete()


def _set(path: tuple[Any, ...], value: Any) -> Callable[[dict[str, Any]], None]:
    def mutate(t: dict[str, Any]) -> None:
        node = t["Resources"]
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = value
    return mutate


FN = ("ProjectorFunction", "Properties")
EVENT = (*FN, "Events", "EventStream", "Properties")
TABLE = ("EventsTable", "Properties")
STATIC_MUTATIONS = {
    "ttl attribute": (_set((*TABLE, "TimeToLiveSpecification", "AttributeName"), "expires"),
                      "TTL"),
    "sse off": (_set((*TABLE, "SSESpecification", "SSEEnabled"), False), "SSE"),
    "pitr off": (_set((*TABLE, "PointInTimeRecoverySpecification",
                       "PointInTimeRecoveryEnabled"), False), "point-in-time"),
    "batch size": (_set((*EVENT, "BatchSize"), 10), "BatchSize"),
    "window": (_set((*EVENT, "MaximumBatchingWindowInSeconds"), 5), "BatchingWindow"),
    "filter": (_set((*EVENT, "FilterCriteria", "Filters", 0, "Pattern"),
                    '{"eventName": ["INSERT", "MODIFY"]}'), "filter"),
    "unbounded retries": (_set((*EVENT, "MaximumRetryAttempts"), -1), "MaximumRetryAttempts"),
    "no partial batch": (_set((*EVENT, "FunctionResponseTypes"), []), "ReportBatchItemFailures"),
    "handler": (_set((*FN, "Handler"), "stream_handlers.projector.nope"), "no callable"),
    "old runtime": (_set((*FN, "Runtime"), "python3.9"), "runtime"),
}


@pytest.mark.parametrize("mutation", sorted(STATIC_MUTATIONS))
def test_mutated_template_fails_check(mutation: str, template: dict[str, Any]) -> None:
    mutate, words = STATIC_MUTATIONS[mutation]
    mutant = copy.deepcopy(template)
    mutate(mutant)
    problems = tc.check_template(mutant)
    assert any(words in p for p in problems), problems
    assert tc.check_template(template) == []


def test_command_line_fails_on_a_mutated_copy(
    template: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mutant = copy.deepcopy(template)
    _mutate_stream(mutant)
    path = tmp_path / "template.json"
    path.write_text(json.dumps(mutant))
    assert tc.main([str(path)]) == 1
    err = capsys.readouterr().err
    assert "disagree (1 problems)" in err and "stream view type 'NEW_IMAGE'" in err


def test_changed_eventstore_definition_fails_against_the_deployed_stack(
    stack: Stack, template: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    table = stack.endpoint.client("dynamodb").describe_table(TableName=stack.table_name)["Table"]
    original = tabledef.table_definition

    def changed(stream: str = "NEW_AND_OLD_IMAGES", key: str = "sk",
                index: str = "by_user") -> Callable[[str], dict[str, Any]]:
        def definition(name: str) -> dict[str, Any]:
            d = original(name)
            d["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
            d["KeySchema"][1]["AttributeName"] = key
            d["AttributeDefinitions"][1]["AttributeName"] = key
            d["GlobalSecondaryIndexes"][0]["IndexName"] = index
            return d
        return definition

    for kwargs, words in (({"stream": "KEYS_ONLY"}, "stream"), ({"key": "seq"}, "key schema"),
                          ({"index": "by_owner"}, "global secondary indexes")):
        monkeypatch.setattr(tabledef, "table_definition", changed(**kwargs))
        assert any(words in p for p in tc.description_problems(table))
        assert any(words in p for p in tc.table_problems(template))
    monkeypatch.setattr(tabledef, "table_definition", original)
    assert tc.description_problems(table) == []

    mapping = stack.endpoint.client("lambda").list_event_source_mappings(
        FunctionName=stack.outputs["ProjectorFunctionName"])["EventSourceMappings"][0]
    monkeypatch.setattr(tabledef, "STREAM_BATCH_SIZE", 25)
    assert any("BatchSize" in p for p in tc.mapping_problems(mapping))
    monkeypatch.setattr(tabledef, "TTL_ATTRIBUTE", "expires_at")
    assert any("TTL" in p for p in tc.table_problems(template))


# ---- README deploy section -------------------------------------------------------------


def _readme_section(name: str) -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(
        rf"<!-- section: {name} \(owner: [^)]*\) -->(.*?)<!-- /section: {name} -->", text, re.S
    )
    assert match, f"README has no {name} section"
    return match.group(1)


def test_readme_deploy_section_lists_exactly_the_template_parameters_and_outputs(
    template: dict[str, Any],
) -> None:
    section = _readme_section("deploy")
    assert "sam build" in section and "sam deploy --guided" in section
    rows = re.findall(r"^\| `(\w+)` \| (parameter|output) \|", section, re.M)
    parameters = {name for name, kind in rows if kind == "parameter"}
    outputs = {name for name, kind in rows if kind == "output"}
    assert parameters == set(template["Parameters"])
    assert outputs == set(template["Outputs"])
