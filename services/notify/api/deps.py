"""Request dependencies of notify's routes (service, runtime, config, roles) and error helpers."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.notify.config import NotifyConfig
from services.notify.service import NotifyService
from shared.auth import Role, require
from shared.http_problems import ProblemError
from shared.problems import field_error
from shared.runtime import Runtime
from shared.streams import StreamSlots

admin_only = require()

# Who may read alerts (and their stream, whose re-checks use the same roles). Not a
# specialist: alerts, channels, silences and deliveries are their supervisors' tools, so a
# specialist token gets 403 on every notify route but whoami (docs/security.md).
READER_ROLES = (Role.SUPERVISOR,)
reader = require(*READER_ROLES)


def service_of(request: Request) -> NotifyService:
    svc: NotifyService = request.app.state.notify
    return svc


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def _starting() -> ProblemError:
    return ProblemError(503, "notify is starting", code="starting", headers={"Retry-After": "1"})


def stream_slots_of(request: Request) -> StreamSlots:
    slots = service_of(request).stream_slots
    if slots is None:  # only before the lifespan started the service
        raise _starting()
    return slots


def config_of(request: Request) -> NotifyConfig:
    cfg = service_of(request).cfg
    if cfg is None:  # only before the lifespan started the service
        raise _starting()
    return cfg


def config_error(exc: ValidationError) -> RequestValidationError:
    # Answered by the shared 422 handler like any body error: pydantic-core's own refusal of
    # a lone surrogate (in an unknown config key) becomes invalid_text and whatever JSON
    # cannot carry is scrubbed. Inputs are left out: they may be secrets or token URLs.
    return RequestValidationError(
        [
            {
                "loc": ["body", "config", *[str(p) for p in e["loc"]]],
                "msg": e["msg"],
                "type": e["type"],
            }
            for e in exc.errors(include_input=False, include_url=False)
        ]
    )


def not_found(what: str, ident: str | int) -> HTTPException:
    """The 404 of an unknown id, also given for another team's: a supervisor cannot tell them
    apart, so ids of teams they do not supervise cannot be probed for existence."""
    return HTTPException(404, detail=f"{what} {ident!r} not found")


def unprocessable(*loc: str, msg: str) -> HTTPException:
    """422 for the body field at `loc` (e.g. "config", "url"): a problem naming it in
    `errors`, like FastAPI's own validation errors."""
    return ProblemError(422, errors=[field_error(["body", *loc], msg)])
