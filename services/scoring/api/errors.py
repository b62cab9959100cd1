"""HTTP errors of the scoring API: one shape per status, and their OpenAPI descriptions."""

from __future__ import annotations

from typing import Any, TypeVar

from fastapi import HTTPException, status

T = TypeVar("T")

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid bearer token."},
    403: {"description": "Service token, or a team that is not the supervisor's."},
    404: {"description": "Unknown specialist or team."},
    422: {"description": "Bad parameter; `detail[].loc` names it."},
}


def bad_param(where: str, name: str, msg: str) -> HTTPException:
    """422 in FastAPI's own validation-error shape so clients parse one format."""
    return HTTPException(
        422,
        detail=[{"loc": [where, name], "msg": msg, "type": "value_error"}],
    )


def not_found(what: str, ident: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, detail=f"unknown {what} {ident!r}")


def forbidden(what: str, ident: str) -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN, detail=f"{what} {ident!r} is not in one of your teams"
    )


def or_404(found: T | None, what: str, ident: str) -> T:
    """``found``, or raise the 404 naming the unknown ``what`` (e.g. "team") and its id."""
    if found is None:
        raise not_found(what, ident)
    return found
