"""FastAPI application of the ingest service: routes plus lifespan-owned resources."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse

from services.ingest import repository
from services.ingest.answers import IntakeAnswer, rejected_detail, rejected_errors
from services.ingest.consumer import IngestPipeline
from services.ingest.handlers import HttpIntake, HttpResult
from services.ingest.intake import OUTCOME_DEADLETTERED, OUTCOME_PUBLISHED
from services.ingest.publisher import BrokerUnavailable
from services.ingest.webhook_api import webhook_router
from services.ingest.webhooks import WebhookIntake
from shared.auth import Principal, Role, require
from shared.events import NOT_JSON, Event, loads_with_surrogates
from shared.http_guard import BodyLimit, GuardPolicy
from shared.http_problems import problem_response
from shared.kafka import broker_ping
from shared.openapi import problem_content, request_body
from shared.problems import field_error
from shared.runtime import Runtime, create_app
from shared.settings import WEBHOOK_VENDORS, Settings

SERVICE = "ingest"
RETRY_AFTER_SECONDS = "5"
# Batches of events are larger than any other request body (KPI_HTTP_MAX_BODY_BYTES).
# Vendors sign their webhooks; the route checks the signature over the exact body.
WEBHOOKS = tuple(f"/v1/webhooks/{vendor}" for vendor in WEBHOOK_VENDORS)
EVENTS_BODY_LIMIT = BodyLimit("KPI_INGEST_MAX_BODY_BYTES", lambda s: s.ingest_max_body_bytes)
# The code of a 422 in which every event was rejected (docs/errors.md).
EVENTS_REJECTED = "events_rejected"

router = APIRouter(prefix="/v1", tags=["ingest"])


def _unavailable(request: Request, exc: BrokerUnavailable) -> Response:
    return problem_response(
        request,
        503,
        f"events not accepted, the broker cannot store them now: {exc}",
        code="broker_unavailable",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def _all_rejected(request: Request, result: HttpResult, batch: bool) -> Response:
    """422: every event was rejected; the per-event results stay as members of the problem."""
    body = result.body()
    errors = rejected_errors(body["results"], ["body"], indexed=batch)
    return problem_response(
        request, 422, rejected_detail(result.rejected, errors), code=EVENTS_REJECTED,
        errors=errors, **body,
    )  # fmt: skip


EVENT_BATCH = "EventBatch"


@router.post(
    "/events",
    summary="Submit one event or a JSON array of events",
    status_code=202,
    responses={
        202: {"model": IntakeAnswer, "description": "per-event results; some were accepted"},
        400: {"description": "body is not JSON (`code` `not_json`)"},
        413: {"description": "too many events (`too_many_events`) or body too large"},
        422: {
            "description": "every event was rejected (`events_rejected`): `errors` names each "
            "field (`[2].score`), `results` has the per-event verdicts",
            "content": problem_content("IntakeAnswer"),
        },
        503: {"description": "broker unavailable; retry after Retry-After seconds"},
    },
    # The route reads the body itself (one parse, per-event verdicts); this publishes its schema.
    openapi_extra=request_body(
        EVENT_BATCH, "one event or a JSON array of events (docs/schemas/event-batch.json)"
    ),
)
async def post_events(
    request: Request, principal: Principal = Depends(require(Role.SERVICE))
) -> Response:
    runtime: Runtime = request.app.state.runtime
    intake: HttpIntake = request.app.state.http_intake
    settings = runtime.settings
    # The HTTP guard has answered 413 already for a body over KPI_INGEST_MAX_BODY_BYTES
    # (declared or streamed): what is read here is within the limit.
    body = await request.body()
    try:
        parsed: Any = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            # Refused only for unpaired surrogates: answered per event, naming the field.
            parsed = loads_with_surrogates(body)
        except ValueError:
            reason = f"body is not valid UTF-8 JSON ({exc})"
            try:
                await intake.reject_body(body, reason)
            except BrokerUnavailable as unavailable:
                return _unavailable(request, unavailable)
            errors = [field_error(["body"], reason, NOT_JSON)]
            return problem_response(request, 400, reason, code=NOT_JSON, errors=errors)
    items: list[object] = parsed if isinstance(parsed, list) else [parsed]
    if len(items) > settings.ingest_max_batch:
        return problem_response(
            request,
            413,
            f"{len(items)} events in one request; at most {settings.ingest_max_batch} "
            "(KPI_INGEST_MAX_BATCH); split it into smaller requests",
            code="too_many_events",
            limit_events=settings.ingest_max_batch,
        )
    try:
        result = await intake.submit(items)
    except BrokerUnavailable as exc:
        return _unavailable(request, exc)
    if result.status >= 400:
        return _all_rejected(request, result, batch=isinstance(parsed, list))
    return JSONResponse(result.body(), status_code=result.status)


@router.get("/stats", summary="Intake counters by topic and by reason (admin)")
async def stats(request: Request, principal: Principal = Depends(require())) -> dict[str, Any]:
    runtime: Runtime = request.app.state.runtime
    async with runtime.sessionmaker() as session:
        rows = await repository.read_stats(session)
    by_topic: dict[str, dict[str, Any]] = {}
    by_reason: dict[str, int] = {}
    for (topic, outcome, code), n in sorted(rows.items()):
        entry = by_topic.setdefault(
            topic, {"in": 0, OUTCOME_PUBLISHED: 0, OUTCOME_DEADLETTERED: 0, "by_reason": {}}
        )
        entry["in"] += n
        entry[outcome] = entry.get(outcome, 0) + n
        if outcome == OUTCOME_DEADLETTERED:
            entry["by_reason"][code] = entry["by_reason"].get(code, 0) + n
            by_reason[code] = by_reason.get(code, 0) + n
    totals = {
        "in": sum(e["in"] for e in by_topic.values()),
        OUTCOME_PUBLISHED: sum(e[OUTCOME_PUBLISHED] for e in by_topic.values()),
        OUTCOME_DEADLETTERED: sum(e[OUTCOME_DEADLETTERED] for e in by_topic.values()),
    }
    return {"totals": totals, "by_topic": by_topic, "by_reason": by_reason}


async def on_start(runtime: Runtime, app: FastAPI) -> None:
    """Start the raw-topic consumer and the shared producer (reconnecting in the background)."""
    settings = runtime.settings
    pipeline = IngestPipeline(settings, runtime.sessionmaker)
    app.state.pipeline = pipeline
    app.state.http_intake = HttpIntake(
        settings.topics,
        runtime.sessionmaker,
        pipeline.health,
        publish_timeout=settings.ingest_publish_timeout,
        producer=lambda: pipeline.producer,
        ping=lambda: broker_ping(
            settings.bootstrap_servers, timeout=2.0, security=settings.kafka_security
        ),
    )
    app.state.webhook_intake = WebhookIntake(app.state.http_intake, runtime.sessionmaker)
    runtime.spawn(pipeline.run(), "ingest-consumer")
    runtime.stoppers.append(pipeline.stop)
    runtime.extra_checks["ingest"] = pipeline.problem


def build_app(settings: Settings | None = None) -> FastAPI:
    app = create_app(
        SERVICE,
        settings=settings,
        routers=[router, webhook_router],
        openapi_schemas={EVENT_BATCH: Event | list[Event]},
        on_start=lambda runtime: on_start(runtime, app),
        guard=GuardPolicy(
            body_limits={
                "/v1/events": EVENTS_BODY_LIMIT,
                **dict.fromkeys(WEBHOOKS, EVENTS_BODY_LIMIT),
            },
            self_authenticated=("/v1/webhooks/",),
        ),
        title="KPI ingest service",
        description=(
            "Validated intake of helpdesk and CRM events (HTTP and Kafka) with a dead-letter topic."
        ),
    )
    return app
