"""Tests of gateway/openapi.json: the document, the route that serves it, and the gateway's conformance.

schemathesis generates requests from the document and sends them to the real
gateway under gunicorn, which calls the real local model server.
"""

import json

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import ROOT

DOCUMENT_PATH = ROOT / "gateway" / "openapi.json"

# Every operation of the document, as schemathesis labels them.
OPERATIONS = {
    "GET /", "POST /classify", "POST /send_file", "GET /healthz", "GET /readyz",
    "GET /metrics", "GET /openapi.json",
}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Examples per operation and generation mode. With 40 the whole file took
# 33 to 37 s, starting both servers included, on 2 cores shared with a CI run.
MAX_EXAMPLES = 40

# Seconds for one generated request. The model server's RPC deadline is 5 s.
REQUEST_TIMEOUT = 30


@pytest.fixture(scope="module")
def served_schema(gateway):
    """The OpenAPI document as the gateway under gunicorn serves it."""
    return schemathesis.openapi.from_url(f"{gateway.url}/openapi.json", timeout=REQUEST_TIMEOUT)


def test_openapi_document_loads():
    document = schemathesis.openapi.from_path(DOCUMENT_PATH)

    labels = {operation.ok().label for operation in document.get_all_operations()}

    assert labels == OPERATIONS


def test_openapi_route_serves_committed_file(gateway):
    response = requests.get(f"{gateway.url}/openapi.json", timeout=REQUEST_TIMEOUT)

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.content == DOCUMENT_PATH.read_bytes()
    assert response.json() == json.loads(DOCUMENT_PATH.read_text())


# Operations with a request body. The others take only the optional
# X-Request-ID header, which accepts any string, so they have no negative cases.
OPERATIONS_WITH_BODY = ["POST /classify", "POST /send_file"]

GENERATED_CASES = [
    *[(label, GenerationMode.POSITIVE) for label in sorted(OPERATIONS)],
    *[(label, GenerationMode.NEGATIVE) for label in OPERATIONS_WITH_BODY],
]


# NOTE: schemathesis.pytest.from_fixture, the usual way to test a schema that a
# fixture loads, fails with schemathesis 4.32.5 under pytest 9.2.0: it sets the
# test item's private _nodeid attribute, which pytest 9.2.0 does not have. So
# each operation's strategy runs under Hypothesis' own @given here.
@pytest.mark.parametrize(("label", "generation_mode"), GENERATED_CASES)
def test_gateway_conforms_to_openapi(served_schema, label, generation_mode):
    operation = served_schema.find_operation_by_label(label)

    @given(case=operation.as_strategy(generation_mode=generation_mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    def send_and_validate(case):
        case.call_and_validate(checks=CHECKS, timeout=REQUEST_TIMEOUT)

    send_and_validate()
