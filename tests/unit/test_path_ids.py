"""Ids holding a slash reach their route (shared.path_ids), through a real Starlette router."""

from __future__ import annotations

from urllib.parse import quote

from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st
from starlette.types import Receive, Scope, Send

from shared import path_ids


def _app() -> FastAPI:
    path_ids.install()
    inner = FastAPI()

    @inner.get("/v1/specialists/{specialist_id}/kpis")
    async def kpis(specialist_id: str) -> dict[str, str]:
        return {"id": specialist_id}

    @inner.get("/v1/specialists/{specialist_id}")
    async def one(specialist_id: str) -> dict[str, str]:
        return {"one": specialist_id}

    app = FastAPI()
    app.include_router(inner.router)  # routes created after install(), as create_app does

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path_ids.keep_encoded_slashes(scope)
        await app(scope, receive, send)

    return guarded  # type: ignore[return-value]


CLIENT = TestClient(_app())

ids = st.text(st.characters(blacklist_categories=("Cs", "Cc")), min_size=1, max_size=20).filter(
    lambda s: s.strip() == s and s not in (".", "..")
)


@given(ident=ids)
def test_any_id_comes_back_whole(ident: str) -> None:
    got = CLIENT.get(f"/v1/specialists/{quote(ident, safe='')}/kpis")
    assert got.status_code == 200 and got.json() == {"id": ident}
    got = CLIENT.get(f"/v1/specialists/{quote(ident, safe='')}")
    assert got.status_code == 200 and got.json() == {"one": ident}


def test_an_encoded_slash_stays_in_its_segment_and_a_sent_nul_is_no_slash() -> None:
    assert CLIENT.get("/v1/specialists/support%2Ftier-1/kpis").json() == {"id": "support/tier-1"}
    assert CLIENT.get("/v1/specialists/a%2fb").json() == {"one": "a/b"}
    # A NUL stays a NUL (the id rule answers 422 naming the field), never a slash.
    assert CLIENT.get("/v1/specialists/a%00b%2F/kpis").json() == {"id": "a\x00b/"}
    assert CLIENT.get("/v1/specialists/a%00b").json() == {"one": "a\x00b"}
    assert CLIENT.get("/v1/specialists/%ED%BF%BF").json() == {"one": "\ufffd\ufffd\ufffd"}
    assert CLIENT.get("/v1/specialists/a/b/kpis").status_code == 404  # a real slash splits
