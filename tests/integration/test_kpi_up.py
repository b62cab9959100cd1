"""`kpi up` as a user runs it: ready, prints how to reach it, stops everything, reuses data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from tests.service_helpers import worker_port


def _start(home: Path, ports: dict[str, int], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KPI_")}
    env.update({f"KPI_{name.upper()}_PORT": str(port) for name, port in ports.items()})
    env["KPI_TOPIC_PARTITIONS"] = "2"
    # Started the way a shell starts a background job: SIGINT ignored on entry.
    return subprocess.Popen(
        [sys.executable, "-m", "kpi", "up", "--home", str(home), "--no-demo"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def _wait_ready(home: Path, proc: subprocess.Popen[bytes], log: Path) -> dict[str, str]:
    deadline = time.monotonic() + 90
    state = home / "stack.json"
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        if state.exists():
            return dict(json.loads(state.read_text())["services"])
        time.sleep(0.2)
    raise AssertionError(f"kpi up not ready in 90s:\n{log.read_text()}")


def _stop(proc: subprocess.Popen[bytes]) -> list[int]:
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    proc.send_signal(signal.SIGINT)
    try:
        code = proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.terminate()  # never leave the stack behind, even when the test fails
        proc.wait(timeout=40)
        raise AssertionError("kpi up ignored SIGINT") from None
    assert code == 0
    return children


def _post_events(services: dict[str, str], token: str, specialist: str, n: int) -> None:
    """``n`` closed tickets with a survey each for ``specialist``, through ingest's HTTP."""
    events = []
    for i in range(n):
        ticket = f"{specialist}-t{i}"
        events += [
            {
                "event_id": f"{ticket}-created",
                "type": "ticket.created",
                "occurred_at": "2026-11-30T09:00:00Z",
                "ticket_id": ticket,
                "specialist_id": specialist,
            },
            {
                "event_id": f"{ticket}-closed",
                "type": "ticket.closed",
                "occurred_at": "2026-11-30T10:00:00Z",
                "ticket_id": ticket,
                "specialist_id": specialist,
                "resolved": True,
            },
            {
                "event_id": f"{ticket}-csat",
                "type": "survey.csat",
                "occurred_at": "2026-11-30T11:00:00Z",
                "ticket_id": ticket,
                "score": 5,
            },
        ]
    got = httpx.post(
        f"{services['ingest']}/v1/events",
        json=events,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert got.status_code == 202, got.text


def _wait_counted(services: dict[str, str], token: str, specialist: str, n: int) -> None:
    """Until the specialist's 400-day window holds ``n`` closures and ``n`` surveys."""
    url = f"{services['scoring']}/v1/specialists/{specialist}/kpis"
    params = {"window": "400d", "as_of": "2026-12-01"}
    deadline = time.monotonic() + 60
    kpis: object = None
    while time.monotonic() < deadline:
        got = httpx.get(url, params=params, headers={"Authorization": f"Bearer {token}"})
        if got.status_code == 200:
            kpis = got.json()["kpis"]
            assert isinstance(kpis, dict)
            if (
                kpis["resolution_rate"]["denominator"] == n
                and kpis["customer_satisfaction"]["denominator"] == n
            ):
                return
        time.sleep(0.3)
    raise AssertionError(f"{specialist}: {n} tickets not counted within 60s (last: {kpis})")


def _sign_in(scoring: str, password: str) -> None:
    login = {"username": "admin", "password": password}
    r = httpx.post(f"{scoring}/v1/auth/login", json=login, timeout=10)
    assert r.status_code == 200 and r.json()["user"]["role"] == "admin", r.text
    cookies = {"kpi_session": r.cookies["kpi_session"]}
    assert httpx.get(f"{scoring}/v1/teams", cookies=cookies).status_code == 200


def test_kpi_up_runs_stops_cleanly_and_reuses_data(tmp_path: Path, pg_home: Path) -> None:
    home = pg_home / "home"  # the stack's PostgreSQL keeps its data under it
    ports = {name: worker_port() for name in ("ingest", "scoring", "notify")}
    log = tmp_path / "up1.log"
    proc = _start(home, ports, log)
    try:
        services = _wait_ready(home, proc, log)
        token = (home / "admin-token").read_text().strip()
        for url in services.values():
            assert httpx.get(f"{url}/readyz", timeout=5).status_code == 200
        auth = {"Authorization": f"Bearer {token}"}
        put = httpx.put(
            f"{services['scoring']}/v1/teams/persisted", json={"name": "Kept"}, headers=auth
        )
        assert put.status_code in (200, 201), put.text
        output = log.read_text()
        assert "KPI platform ready" in output and token in output
        # Two commands still give a person a way in: the first admin's password is printed.
        password = (home / "admin-password").read_text().strip()
        assert password in output
        _sign_in(services["scoring"], password)
        _post_events(services, token, "before-restart", 5)
        _wait_counted(services, token, "before-restart", 5)
    finally:
        children = _stop(proc) if proc.poll() is None else []
    assert "nothing left running" in log.read_text()
    assert children and not [
        pid
        for pid in children
        if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    ]
    assert not (home / "stack.json").exists()

    log2 = tmp_path / "up2.log"
    proc = _start(home, ports, log2)
    try:
        services = _wait_ready(home, proc, log2)
        assert (home / "admin-token").read_text().strip() == token
        _sign_in(services["scoring"], password)  # the same account, kept with the data
        team = httpx.get(
            f"{services['scoring']}/v1/teams/persisted",
            headers={"Authorization": f"Bearer {token}"},
        )
        assert team.status_code == 200 and team.json()["name"] == "Kept"
        # The embedded broker started empty while PostgreSQL kept the stored offsets: new
        # events must count (and the old ones must not count twice), and the reset is told.
        _post_events(services, token, "after-restart", 5)
        _wait_counted(services, token, "after-restart", 5)
        _wait_counted(services, token, "before-restart", 5)
        health = httpx.get(
            f"{services['scoring']}/v1/platform/health",
            headers={"Authorization": f"Bearer {token}"},
        ).json()
        assert health["status"] == "degraded", health
        assert [i["kind"] for i in health["incidents"]] == ["log_reset"]
        scoring_log = (home / "logs" / "scoring.log").read_text()
        assert "no longer matches the position held" in scoring_log
    finally:
        if proc.poll() is None:
            _stop(proc)
