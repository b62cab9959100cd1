"""The OpenAPI document of every service: bearer scheme, per-route security, stable ids.

``shared.runtime.create_app`` installs it, so the three services publish the same shape:
- a ``bearerAuth`` HTTP scheme (Swagger's Authorize button) or, as the alternative, the
  dashboard's ``sessionCookie``, required by every operation the HTTP guard does not treat as
  public, and an explicit empty requirement on the public ones;
- ``operationId`` = the route function's name (stable across path or method changes);
- extra component schemas for bodies a route reads itself (``POST /v1/events``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import TypeAdapter

from shared.http_guard import GuardPolicy

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
        if extra_schemas:
            components.setdefault("schemas", {}).update(component_schemas(extra_schemas))
        for path, operations in spec.get("paths", {}).items():
            for method, operation in operations.items():
                if method not in HTTP_METHODS:
                    continue
                public = policy.is_public(path, method.upper())
                operation["security"] = [] if public else [dict(s) for s in SECURED]
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
    return openapi
