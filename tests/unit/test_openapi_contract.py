"""Every service's OpenAPI document: bearer scheme, security per route, ids, tags, responses
(success bodies, and every error answer a Problem)."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import pytest

from shared.openapi import BEARER, PROBLEM, SECURED
from shared.problems import MEDIA_TYPE

SERVICES = ("ingest", "scoring", "notify")
# What needs no bearer token: probes, and the helpdesk webhooks (signed by the vendor).
PUBLIC = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/webhooks/{vendor}"),
    ("POST", "/v1/auth/login"),
    # What the sign-in page offers (single sign-on's redirects are pages, not in the document).
    ("GET", "/v1/auth/methods"),
}
# JSON routes that still answer an untyped body (none left: a new route comes typed); the test
# fails when one of them gets typed, so the list only shrinks.
UNTYPED: set[tuple[str, str, str]] = set()


@pytest.fixture(scope="module")
def documents() -> dict[str, dict[str, Any]]:
    return {s: importlib.import_module(f"services.{s}.app").build_app().openapi() for s in SERVICES}


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            yield method.upper(), path, operation


def _typed(schema: dict[str, Any] | None) -> bool:
    return bool(schema) and any(k in schema for k in ("$ref", "type", "anyOf", "oneOf", "allOf"))


def test_a_bearer_scheme_is_declared(documents: dict[str, dict[str, Any]]) -> None:
    for doc in documents.values():
        assert doc["components"]["securitySchemes"][BEARER] == {
            **doc["components"]["securitySchemes"][BEARER],
            "type": "http",
            "scheme": "bearer",
        }


def test_every_operation_declares_its_security(documents: dict[str, dict[str, Any]]) -> None:
    wrong = [
        (service, method, path, op.get("security"))
        for service, doc in documents.items()
        for method, path, op in _operations(doc)
        if op.get("security") != ([] if (method, path) in PUBLIC else list(SECURED))
    ]
    assert not wrong, f"security requirement missing or wrong: {wrong}"


def test_operation_ids_are_the_function_names_unique_and_tagged(
    documents: dict[str, dict[str, Any]],
) -> None:
    for service, doc in documents.items():
        ids = [op.get("operationId") for _, _, op in _operations(doc)]
        assert all(ids) and len(ids) == len(set(ids)), f"{service}: {sorted(map(str, ids))}"
        assert all(i.isidentifier() for i in ids), ids  # a function name, no path in it
        untagged = [(m, p) for m, p, op in _operations(doc) if not op.get("tags")]
        assert not untagged, f"{service}: operations without tags: {untagged}"


def test_json_routes_publish_their_success_schema(documents: dict[str, dict[str, Any]]) -> None:
    untyped = set()
    for service, doc in documents.items():
        for method, path, op in _operations(doc):
            ok = {c: r for c, r in op["responses"].items() if c.startswith("2")}
            assert ok, f"{service} {method} {path}: no 2xx response"
            for answer in ok.values():
                content = answer.get("content") or {}
                if "application/json" in content and not _typed(
                    content["application/json"].get("schema")
                ):
                    untyped.add((service, method, path))
    assert untyped - UNTYPED == set(), "give these routes a response_model or responses="
    assert UNTYPED - untyped == set(), "typed now: remove them from UNTYPED"


def test_post_events_publishes_its_request_body(documents: dict[str, dict[str, Any]]) -> None:
    doc = documents["ingest"]
    body = doc["paths"]["/v1/events"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    batch = doc["components"]["schemas"][ref.rsplit("/", 1)[1]]
    one_or_many = {b.get("type", "object") for b in batch["anyOf"]}
    assert one_or_many == {"object", "array"}
    refs = str(batch)
    for model in ("TicketCreated", "SurveyCsat", "SurveyTraining"):
        assert f"#/components/schemas/{model}" in refs
        assert model in doc["components"]["schemas"]


# notify's routes that scoring's dashboard proxy relays (method, notify path).
RELAYED = {
    ("GET", "/v1/alerts"),
    ("POST", "/v1/alerts/{alert_id}/ack"),
    ("GET", "/v1/silences"),
    ("POST", "/v1/silences"),
    ("GET", "/v1/deliveries"),
    ("GET", "/v1/deliveries/{delivery_id}"),
    ("POST", "/v1/deliveries/{delivery_id}/resend"),
}


def _refs(schema: dict[str, Any]) -> set[str]:
    found = {schema["$ref"]} if "$ref" in schema else set()
    return found | {r for s in schema.get("anyOf", []) for r in _refs(s)}


def test_the_dashboard_proxy_documents_notifys_own_bodies(
    documents: dict[str, dict[str, Any]],
) -> None:
    """The bodies the proxy relays are documented with the very models notify's routes answer."""
    notify, scoring = documents["notify"], documents["scoring"]
    proxy = scoring["paths"]["/v1/dashboard/notify/{path}"]
    for method, path in sorted(RELAYED):
        answers = notify["paths"][path][method.lower()]["responses"]
        code, answer = next((c, r) for c, r in answers.items() if c.startswith("2"))
        (ref,) = _refs(answer["content"]["application/json"]["schema"])
        relayed = proxy[method.lower()]["responses"][code]["content"]["application/json"]
        assert ref in _refs(relayed["schema"]), (method, path, ref)
        name = ref.rsplit("/", 1)[1]
        assert scoring["components"]["schemas"][name] == notify["components"]["schemas"][name]


# Reads any valid token or session may make: no 403 to declare (a write can always be one: a
# session's request without its CSRF token).
ANY_ROLE = {("GET", "/v1/whoami"), ("GET", "/v1/auth/session")}
# Its 503 is the readiness report (which dependency is down), not an error of the request.
OWN_ERROR_BODIES = {("GET", "/readyz", "503")}


def _is_problem(schema: dict[str, Any]) -> bool:
    refs = [schema, *schema.get("allOf", [])]
    return any(s.get("$ref") == f"#/components/schemas/{PROBLEM}" for s in refs)


def test_the_problem_is_a_component_with_the_rfc_9457_members(
    documents: dict[str, dict[str, Any]],
) -> None:
    for doc in documents.values():
        schemas = doc["components"]["schemas"]
        problem = schemas[PROBLEM]
        assert set(problem["required"]) == {"type", "title", "status", "detail", "instance", "code"}
        assert problem["properties"]["errors"]["items"]["$ref"].endswith("/FieldError")
        assert {"loc", "field", "msg", "type"} <= set(schemas["FieldError"]["required"])
        # FastAPI's own 422 body is gone: no answer has that shape any more.
        assert "HTTPValidationError" not in schemas and "HTTPValidationError" not in str(doc)


def test_every_route_declares_its_error_answers_as_problems(
    documents: dict[str, dict[str, Any]],
) -> None:
    wrong = []
    for service, doc in documents.items():
        for method, path, op in _operations(doc):
            responses = op["responses"]
            expected = {"500", "503"}
            if (method, path) not in PUBLIC:
                expected |= {"401"} | ({"403"} if (method, path) not in ANY_ROLE else set())
            if "{" in path:
                expected.add("404")
            if op.get("parameters") or op.get("requestBody"):
                expected.add("422")
            if missing := expected - set(responses):
                wrong.append(f"{service} {method} {path}: no {sorted(missing)}")
            for status, answer in responses.items():
                if status[0] not in "45" or (method, path, status) in OWN_ERROR_BODIES:
                    continue
                content = answer.get("content", {})
                if set(content) != {MEDIA_TYPE} or not _is_problem(content[MEDIA_TYPE]["schema"]):
                    wrong.append(f"{service} {method} {path} {status}: {content}")
    assert not wrong, "\n".join(wrong)
