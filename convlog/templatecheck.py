"""Prove that ``template.yaml`` and ``eventstore``'s table definition agree.

Four checks, each returning a list of human-readable problems (empty = in agreement):

- ``lint_problems``: cfn-lint, informational rules included;
- ``transform``: the SAM transform (aws-sam-translator), offline;
- ``table_problems`` / ``description_problems``: the template's table, or a deployed
  table's ``DescribeTable``, against ``eventstore.table.table_definition``;
- ``mapping_problems``: the projector's event source mapping against the stream
  constants the local pump uses; ``handler_problems``: every function's ``Handler``
  is an importable callable.

The definition is read from ``eventstore.table`` at call time, so a change on either
side makes ``check`` report drift. cfn-lint and aws-sam-translator are in the ``test``
extra and imported only when needed.

Example:
    ```bash
    python -m convlog.templatecheck template.yaml   # exit 1 and a list on drift
    ```

    ```python
    from convlog.templatecheck import check

    assert check("template.yaml") == []
    ```
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eventstore import table as tabledef
from eventstore.errors import InvalidInputError, OptionalDependencyError

TABLE_TYPE = "AWS::DynamoDB::Table"
SAM_FUNCTION = "AWS::Serverless::Function"
LAMBDA_FUNCTION = "AWS::Lambda::Function"
MAPPING_TYPE = "AWS::Lambda::EventSourceMapping"
PACKAGED_CODE_URI = "s3://convlog-artifacts/projector.zip"
MIN_PYTHON_RUNTIME = (3, 12)
_INSTALL = "pip install 'convlog[test]'"

Template = dict[str, Any]


def load_template(path: str | Path) -> Template:
    """Parse a CloudFormation/SAM template (YAML or JSON, short-form tags allowed).

    Raises:
        InvalidInputError: The file is missing or not a template.
        OptionalDependencyError: cfn-lint is not installed.
    """
    try:
        from cfnlint.decode import decode
    except ImportError as exc:
        raise OptionalDependencyError(f"the template check needs cfn-lint: {_INSTALL}") from exc
    if not Path(path).is_file():
        raise InvalidInputError(f"template {str(path)!r} does not exist")
    template, errors = decode(str(path))
    if errors or not isinstance(template, dict):
        raise InvalidInputError(f"{path}: not a template: {[str(e) for e in errors]}")
    plain: Template = json.loads(json.dumps(template))
    return plain


def lint_problems(path: str | Path, region: str = "us-east-1") -> list[str]:
    """Return cfn-lint's findings (errors, warnings and informational) for ``path``."""
    try:
        from cfnlint.api import lint
        from cfnlint.config import ManualArgs
    except ImportError as exc:
        raise OptionalDependencyError(f"the template check needs cfn-lint: {_INSTALL}") from exc
    text = Path(path).read_text(encoding="utf-8")
    matches = lint(text, config=ManualArgs(include_checks=["I"], regions=[region]))
    return [f"cfn-lint: {m}" for m in matches]


def transform(
    template: Template, *, code_uri: str = PACKAGED_CODE_URI, region: str = "us-east-1"
) -> Template:
    """Run the SAM transform offline and return the CloudFormation template.

    Local ``CodeUri`` paths are replaced by ``code_uri`` first, as ``sam package`` does.
    No managed policy is looked up (the template names none), so no IAM call is made.

    Raises:
        InvalidInputError: The SAM transform rejected the template.
        OptionalDependencyError: aws-sam-translator is not installed.
    """
    try:
        import boto3
        from samtranslator.model.exceptions import InvalidDocumentException
        from samtranslator.parser.parser import Parser
        from samtranslator.translator.translator import Translator
    except ImportError as exc:
        raise OptionalDependencyError(
            f"the template check needs aws-sam-translator: {_INSTALL}"
        ) from exc
    packaged: Template = json.loads(json.dumps(template))
    for resource in packaged.get("Resources", {}).values():
        props = resource.get("Properties", {})
        uri = props.get("CodeUri")
        local = isinstance(uri, str) and not uri.startswith("s3://")
        if resource.get("Type") == SAM_FUNCTION and local:
            props["CodeUri"] = code_uri
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=region))
    try:
        result: Template = translator.translate(
            packaged, parameter_values={}, get_managed_policy_map=dict
        )
    except InvalidDocumentException as exc:
        causes = "; ".join(str(c) for c in exc.causes)
        raise InvalidInputError(f"SAM transform failed: {causes}") from exc
    return result


def _pairs(schema: Sequence[dict[str, str]] | None) -> list[tuple[str, str]]:
    return sorted((k.get("AttributeName", "?"), k.get("KeyType", "?")) for k in schema or [])


def _attrs(definitions: Sequence[dict[str, str]] | None) -> list[tuple[str, str]]:
    return sorted((a["AttributeName"], a["AttributeType"]) for a in definitions or [])


def _indexes(indexes: Sequence[dict[str, Any]] | None) -> dict[str, Any]:
    return {
        g["IndexName"]: (_pairs(g.get("KeySchema")), g.get("Projection", {}).get("ProjectionType"))
        for g in indexes or []
    }


def _common_problems(where: str, found: dict[str, Any], key_attrs_only: bool) -> list[str]:
    """Keys, attribute types, indexes and billing mode against the definition."""
    wanted = tabledef.table_definition("x")
    problems = []
    if _pairs(found.get("KeySchema")) != _pairs(wanted["KeySchema"]):
        problems.append(
            f"{where}: key schema {_pairs(found.get('KeySchema'))}, "
            f"eventstore defines {_pairs(wanted['KeySchema'])}"
        )
    have_attrs, want_attrs = _attrs(found.get("AttributeDefinitions")), _attrs(
        wanted["AttributeDefinitions"]
    )
    if key_attrs_only:  # DescribeTable may list more attributes than were defined
        have_attrs = [a for a in have_attrs if a in want_attrs or a[0] in dict(want_attrs)]
    if have_attrs != want_attrs:
        problems.append(
            f"{where}: attribute definitions {have_attrs}, eventstore defines {want_attrs}"
        )
    have_idx = _indexes(found.get("GlobalSecondaryIndexes"))
    want_idx = _indexes(wanted["GlobalSecondaryIndexes"])
    if have_idx != want_idx:
        problems.append(
            f"{where}: global secondary indexes {have_idx}, eventstore defines {want_idx}"
        )
    billing = found.get("BillingMode") or found.get("BillingModeSummary", {}).get("BillingMode")
    if billing != wanted["BillingMode"]:
        problems.append(
            f"{where}: billing mode {billing!r}, eventstore uses {wanted['BillingMode']!r}"
        )
    return problems


def find_table(template: Template) -> tuple[str, dict[str, Any]]:
    """Return the logical id and properties of the template's only DynamoDB table.

    Raises:
        InvalidInputError: The template has no table, or more than one.
    """
    tables = [
        (name, r.get("Properties", {}))
        for name, r in template.get("Resources", {}).items()
        if r.get("Type") == TABLE_TYPE
    ]
    if len(tables) != 1:
        raise InvalidInputError(f"expected exactly one {TABLE_TYPE}, found {len(tables)}")
    return tables[0]


def table_problems(template: Template) -> list[str]:
    """Compare the template's table resource with ``eventstore.table`` (SAM or CFN form)."""
    try:
        name, props = find_table(template)
    except InvalidInputError as exc:
        return [str(exc)]
    where = f"template table {name}"
    wanted = tabledef.table_definition("x")
    problems = _common_problems(where, props, key_attrs_only=False)
    view = props.get("StreamSpecification", {}).get("StreamViewType")
    if view != wanted["StreamSpecification"]["StreamViewType"]:
        problems.append(
            f"{where}: stream view type {view!r}, eventstore uses "
            f"{wanted['StreamSpecification']['StreamViewType']!r}"
        )
    ttl = props.get("TimeToLiveSpecification", {})
    if ttl.get("AttributeName") != tabledef.TTL_ATTRIBUTE or ttl.get("Enabled") is not True:
        problems.append(
            f"{where}: TTL {ttl}, eventstore expires items by {tabledef.TTL_ATTRIBUTE!r}"
        )
    sse_wanted = bool(wanted.get("SSESpecification", {}).get("Enabled"))
    if bool(props.get("SSESpecification", {}).get("SSEEnabled")) != sse_wanted:
        problems.append(f"{where}: SSESpecification.SSEEnabled must be {sse_wanted}")
    pitr = props.get("PointInTimeRecoverySpecification", {})
    if pitr.get("PointInTimeRecoveryEnabled") is not True:
        problems.append(f"{where}: point-in-time recovery must be enabled (audit log)")
    return problems


def description_problems(description: dict[str, Any]) -> list[str]:
    """Compare a ``DescribeTable`` ``Table`` with ``eventstore.table`` (keys, GSI, stream)."""
    where = f"deployed table {description.get('TableName', '?')!r}"
    problems = _common_problems(where, description, key_attrs_only=True)
    wanted = tabledef.table_definition("x")["StreamSpecification"]
    stream = description.get("StreamSpecification", {})
    if not stream.get("StreamEnabled") or stream.get("StreamViewType") != wanted["StreamViewType"]:
        problems.append(f"{where}: stream {stream}, eventstore uses {wanted}")
    return problems


def mapping_problems(props: dict[str, Any], where: str = "event source mapping") -> list[str]:
    """Compare event source mapping properties (template or ``ListEventSourceMappings``).

    Batch size, batching window and filter must equal the constants the local pump uses;
    retries and record age must be bounded; partial batch responses, bisection and an
    on-failure destination must be on.
    """
    problems = []
    if props.get("BatchSize") != tabledef.STREAM_BATCH_SIZE:
        problems.append(
            f"{where}: BatchSize {props.get('BatchSize')}, eventstore uses "
            f"{tabledef.STREAM_BATCH_SIZE}"
        )
    window = props.get("MaximumBatchingWindowInSeconds")
    if window != tabledef.STREAM_BATCHING_WINDOW_SECONDS:
        problems.append(
            f"{where}: MaximumBatchingWindowInSeconds {window}, eventstore uses "
            f"{tabledef.STREAM_BATCHING_WINDOW_SECONDS}"
        )
    filters = props.get("FilterCriteria", {}).get("Filters", [])
    patterns = [json.loads(f["Pattern"]) for f in filters if "Pattern" in f]
    if patterns != [tabledef.STREAM_FILTER_PATTERN]:
        problems.append(
            f"{where}: filter patterns {patterns}, eventstore uses "
            f"[{tabledef.STREAM_FILTER_PATTERN}]"
        )
    if "ReportBatchItemFailures" not in props.get("FunctionResponseTypes", []):
        problems.append(f"{where}: FunctionResponseTypes must include ReportBatchItemFailures")
    if props.get("BisectBatchOnFunctionError") is not True:
        problems.append(f"{where}: BisectBatchOnFunctionError must be true")
    retries = props.get("MaximumRetryAttempts")
    if not isinstance(retries, int) or not 0 <= retries <= 10000:
        problems.append(f"{where}: MaximumRetryAttempts must be bounded (0..10000), got {retries}")
    age = props.get("MaximumRecordAgeInSeconds")
    if not isinstance(age, int) or not 60 <= age <= 604800:
        problems.append(f"{where}: MaximumRecordAgeInSeconds must be bounded, got {age}")
    if not props.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination"):
        problems.append(f"{where}: DestinationConfig.OnFailure.Destination is missing")
    return problems


def template_mapping_problems(transformed: Template) -> list[str]:
    """Check the one event source mapping on the table's stream in a transformed template."""
    try:
        table_name = find_table(transformed)[0]
    except InvalidInputError as exc:
        return [str(exc)]
    stream = {"Fn::GetAtt": [table_name, "StreamArn"]}
    mappings = [
        (name, r.get("Properties", {}))
        for name, r in transformed.get("Resources", {}).items()
        if r.get("Type") == MAPPING_TYPE
        and r.get("Properties", {}).get("EventSourceArn") == stream
    ]
    if len(mappings) != 1:
        return [f"expected one event source mapping on {table_name}'s stream, not {len(mappings)}"]
    name, props = mappings[0]
    return mapping_problems(props, where=f"template {name}")


def resolve_handler(handler: str) -> Any:
    """Import ``package.module.attribute`` and return the attribute.

    Raises:
        InvalidInputError: The module cannot be imported or has no such callable.
    """
    module_name, _, attribute = handler.rpartition(".")
    if not module_name:
        raise InvalidInputError(f"handler {handler!r} is not of the form module.function")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InvalidInputError(f"handler {handler!r}: cannot import {module_name}: {exc}") from exc
    target = getattr(module, attribute, None)
    if not callable(target):
        raise InvalidInputError(f"handler {handler!r}: {module_name} has no callable {attribute}")
    return target


def handler_problems(template: Template) -> list[str]:
    """Every function's ``Handler`` must import, and its runtime must be Python 3.12+."""
    problems = []
    globals_ = template.get("Globals", {}).get("Function", {})
    for name, resource in template.get("Resources", {}).items():
        if resource.get("Type") not in (SAM_FUNCTION, LAMBDA_FUNCTION):
            continue
        props = resource.get("Properties", {})
        runtime = str(props.get("Runtime", globals_.get("Runtime", "")))
        version = runtime.removeprefix("python").split(".")
        if not (runtime.startswith("python") and len(version) == 2 and all(
            v.isdigit() for v in version
        ) and (int(version[0]), int(version[1])) >= MIN_PYTHON_RUNTIME):
            problems.append(f"{name}: runtime {runtime!r}, convlog needs python3.12 or newer")
        try:
            resolve_handler(str(props.get("Handler", "")))
        except InvalidInputError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def check_template(template: Template) -> list[str]:
    """Run every check except cfn-lint on a parsed template; return the problems."""
    problems = table_problems(template)
    try:
        transformed = transform(template)
    except InvalidInputError as exc:
        return [*problems, str(exc)]
    problems += template_mapping_problems(transformed)
    problems += handler_problems(transformed)
    return problems


def check(path: str | Path) -> list[str]:
    """Run every check (cfn-lint included) on the template at ``path``."""
    try:
        template = load_template(path)
    except InvalidInputError as exc:
        return [str(exc)]
    return lint_problems(path) + check_template(template)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``python -m convlog.templatecheck [template.yaml]``; 1 on drift."""
    args = list(sys.argv[1:] if argv is None else argv)
    path = args[0] if args else "template.yaml"
    problems = check(path)
    if problems:
        print(f"{path} and eventstore disagree ({len(problems)} problems):", file=sys.stderr)
        for problem in problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1
    print(f"{path}: lint clean, SAM transform ok, table/stream/handlers agree with eventstore")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
