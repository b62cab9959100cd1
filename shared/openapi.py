"""The OpenAPI document of every service: bearer scheme, per-route security, stable ids.

``shared.runtime.create_app`` installs it, so the three services publish the same shape:
- a ``bearerAuth`` HTTP scheme (Swagger's Authorize button) or, as the alternative, the
  dashboard's ``sessionCookie``, required by every operation the HTTP guard does not treat as
  public, and an explicit empty requirement on the public ones;
- ``operationId`` = the route function's name (stable across path or method changes);
- extra component schemas for bodies a route reads itself (``POST /v1/events``);
- a ``Problem`` component (``shared.problems``) as the ``application/problem+json`` body of
  every error answer: the ones a route declares, and those every route of its sort can give
  (401 and 403 behind a token and a role, 404 with a path parameter, 422 with parameters or
  a body, 413 with a body, 500 and 503 everywhere).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter
from starlette.routing import BaseRoute

from shared.accounts import UNSAFE_METHODS
from shared.auth import Role, required_roles
from shared.http_guard import GuardPolicy
from shared.problems import MEDIA_TYPE, Problem

BEARER: Final = "bearerAuth"
BEARER_SCHEME: Final = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API token (KPI_BOOTSTRAP_ADMIN_TOKEN or one from `kpi token create`); "
    "no token is 401, a token without the right 403.",
}
SESSION: Final = "sessionCookie"
SESSION_SCHEME: Final = {
    "type": "apiKey",
    "in": "cookie",
    "name": "kpi_session",
    "description": "The dashboard's session (POST /v1/auth/login); a request that changes "
    "something must also send its CSRF token in X-CSRF-Token (403 otherwise).",
}
SECURED: Final[tuple[dict[str, list[str]], ...]] = ({BEARER: []}, {SESSION: []})
HTTP_METHODS: Final = frozenset({"get", "put", "post", "delete", "patch", "head", "options"})
COMPONENT_REF: Final = "#/components/schemas/{model}"
PROBLEM: Final = "Problem"
# FastAPI's own 422 body, which no answer has any more (the Problem replaces it).
_FASTAPI_422: Final = ("HTTPValidationError", "ValidationError")
_WITH_BODY: Final = frozenset({"post", "put", "patch"})
# What every route of a sort may answer besides its own errors (docs/errors.md).
_IMPLIED: Final = {
    "401": "Missing, invalid or revoked bearer token (`WWW-Authenticate: Bearer`).",
    "403": "The caller's role may not use this route, or a request that changes something "
    "with the session cookie lacks its CSRF token.",
    "404": "Unknown id, or one outside a supervisor's teams (answered alike).",
    "413": "Request body larger than the route's limit (`limit_bytes`).",
    "422": "Invalid parameter or body; `errors[].field` names each offending field.",
    "500": "Unexpected failure (logged); names nothing of the server's internals.",
    "503": "Starting, or a dependency (database, token store) unreachable; retry after "
    "`Retry-After` seconds.",
}


def operation_id(route: APIRoute) -> str:
    """The route function's name: unique per app (checked by a unit test), and unchanged
    when a path parameter is renamed, unlike FastAPI's default (name + path + method)."""
    return route.name


def component_schemas(types: Mapping[str, object]) -> dict[str, Any]:
    """JSON Schemas of ``types`` by component name, their sub-models as sibling components."""
    found: dict[str, Any] = {}
    for name, type_ in types.items():
        adapter: TypeAdapter[Any] = TypeAdapter(type_)  # type: ignore[arg-type]
        schema = adapter.json_schema(ref_template=COMPONENT_REF)
        found.update(schema.pop("$defs", {}))
        found[name] = schema
    return found


def request_body(component: str, description: str) -> dict[str, Any]:
    """``openapi_extra`` of a route that reads its JSON body itself: the body's schema."""
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": {
                "application/json": {"schema": {"$ref": COMPONENT_REF.format(model=component)}}
            },
        }
    }


def problem_content(*also: str) -> dict[str, Any]:
    """The ``content`` of an error answer: a Problem, with the members of components ``also``
    (e.g. the per-event results of a rejected batch)."""
    schema: dict[str, Any] = {"$ref": COMPONENT_REF.format(model=PROBLEM)}
    if also:
        schema = {"allOf": [schema, *({"$ref": COMPONENT_REF.format(model=m)} for m in also)]}
    return {MEDIA_TYPE: {"schema": schema}}


def _api_routes(routes: list[BaseRoute]) -> list[APIRoute]:
    try:  # FastAPI >= 0.13x keeps included routers nested in app.routes
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - older ones copy their routes into app.routes
        return [r for r in routes if isinstance(r, APIRoute)]
    found = (context.original_route for context in iter_route_contexts(routes))
    return [r for r in found if isinstance(r, APIRoute)]


def _roles(dependant: Dependant) -> frozenset[Role] | None:
    """The roles the route's ``require`` dependency admits (None: no such dependency)."""
    for sub in dependant.dependencies:
        roles = required_roles(sub.call)
        if roles is None:
            roles = _roles(sub)
        if roles is not None:
            return roles
    return None


def _error_responses(
    operation: dict[str, Any], path: str, method: str, public: bool, roles: frozenset[Role] | None
) -> None:
    """Give every error answer of ``operation`` the Problem body; add the implied ones."""
    responses: dict[str, Any] = operation.setdefault("responses", {})
    implied = {"500", "503"}
    if not public:
        implied.add("401")
    restricted = roles is not None and roles != frozenset(Role)
    if not public and (restricted or method.upper() in UNSAFE_METHODS):
        implied.add("403")  # a role refused, or the CSRF check of a session's unsafe request
    if "{" in path:
        implied.add("404")
    if operation.get("parameters") or operation.get("requestBody"):
        implied.add("422")
    if method in _WITH_BODY:
        implied.add("413")
    for status in sorted(implied):
        responses.setdefault(status, {"description": _IMPLIED[status]})
    for status, answer in responses.items():
        if not status.startswith(("4", "5")):
            continue
        if answer.get("description") == "Validation Error":  # FastAPI's own 422
            answer["description"] = _IMPLIED["422"]
        content = answer.get("content") or {}
        if MEDIA_TYPE in content:
            continue  # the route's own problem schema
        schema = (content.get("application/json") or {}).get("schema") or {}
        if schema.get("$ref", "").rsplit("/", 1)[-1] not in ("", *_FASTAPI_422):
            continue  # a body of its own: /readyz's 503 is its readiness report
        answer["content"] = problem_content()


def _drop_unused(components: dict[str, Any], spec: dict[str, Any]) -> None:
    """Drop FastAPI's 422 components once no answer refers to them."""
    if COMPONENT_REF.format(model=_FASTAPI_422[0]) not in str(spec.get("paths")):
        for name in _FASTAPI_422:
            components.get("schemas", {}).pop(name, None)


def install(
    app: FastAPI, policy: GuardPolicy, extra_schemas: Mapping[str, object] = {}
) -> Callable[[], dict[str, Any]]:
    """Replace ``app.openapi`` with the document described in the module docstring."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        spec = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = spec.setdefault("components", {})
        schemes = components.setdefault("securitySchemes", {})
        schemes[BEARER] = BEARER_SCHEME
        schemes[SESSION] = SESSION_SCHEME
        schemas = components.setdefault("schemas", {})
        schemas.update(component_schemas({**extra_schemas, PROBLEM: Problem}))
        roles = {r.name: _roles(r.dependant) for r in _api_routes(app.routes)}
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                if method not in HTTP_METHODS:
                    continue
                public = policy.is_public(path, method.upper())
                operation["security"] = [] if public else [dict(s) for s in SECURED]
                route_roles = roles.get(operation.get("operationId", ""))
                _error_responses(operation, path, method, public, route_roles)
        _drop_unused(components, spec)
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
