"""The admin screen's one read from ingest: unmapped helpdesk agents, relayed as ingest answers."""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal, get_args

import httpx
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.scoring.api.deps import Admin
from shared.runtime import Runtime
from shared.settings import WEBHOOK_VENDORS

logger = logging.getLogger(__name__)

_TIMEOUT = httpx.Timeout(5.0, read=10.0)
# ingest's `vendor` filter: the helpdesks whose own webhooks it reads (shared.settings).
Vendor = Literal["zendesk", "freshdesk", "zammad", "chatwoot"]
assert get_args(Vendor) == WEBHOOK_VENDORS
_RELAYED: dict[str, Any] = {
    "description": "ingest's answer to GET /v1/webhooks/unmapped as is: `{agents: [{vendor, "
    "agent_id, email, name, counted_as, events, first_seen_at, last_seen_at}], note}`.",
    "content": {"application/json": {"schema": {"type": "object"}}},
}


def _client(request: Request) -> httpx.AsyncClient:
    """Created on first use and closed with the runtime."""
    client: httpx.AsyncClient | None = getattr(request.app.state, "ingest_client", None)
    if client is None:
        runtime: Runtime = request.app.state.runtime
        base_url = runtime.settings.ingest_base_url + "/v1/"
        client = httpx.AsyncClient(base_url=base_url, timeout=_TIMEOUT)
        request.app.state.ingest_client = client
        runtime.stoppers.append(client.aclose)
    return client


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse(
        {"detail": f"unmapped agents unavailable: {reason}", "unavailable": "ingest"},
        status_code=503,
        headers={"Retry-After": "5"},
    )


def ingest_proxy_router() -> APIRouter:
    router = APIRouter(prefix="/v1/dashboard/ingest", tags=["dashboard"])

    @router.get(
        "/webhooks/unmapped",
        summary="Helpdesk agents no specialist alias maps yet, from ingest (admin)",
        responses={200: _RELAYED},
    )
    async def unmapped_agents(
        request: Request,
        principal: Admin,
        vendor: Annotated[Vendor | None, Query(description="Only this helpdesk.")] = None,
    ) -> Response:
        # The caller's token goes along: ingest checks it (admin) as for a direct call.
        headers = {"authorization": request.headers.get("authorization", "")}
        params = {"vendor": vendor} if vendor else {}
        try:
            upstream = await _client(request).get(
                "webhooks/unmapped", params=params, headers=headers
            )
        except httpx.HTTPError as exc:
            logger.warning("ingest proxy: %s", type(exc).__name__)
            return _unavailable(f"ingest service unreachable ({type(exc).__name__})")
        if upstream.status_code >= 500:
            return _unavailable(f"ingest answered {upstream.status_code}")
        return Response(
            upstream.content,
            status_code=upstream.status_code,
            media_type=upstream.headers.get("content-type"),
        )

    return router
