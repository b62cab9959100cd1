"""Request dependencies of notify's routes (service, runtime, config, roles) and error helpers."""

from __future__ import annotations

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from services.notify.config import NotifyConfig
from services.notify.service import NotifyService
from shared.auth import Role, require
from shared.runtime import Runtime

admin_only = require()

reader = require(Role.SUPERVISOR)


def service_of(request: Request) -> NotifyService:
    svc: NotifyService = request.app.state.notify
    return svc


def runtime_of(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


def config_of(request: Request) -> NotifyConfig:
    cfg = service_of(request).cfg
    if cfg is None:  # only before the lifespan started the service
        raise HTTPException(503, detail="notify is starting")
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


def unprocessable(*loc: str, msg: str) -> HTTPException:
    """422 for the body field at `loc` (e.g. "config", "url"), FastAPI's error shape."""
    # "type" too: the OpenAPI documents FastAPI's ValidationError shape for every 422.
    return HTTPException(422, detail=[{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])
