"""The OpenAPI document: complete, valid, with the seed's examples, and true of the running app
(schemathesis against the Flask app in-process, with the real database and worker behind it)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.test_seed_api import (
    SEED_INGEST,
    SEED_PROCESS,
    SEED_RETRIEVE,
    SEED_STORE,
    SEED_VALIDATE,
)
from webapp.openapi import OPERATIONS, openapi_path

ERROR_STATUSES = ("400", "401", "404", "409", "413", "415", "422")
UNDOCUMENTED_METHODS = {"HEAD", "OPTIONS"}
# Small enough that the whole run stays well under a minute on 2 cores, and the same cases
# every run (a failure is reproducible); a deeper, random run:
#     OPENAPI_FUZZ_EXAMPLES=500 pytest tests/test_openapi.py
FUZZ_EXAMPLES = os.environ.get("OPENAPI_FUZZ_EXAMPLES")
MAX_EXAMPLES = int(FUZZ_EXAMPLES or 12)


@pytest.fixture(scope="module")
def document(app) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    """/openapi.json as the app serves it."""
    response = app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def _operation(document: dict[str, Any], path: str, method: str) -> dict[str, Any]:
    return document["paths"][path][method]


def test_the_document_is_valid_openapi_3(document):
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_of_the_app_is_documented(app, document):
    routes = [rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"]
    assert len(routes) >= 12
    for rule in routes:
        path = openapi_path(rule)
        assert path in document["paths"], f"{rule.rule} ({rule.endpoint}) is not documented"
        for method in set(rule.methods or ()) - UNDOCUMENTED_METHODS:
            assert method.lower() in document["paths"][path], f"{method} {rule.rule}"


@pytest.mark.parametrize(("name", "example"), [
    ("ingest", SEED_INGEST), ("validate", SEED_VALIDATE), ("process", SEED_PROCESS),
    ("store", SEED_STORE), ("retrieve", SEED_RETRIEVE),
])
def test_the_seed_examples_are_the_request_examples(document, name, example):
    operation = _operation(document, f"/api/v1/data_pipeline/{name}", "post")
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert examples["seed"]["value"] == example


def test_one_error_shape_is_a_component_used_by_every_error_response(document):
    components = document["components"]
    error = components["schemas"]["Error"]
    assert set(error["required"]) == {"success", "error"}
    detail = components["schemas"]["ErrorDetail"]
    assert set(detail["required"]) == {"code", "message", "details"}
    seen: set[str] = set()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")) or path == "/readyz":
                    continue
                seen.add(status)
                name = response["$ref"].rsplit("/", 1)[-1]
                schema = components["responses"][name]["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, (method, path, status)
    assert set(ERROR_STATUSES) <= seen


def test_accepted_jobs_files_keys_and_security_are_described(document):
    ingest = _operation(document, "/api/v1/data_pipeline/ingest", "post")
    assert ingest["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Accepted"}
    assert {"Location"} <= set(ingest["responses"]["202"]["headers"])
    content = ingest["requestBody"]["content"]
    assert {"application/json", "text/csv", "application/x-ndjson"} <= set(content)
    names = {p.get("name") or p["$ref"].rsplit("/", 1)[-1] for p in ingest["parameters"]}
    assert {"source", "data_type", "IdempotencyKey"} <= names
    assert document["components"]["parameters"]["IdempotencyKey"]["name"] == "Idempotency-Key"
    for kind in ("validate", "process", "store"):
        operation = _operation(document, f"/api/v1/data_pipeline/{kind}", "post")
        assert {"$ref": "#/components/parameters/IdempotencyKey"} in operation["parameters"]
        assert "409" in operation["responses"]

    job = _operation(document, "/api/v1/jobs/{job_id}", "get")
    assert "wait" in {p.get("name") for p in job["parameters"]}
    assert set(job["responses"]) == {"200", "401", "404", "422", "503"}
    job_schema = document["components"]["schemas"]["Job"]
    assert {"stages", "progress", "status", "result", "error"} <= set(job_schema["properties"])
    assert "/api/v1/jobs/{job_id}/rejected" in document["paths"]
    assert set(_operation(document, "/readyz", "get")["responses"]) == {"200", "503"}

    schemes = document["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer"}
    assert schemes["apiKeyHeader"]["in"] == "header"
    assert schemes["apiKeyHeader"]["name"] == "X-API-Key"
    assert ingest["security"] == [{"bearerAuth": []}, {"apiKeyHeader": []}]
    assert _operation(document, "/healthz", "get")["security"] == []


def test_docs_page_loads_swagger_ui_on_the_document(client):
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "swagger-ui-bundle.js" in page and '"openapi.json"' in page


# ------------------------------------------------------------------- schemathesis, in-process


@schemathesis.serializer("application/csv", "application/x-ndjson", "application/jsonl",
                        "application/x-jsonlines")
def _file_body(ctx: Any, value: Any) -> bytes:
    """File bodies are documented as strings: send them as they are."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode() + b"\n"  # json: numbers of any size


@pytest.fixture(scope="module")
def api_schema(app, worker):  # type: ignore[no-untyped-def]
    """The app's own document, loaded through its WSGI interface."""
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _cases(api_schema: Any, operation: Any) -> list[Any]:
    """The document's own examples, then valid and invalid generated requests."""
    strategies = [*api_schema.get_strategies_from_examples(operation),
                  operation.as_strategy(GenerationMode.POSITIVE)]
    inputs = (operation.body, operation.query, operation.headers, operation.path_parameters)
    if any(len(group) for group in inputs):  # nothing to make invalid otherwise
        strategies.append(operation.as_strategy(GenerationMode.NEGATIVE))
    return strategies


# schemathesis' pytest loader (from_fixture) does not run under pytest 9, so each operation
# is driven through its Hypothesis strategies here.
@pytest.mark.parametrize("endpoint", sorted(OPERATIONS))
def test_the_app_answers_as_its_document_says(app, api_schema, endpoint):
    """No 5xx, and every status code, media type, header and body as documented."""
    rule = next(r for r in app.url_map.iter_rules() if r.endpoint == endpoint)
    method = next(iter(set(rule.methods or ()) - UNDOCUMENTED_METHODS))
    operation = api_schema[openapi_path(rule)][method]

    for strategy in _cases(api_schema, operation):
        @given(case=strategy)
        @settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
                  derandomize=not FUZZ_EXAMPLES, suppress_health_check=list(HealthCheck))
        def run(case: Any) -> None:
            case.call_and_validate(checks=CHECKS)

        run()
