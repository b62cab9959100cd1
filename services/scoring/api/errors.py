"""HTTP errors of the scoring API and their OpenAPI descriptions (answered as problems)."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import HTTPException, status

T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token."},
    403: {"description": "The caller's role may not use this route (e.g. a service token)."},
    404: {
        "description": "Unknown specialist or team, or one outside the supervisor's teams "
        "(answered alike, so ids of other teams cannot be probed)."
    },
    422: {"description": "Bad parameter or body; `errors[].field` names it."},
}


def bad_param(where: str, name: str, msg: str) -> HTTPException:
    """422 naming the parameter in `errors`, as FastAPI's own validation errors are."""
    return HTTPException(
        422,
        detail=[{"loc": [where, name], "msg": msg, "type": "value_error"}],
    )


def not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown {what} {ident!r}")


def or_404(found: T | None, what: str, ident: str) -> T:
    """``found``, or raise the 404 naming the unknown ``what`` (e.g. "team") and its id."""
    if found is None:
        raise not_found(what, ident)
    return found
