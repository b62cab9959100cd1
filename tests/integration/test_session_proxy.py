"""A signed-in person (session cookie, no token) uses notify's routes through scoring's proxy:
reads, acts with the CSRF token, is refused without it, and an open alert stream of a
disabled user ends."""

from __future__ import annotations

import datetime as dt

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.notify_support import ProduceSnaps, Start, snapshot
from tests.integration.sse_support import Stream
from tests.kafka_helpers import wait_for
from tests.service_helpers import ADMIN_TOKEN

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
FAST_HASH = {
    "KPI_PASSWORD_TIME_COST": "1",
    "KPI_PASSWORD_MEMORY_KIB": "8192",
    "KPI_PASSWORD_PARALLELISM": "1",
}
PASSWORD = "supervisor passphrase 2026"


async def test_a_session_user_calls_notify_through_the_proxy(
    clean_db: AsyncEngine,
    notify_env: dict[str, str],
    start_notify: Start,
    start_scoring: Start,
    produce_snaps: ProduceSnaps,
) -> None:
    async with clean_db.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO teams (id, name, supervisor) VALUES ('north', 'North', NULL), "
                "('south', 'South', NULL)"
            )
        )
        await conn.execute(
            text(
                "INSERT INTO specialists (id, name, team_id) VALUES ('n1', 'N1', 'north'), "
                "('s1', 'S1', 'south')"
            )
        )
    env = {**notify_env, **FAST_HASH, "KPI_STREAM_RECHECK_SECONDS": "1"}
    notify = start_notify(env)
    scoring = start_scoring({**env, "KPI_NOTIFY_URL": notify.url})
    async with httpx.AsyncClient(base_url=scoring.url, timeout=15) as http:
        user = {"username": "Mia", "password": PASSWORD, "role": "supervisor",
                "team_ids": ["north"]}  # fmt: skip
        assert (await http.post("/v1/users", json=user, headers=ADMIN)).status_code == 201
        login = await http.post("/v1/auth/login", json={"username": "mia", "password": PASSWORD})
        assert login.status_code == 200, login.text
        http.cookies.clear()
        cookie = {"Cookie": f"kpi_session={login.cookies['kpi_session']}"}
        csrf = {**cookie, "X-CSRF-Token": login.json()["csrf_token"]}

        await produce_snaps(
            [
                snapshot("n1", dt.datetime.now(dt.UTC), team_id="north"),
                snapshot("s1", dt.datetime.now(dt.UTC), team_id="south"),
            ]
        )

        async def north_alert() -> str | None:
            r = await http.get("/v1/dashboard/notify/alerts", params={"state": "open"},
                               headers=cookie)  # fmt: skip
            assert r.status_code == 200, r.text
            items = r.json()["items"]
            assert all(a["team_id"] == "north" for a in items), items  # her team only
            return next((a["alert_id"] for a in items), None)

        await wait_for(north_alert, 30)
        alert = await north_alert()

        # An action needs the CSRF token: refused by scoring's guard before notify is asked.
        path = f"/v1/dashboard/notify/alerts/{alert}/ack"
        refused = await http.post(path, headers=cookie)
        assert refused.status_code == 403 and "X-CSRF-Token" in refused.text, refused.text
        acked = await http.post(path, headers=csrf)
        assert acked.status_code == 200 and acked.json()["acked_by"] == "Mia", acked.text
        until = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
        silence = {"specialist_id": "n1", "kpi": "nps", "until": until}
        r = await http.post("/v1/dashboard/notify/silences", json=silence, headers=csrf)
        assert r.status_code == 201, r.text
        r = await http.delete(f"/v1/dashboard/notify/silences/{r.json()['id']}", headers=csrf)
        assert r.status_code == 204, r.text

        # Her open alert stream ends once her account is disabled.
        stream = Stream(scoring.url + "/v1/dashboard/notify/alerts/stream", cookie).open()
        await wait_for(lambda: stream.blocks or stream.ended, 20)
        assert stream.status == 200 and not stream.ended
        r = await http.put("/v1/users/mia", json={"disabled": True}, headers=ADMIN)
        assert r.status_code == 200, r.text
        await wait_for(lambda: stream.ended, 15, interval=0.05)
        assert stream.blocks[-1].event == "revoked", stream.blocks[-1]
        assert (await http.get("/v1/dashboard/notify/alerts", headers=cookie)).status_code == 401
