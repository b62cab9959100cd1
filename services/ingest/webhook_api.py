"""Routes of the native helpdesk webhooks: POST /v1/webhooks/{vendor}, GET /v1/webhooks/unmapped.

Answers, so each vendor stops or retries as it should (docs/connectors.md):
202 taken (events published, or nothing in it counts for a KPI); 401 not the vendor's
(signature, timestamp or secret); 404 unknown vendor; 413 body too large; 422 not
understood, dead-lettered (permanent: do not retry); 503 the broker cannot store it now
(retry, ``Retry-After``). Every refusal is a problem (docs/errors.md) with the ``code``
given here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeAlias, get_args

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse

from services.ingest import webhook_repository
from services.ingest.answers import (
    UnmappedAgents,
    WebhookAnswer,
    field_problems,
    rejected_detail,
    rejected_errors,
)
from services.ingest.connectors import signatures
from services.ingest.publisher import BrokerUnavailable
from services.ingest.webhooks import StorageUnavailable, WebhookIntake, WebhookResult
from shared import metrics
from shared.auth import Authenticator, Principal, Role, require
from shared.db import utcnow
from shared.http_problems import problem_response
from shared.settings import WEBHOOK_VENDORS, Settings

RETRY_AFTER_SECONDS = "5"
MAPPING_NOTE = (
    "Map an agent with PUT /v1/specialists/{id} and aliases such as "
    '{"zendesk": "3612"} or {"email": "li.na@example.com"}. A mapping applies to webhooks '
    "received from then on: events already counted under 'counted_as' stay there."
)

webhook_router = APIRouter(prefix="/v1", tags=["webhooks"])
Vendor: TypeAlias = Literal["zendesk", "freshdesk", "zammad", "chatwoot"]
assert get_args(Vendor) == WEBHOOK_VENDORS


class _Refused(Exception):
    def __init__(self, status: int, code: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.code, self.reason = status, code, reason


async def _authenticate(vendor: str, request: Request, body: bytes, settings: Settings) -> None:
    secrets = [s.get_secret_value().encode() for s in settings.webhook_secrets.get(vendor, [])]
    headers = request.headers
    if vendor == "freshdesk":
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            authenticator: Authenticator = request.app.state.authenticator
            principal = await authenticator.resolve(token.strip())
            if principal is None or principal.role not in (Role.SERVICE, Role.ADMIN):
                raise signatures.Unauthorized("the bearer token is not a service or admin token")
            return
    if not secrets:
        raise signatures.Unauthorized(
            f"no {vendor} secret is configured (KPI_WEBHOOK_SECRETS); requests are refused"
        )
    now, max_age = utcnow(), settings.webhook_max_age
    if vendor == "zammad":
        signatures.verify_zammad(secrets, body, headers)
    elif vendor == "zendesk":
        signatures.verify_zendesk(secrets, body, headers, now, max_age)
    elif vendor == "chatwoot":
        signatures.verify_chatwoot(secrets, body, headers, now, max_age)
    else:
        signatures.verify_secret_header(secrets, headers)


def _refusal(request: Request, vendor: str, exc: _Refused, outcome: str) -> Response:
    metrics.WEBHOOK_REQUESTS.labels(vendor, outcome).inc()
    headers = {"Retry-After": RETRY_AFTER_SECONDS} if exc.status == 503 else None
    return problem_response(request, exc.status, exc.reason, code=exc.code, headers=headers)


def _not_taken(request: Request, result: WebhookResult) -> Response:
    """A 4xx of the intake as a problem: the payload not understood (its field), or every
    event it became rejected (``events[0].score``; the per-event results stay members)."""
    body = dict(result.body)
    if "results" in body:
        errors = rejected_errors(body["results"], ["events"], indexed=True)
        detail = rejected_detail(body["rejected"], errors)
        return problem_response(
            request, result.status, detail, code="events_rejected", errors=errors, **body
        )
    errors = field_problems(body.pop("errors", []), ["body"])
    detail, code = body.pop("detail"), body.pop("code")
    return problem_response(request, result.status, detail, code=code, errors=errors, **body)


@webhook_router.post(
    "/webhooks/{vendor}",
    summary="Receive a helpdesk's own webhook (zendesk, freshdesk, zammad, chatwoot)",
    status_code=202,
    responses={
        202: {"model": WebhookAnswer, "description": "the events it became, per-event results"},
        401: {"description": "signature, timestamp or secret wrong or missing (`unauthorized`)"},
        404: {"description": "unknown vendor"},
        413: {"description": "body too large"},
        422: {
            "description": "payload not understood, dead-lettered (`errors[].field` names the "
            "vendor's field), or every event it became rejected (`events_rejected`); do not "
            "retry"
        },
        503: {
            "description": "broker (`broker_unavailable`) or database (`database_unavailable`) "
            "unavailable; retry after Retry-After seconds"
        },
    },
)
async def post_webhook(vendor: str, request: Request) -> Response:
    if vendor not in WEBHOOK_VENDORS:
        return problem_response(
            request, 404, f"unknown vendor; one of {', '.join(WEBHOOK_VENDORS)}"
        )
    settings: Settings = request.app.state.settings
    intake: WebhookIntake = request.app.state.webhook_intake
    try:
        # The exact bytes the signature covers; the HTTP guard has bounded their size
        # (KPI_INGEST_MAX_BODY_BYTES, 413 beyond) before this reads them.
        body = await request.body()
        try:
            await _authenticate(vendor, request, body, settings)
        except signatures.Unauthorized as exc:
            raise _Refused(401, "unauthorized", str(exc)) from None
        try:
            result = await intake.receive(vendor, body, utcnow())
        except BrokerUnavailable as exc:
            raise _Refused(
                503, "broker_unavailable", f"not accepted, the broker cannot store it now: {exc}"
            ) from None
        except StorageUnavailable as exc:
            raise _Refused(
                503, "database_unavailable", f"not accepted, the database did not answer: {exc}"
            ) from None
    except _Refused as exc:
        outcome = {401: "unauthorized", 503: "unavailable"}.get(exc.status, "refused")
        return _refusal(request, vendor, exc, outcome)
    if result.status >= 400:
        return _not_taken(request, result)
    return JSONResponse(result.body, result.status)


@webhook_router.get(
    "/webhooks/unmapped",
    summary="Helpdesk agents seen in webhooks that no specialist alias maps yet (admin)",
    responses={200: {"model": UnmappedAgents}},
)
async def get_unmapped(
    request: Request,
    principal: Annotated[Principal, Depends(require())],
    vendor: Annotated[Vendor | None, Query(description="only this vendor")] = None,
) -> Any:
    async with request.app.state.runtime.sessionmaker() as session:
        agents = await webhook_repository.list_unmapped(session, vendor)
    return {"agents": agents, "note": MAPPING_NOTE}
