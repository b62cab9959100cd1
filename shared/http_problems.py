"""Problem answers over HTTP: the response class, ProblemError, and the app's error handlers.

``install`` (called by ``shared.runtime.create_app``) makes every error answer of an app an
``application/problem+json`` body of ``shared.problems.Problem``: HTTPExceptions raised by
routes and dependencies (a string detail stays the detail; a list of FastAPI-style errors
becomes ``errors``), request validation errors, Starlette's 404 and 405 for unknown routes,
and any unhandled exception (a 500 that names nothing of the server's internals; the
exception itself is logged). The HTTP guard answers outside the app with ``send_problem``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any, Final

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Scope, Send

from shared import problems
from shared.path_ids import SLASH
from shared.problems import FieldError, Problem
from shared.text import INVALID_TEXT, PYDANTIC_UNICODE_ERROR, unicode_error_reason

ROUTE_NOT_FOUND: Final = "route_not_found"
JSON_INVALID: Final = "json_invalid"  # FastAPI's error type for a body that is not JSON
INTERNAL_DETAIL: Final = (
    "the server failed to answer this request; it has been logged. Retry later, and report "
    "it if it persists"
)


class ProblemResponse(Response):
    """A problem as the answer: its status, ``application/problem+json``, the given headers."""

    media_type = problems.MEDIA_TYPE

    def __init__(self, found: Problem, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(problems.encode(found), status_code=found.status, headers=headers)


class ProblemError(HTTPException):
    """An HTTPException whose problem says more than a status and a detail: a precise
    ``code``, field ``errors`` and extension members. Without a detail, one naming the
    first field of ``errors`` is made."""

    def __init__(
        self,
        status_code: int,
        detail: str = "",
        *,
        code: str | None = None,
        errors: Sequence[FieldError] | None = None,
        headers: Mapping[str, str] | None = None,
        **extensions: Any,
    ) -> None:
        if not detail and errors:
            detail = problems.summary(errors)
        super().__init__(status_code, detail, dict(headers) if headers else None)
        self.code = code
        self.errors = errors
        self.extensions = extensions


def instance_of(scope: Scope) -> str:
    """The request's path as the problem's ``instance`` (an encoded slash kept encoded)."""
    path: str = scope.get("root_path", "") + scope.get("path", "")
    return path.replace(SLASH, "%2F")


def problem_response(
    request: Request,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    errors: Sequence[FieldError] | None = None,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> ProblemResponse:
    """The problem answer of a route that returns its error instead of raising it."""
    found = problems.problem(
        status, detail, instance=instance_of(request.scope), code=code, errors=errors,
        **extensions,
    )  # fmt: skip
    return ProblemResponse(found, headers)


async def send_problem(
    send: Send,
    scope: Scope,
    status: int,
    detail: str,
    *,
    code: str | None = None,
    headers: Mapping[str, str] = {},
    **extensions: Any,
) -> None:
    """Answer with a problem at the ASGI level (the HTTP guard, before any route runs)."""
    found = problems.problem(status, detail, instance=instance_of(scope), code=code, **extensions)
    payload = problems.encode(found)
    raw = [
        (b"content-type", problems.MEDIA_TYPE.encode()),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode(), v.encode("latin-1")) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _is_error_list(detail: object) -> bool:
    return isinstance(detail, list) and all(isinstance(e, Mapping) for e in detail)


def _of_http_exception(request: Request, exc: StarletteHTTPException) -> Problem:
    instance = instance_of(request.scope)
    status, detail = exc.status_code, exc.detail
    if isinstance(exc, ProblemError):
        return problems.problem(
            status, detail, instance=instance, code=exc.code, errors=exc.errors,
            **exc.extensions,
        )  # fmt: skip
    if _is_error_list(detail):
        errors = problems.field_errors(detail)  # type: ignore[arg-type]
        return problems.invalid(errors, instance=instance, status=status)
    default = _phrase(status)
    method = request.method
    if status == 404 and detail == default:
        # Starlette's own: no route (or no static file) at this path.
        what = f"nothing is served at {method} {instance}"
        return problems.problem(404, what, instance=instance, code=ROUTE_NOT_FOUND)
    if status == 405 and detail == default:
        allowed = (exc.headers or {}).get("Allow", "")
        what = f"{method} is not allowed at {instance}"
        if allowed:
            what += f"; allowed: {allowed}"
        return problems.problem(405, what, instance=instance)
    return problems.problem(status, detail, instance=instance)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


async def http_error(request: Request, exc: Exception) -> Response:
    """Any HTTPException (a route's, a dependency's, Starlette's 404 and 405) as a problem."""
    assert isinstance(exc, StarletteHTTPException)  # FastAPI's HTTPException is one
    return ProblemResponse(_of_http_exception(request, exc), exc.headers)


def validation_errors(raw: Sequence[Any]) -> list[FieldError]:
    """FastAPI's validation errors as field errors. Request bodies are parsed by the standard
    library, whose strings can hold unpaired surrogates: pydantic-core's own refusal of one
    is reported as INVALID_TEXT, worded like the storable-text rule. A body that is not JSON
    is about the whole body (``$``); FastAPI's ``loc`` holds the character position there,
    which would read as an array index."""
    adapted = []
    for err in raw:
        kind = err.get("type")
        if kind == PYDANTIC_UNICODE_ERROR:
            err = {**err, "type": INVALID_TEXT, "msg": unicode_error_reason(err.get("input"))}
        elif kind == JSON_INVALID:
            loc = list(err.get("loc") or ())
            reason = (err.get("ctx") or {}).get("error")
            at = f" at character {loc[-1]}" if len(loc) > 1 else ""
            msg = f"body is not valid JSON{at}" + (f": {reason}" if reason else "")
            err = {"loc": loc[:1] or ["body"], "msg": msg, "type": kind}
        adapted.append(err)
    return problems.field_errors(adapted)


async def invalid_request(request: Request, exc: Exception) -> Response:
    """422 for any input FastAPI refused: ``errors`` names each field, ``detail`` the first."""
    assert isinstance(exc, RequestValidationError)
    errors = validation_errors(exc.errors())
    return ProblemResponse(problems.invalid(errors, instance=instance_of(request.scope)))


async def send_internal(send: Send, scope: Scope) -> None:
    """The HTTP guard's answer to an exception the app did not handle (it logs it)."""
    await send_problem(send, scope, 500, INTERNAL_DETAIL)


async def internal_error(request: Request, exc: Exception) -> Response:
    """Starlette's last resort (it re-raises afterwards, so the server logs the exception)."""
    return ProblemResponse(
        problems.problem(500, INTERNAL_DETAIL, instance=instance_of(request.scope))
    )


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` as a problem (see the module docstring)."""
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, internal_error)
