"""template.yaml's console: IAM-authorised routes, no CORS, a read-only role, purge apart.

The roles are checked with the IAM evaluator of test_template_iam against the requests
the console really sends (recorded on the moto server), and the deployed handler is run
as Lambda would run it: an API Gateway HTTP API event through ``stream_handlers.console``.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cli_helpers import scan
from console_support import ACME_USER, CHAT, TRIP, ConsoleData, project, seed
from test_template_iam import (
    ARN,
    PAYLOAD_KEY,
    PAYLOAD_OBJECTS,
    POLICY_TABLE,
    WRITE_ACTIONS,
    Recorder,
    allowed,
    load,
)

import stream_handlers.console as console_handler
from convlog import templatecheck as tc
from convlog.console.server import ConsoleServer
from convlog.local import EmbeddedEndpoint
from eventstore import DynamoDBSession
from tests.advanced.test_user_usage import result

ROOT = Path(__file__).resolve().parents[2]
READ_PATHS = ("timeline", "items", "verify", "tools", "export")


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return tc.load_template(ROOT / "template.yaml")


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    return tc.transform(template)


def _of_type(template: dict[str, Any], kind: str) -> dict[str, Any]:
    return {n: r for n, r in template["Resources"].items() if r["Type"] == kind}


def test_every_console_route_needs_iam_and_no_cors_is_configured(
    template: dict[str, Any], transformed: dict[str, Any]
) -> None:
    api = template["Resources"]["ConsoleApi"]["Properties"]
    assert api["Auth"] == {"EnableIamAuthorizer": True, "DefaultAuthorizer": "AWS_IAM"}
    assert "CorsConfiguration" not in api
    # After the SAM transform the routes are the API's OpenAPI body: each one SigV4-only.
    (deployed,) = _of_type(transformed, "AWS::ApiGatewayV2::Api").values()
    body = deployed["Properties"]["Body"]
    routes = {f"{m.upper()} {p}": op for p, ops in body["paths"].items() for m, op in ops.items()}
    assert set(routes) == {"GET /", "GET /{proxy+}", "POST /api/admin/{proxy+}"}
    assert all(op["security"] == [{"AWS_IAM": []}] for op in routes.values())
    assert body["components"]["securitySchemes"]["AWS_IAM"][
        "x-amazon-apigateway-authtype"] == "awsSigv4"
    assert "CorsConfiguration" not in deployed["Properties"]
    assert "cors" not in json.dumps(deployed["Properties"]).lower()
    # Removing the default authorizer would leave the routes open: the check notices.
    mutant = copy.deepcopy(template)
    del mutant["Resources"]["ConsoleApi"]["Properties"]["Auth"]
    (opened,) = _of_type(tc.transform(mutant), "AWS::ApiGatewayV2::Api").values()
    assert not any("security" in op for ops in opened["Properties"]["Body"]["paths"].values()
                   for op in ops.values())


def test_only_the_purge_function_is_admin_and_only_on_post_admin_routes(
    template: dict[str, Any]
) -> None:
    functions = {n: r["Properties"] for n, r in template["Resources"].items()
                 if r["Type"] == tc.SAM_FUNCTION and r["Properties"]["Handler"].startswith(
                     "stream_handlers.console")}
    assert set(functions) == {"ConsoleFunction", "ConsolePurgeFunction"}
    reader, purger = functions["ConsoleFunction"], functions["ConsolePurgeFunction"]
    assert reader["Environment"]["Variables"]["CONSOLE_ADMIN"] == "false"
    assert purger["Environment"]["Variables"]["CONSOLE_ADMIN"] == "true"
    assert {e["Properties"]["Method"] for e in reader["Events"].values()} == {"GET"}
    assert [(e["Properties"]["Method"], e["Properties"]["Path"])
            for e in purger["Events"].values()] == [("POST", "/api/admin/{proxy+}")]
    assert reader["Role"] == {"Fn::GetAtt": ["ConsoleRole", "Arn"]}
    assert purger["Role"] == {"Fn::GetAtt": ["ConsolePurgeRole", "Arn"]}


def test_caller_policies_split_reading_from_purging(template: dict[str, Any]) -> None:
    def resource(name: str) -> str:
        (statement,) = template["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]
        assert statement["Action"] == "execute-api:Invoke"
        return str(statement["Resource"]["Fn::Sub"])

    assert resource("ConsoleReaderPolicy").endswith("${ConsoleApi}/*/GET/*")
    assert resource("ConsoleAdminPolicy").endswith("${ConsoleApi}/*/POST/api/admin/*")


def _role_policy(template: dict[str, Any], role: str) -> dict[str, Any]:
    """A role's inline policy with ARNs named as in docs/iam (log statements left out)."""
    (policy,) = template["Resources"][role]["Properties"]["Policies"]

    def resolve(value: Any) -> str:
        if value == {"Fn::GetAtt": ["EventsTable", "Arn"]}:
            return ARN + POLICY_TABLE
        if value == {"Fn::Sub": "${EventsTable.Arn}/index/by_user"}:
            return ARN + POLICY_TABLE + "/index/by_user"
        if value == {"Fn::Sub": "${PayloadBucket.Arn}/sessions/*"}:
            return PAYLOAD_OBJECTS
        if value == {"Fn::GetAtt": ["PayloadKey", "Arn"]}:
            return PAYLOAD_KEY
        return f"arn:other:{json.dumps(value)}"

    statements = [{**s, "Resource": resolve(s["Resource"])}
                  for s in policy["PolicyDocument"]["Statement"] if s["Sid"] != "WriteOwnLogs"]
    return {"Statement": statements}


def test_console_role_is_the_audit_readonly_policy(template: dict[str, Any]) -> None:
    role = _role_policy(template, "ConsoleRole")
    assert role["Statement"] == load("audit-readonly-policy.json")["Statement"]
    actions = {a for s in role["Statement"]
               for a in (s["Action"] if isinstance(s["Action"], list) else [s["Action"]])}
    assert not actions & WRITE_ACTIONS


@pytest.fixture(scope="module")
def data(endpoint: EmbeddedEndpoint) -> ConsoleData:
    return seed(endpoint, "roles")


def test_roles_allow_what_the_console_sends_and_the_reader_cannot_purge(
    endpoint: EmbeddedEndpoint, data: ConsoleData, template: dict[str, Any]
) -> None:
    reader_client = endpoint.client("dynamodb")
    reads = Recorder().attach(reader_client.meta.events)
    with ConsoleServer(ConsoleData(endpoint, reader_client, data.table).app()) as server:
        assert requests.get(server.url + "api/sessions", params={"user_id": ACME_USER},
                            timeout=30).status_code == 200
        for path in READ_PATHS:
            answer = requests.get(server.url + "api/" + path, params={"session_id": TRIP},
                                  timeout=30)
            assert answer.status_code == 200, (path, answer.text)
    admin_client = endpoint.client("dynamodb")
    purges = Recorder().attach(admin_client.meta.events)
    with ConsoleServer(ConsoleData(endpoint, admin_client, data.table).app(admin=True)) as s:
        plan = requests.post(s.url + "api/admin/purge/plan", json={"session_id": CHAT},
                             timeout=30).json()
        done = requests.post(s.url + "api/admin/purge",
                             json={"session_id": CHAT, "confirm": plan["confirm"]}, timeout=30)
        assert done.status_code == 200 and done.json()["deleted"] == plan["items"]
    reader = _role_policy(template, "ConsoleRole")
    purger = _role_policy(template, "ConsolePurgeRole")
    assert reads.accesses() and all(allowed(reader, a) for a in reads.accesses())
    assert purges.accesses() and all(allowed(purger, a) for a in purges.accesses())
    deletes = [a for a in purges.accesses() if a.action == "dynamodb:BatchWriteItem"]
    assert deletes and not any(allowed(reader, a) for a in deletes)


# ---- the deployed handler, as Lambda calls it ------------------------------------------


@pytest.fixture
def lambda_env(endpoint: EmbeddedEndpoint, data: ConsoleData,
               monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TABLE_NAME", data.table)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", endpoint.url)
    monkeypatch.setenv("CONSOLE_ADMIN", "false")
    monkeypatch.setattr(console_handler, "_app", None)
    yield
    console_handler._app = None


def _http_api_event(method: str, path: str, query: str = "", body: str | None = None
                    ) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((ROOT / "tests" / "events" /
                                        "console_http_api.json").read_text())
    event = copy.deepcopy(event)
    event["rawPath"], event["rawQueryString"] = path, query
    event["routeKey"] = f"{method} {path}"
    event["requestContext"]["http"].update(method=method, path=path)
    if body is not None:
        event["body"] = body
        event["headers"]["content-type"] = "application/json"
    return event


@pytest.mark.usefixtures("lambda_env")
def test_lambda_handler_serves_the_api_and_the_page_through_mangum() -> None:
    answer = console_handler.handler(
        _http_api_event("GET", "/api/sessions", "user_id=acme%2Falice"), None)
    assert answer["statusCode"] == 200
    sessions = json.loads(answer["body"])["sessions"]
    assert TRIP in {s["session_id"] for s in sessions}
    page = console_handler.handler(_http_api_event("GET", "/"), None)
    assert page["statusCode"] == 200 and "<title>convlog audit console" in page["body"]
    refused = console_handler.handler(
        _http_api_event("POST", "/api/admin/purge/plan", body='{"session_id": "acme/trip"}'),
        None)
    assert refused["statusCode"] == 403


def test_the_purge_role_allows_a_users_content_erasure_and_usage_erasure(
    endpoint: EmbeddedEndpoint, template: dict[str, Any]
) -> None:
    """A user's purge through the admin console, shared sessions erased by content: every
    request (content rewrite, owned cache entries, views, the user's usage totals) must
    be one the deployed purge role may send (it had Query/Scan/BatchWriteItem only)."""
    shared = seed(endpoint, "content-roles")
    team = f"acme/team-{uuid.uuid4().hex[:6]}"

    async def talk() -> None:
        for user, text in ((ACME_USER, "alice: hello"), ("acme/bob", "bob: hi")):
            session = DynamoDBSession(team, shared.client, shared.table, user_id=user)
            await session.add_items([{"role": "user", "content": text}])
            await session.store_run_usage(result(1, 10, 2))

    asyncio.run(talk())
    project(shared)
    admin_client = endpoint.client("dynamodb")
    purges = Recorder().attach(admin_client.meta.events)
    with ConsoleServer(ConsoleData(endpoint, admin_client, shared.table).app(admin=True)) as s:
        plan = requests.post(s.url + "api/admin/purge/plan", json={"user_id": ACME_USER},
                             timeout=30).json()
        done = requests.post(s.url + "api/admin/purge", json={
            "user_id": ACME_USER, "confirm": plan["confirm"], "shared": "content"}, timeout=30)
        assert done.status_code == 200, done.text
        assert done.json()["erased_content"] == [team]
    purger = _role_policy(template, "ConsolePurgeRole")
    sent = purges.accesses()
    assert {a.action for a in sent} >= {"dynamodb:UpdateItem", "dynamodb:BatchWriteItem"}
    denied = sorted({(a.action, a.resource.rsplit(":", 1)[-1])
                     for a in sent if not allowed(purger, a)})
    assert denied == []
    left = scan(shared.client, shared.table)
    assert not [i for i in left if i["pk"]["S"] == f"USER#{ACME_USER}"
                and i["sk"]["S"].startswith("USAGE#")]
