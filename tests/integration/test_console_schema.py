"""Property test of the console API through its own OpenAPI document (schemathesis).

The document is fetched from the running console (``/openapi.json``, uvicorn on
127.0.0.1, an admin console so the purge operations run too) over a seeded table on the
moto server. Every operation gets generated inputs, valid and invalid; every default
check of schemathesis runs on every answer: no 500, no status or content type the
document does not list, bodies that match their schema, invalid input rejected.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from console_support import ACME_USER, TRIP, seed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from convlog.local import EmbeddedEndpoint

OPERATIONS = {
    ("GET", "/api/info"), ("GET", "/api/sessions"), ("GET", "/api/timeline"),
    ("GET", "/api/items"), ("GET", "/api/verify"), ("GET", "/api/tools"),
    ("GET", "/api/export"), ("POST", "/api/admin/purge/plan"), ("POST", "/api/admin/purge"),
}


@pytest.fixture(scope="module")
def console_url(endpoint: EmbeddedEndpoint) -> Iterator[str]:
    with seed(endpoint, "schema").server(admin=True) as server:
        yield server.url


# Schema-valid input may still be refused with the documented 400 when the document cannot
# say what is valid: a `cursor` that no earlier page returned, an id longer than 1 KB in
# UTF-8 (the limit is in bytes, JSON Schema counts characters).
ACCEPTED = ["2xx", "400", "403", "404", "409"]
CONFIG = SchemathesisConfig.from_dict(
    {"checks": {"positive_data_acceptance": {"expected-statuses": ACCEPTED}}})


@pytest.fixture(scope="module")
def api_schema(console_url: str) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(console_url + "openapi.json", config=CONFIG)


def test_the_document_lists_every_operation(api_schema: schemathesis.BaseSchema) -> None:
    found = {(op.method.upper(), op.path) for op in
             (result.ok() for result in api_schema.get_all_operations())}
    assert found == OPERATIONS


@pytest.mark.parametrize(("method", "path"), sorted(OPERATIONS))
@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_every_operation_answers_as_documented(
    api_schema: schemathesis.BaseSchema, method: str, path: str, data: st.DataObject
) -> None:
    case = data.draw(api_schema[path][method].as_strategy())
    # Real ids now and then, so generated requests also reach the data.
    query = case.query or {}
    if query.get("session_id") == "0":
        query["session_id"] = TRIP
    if query.get("user_id") == "0":
        query["user_id"] = ACME_USER
    case.call_and_validate()
