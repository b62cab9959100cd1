"""The short chaos campaign (`python -m chaos --short`): every fault kind, all zero-figures."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.run import ZERO_ALERT_FIGURES, ZERO_FIGURES

pytestmark = pytest.mark.timeout(240)


def test_short_chaos_campaign_loses_duplicates_and_misses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "chaos.json"
    # A subprocess of its own: on a timeout it gets SIGTERM and stops what it started.
    proc = subprocess.Popen(
        [sys.executable, "-m", "chaos", "--short", "--seed", "3", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = proc.communicate(timeout=200)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=40)
        pytest.fail(f"chaos --short did not finish in 200 s:\n{output.decode()[-4000:]}")
    text = output.decode(errors="replace")
    print(text[-3000:])
    report = json.loads(out.read_text())
    kinds = {f["kind"] for f in report["faults"]}
    assert kinds == {
        "kill",
        "pause",
        "pg_restart",
        "pg_statement_timeout",
        "webhook_fail",
        "webhook_hang",
        "receiver_down",
        "broker_reset",
        "topic_recreate",
        "poison",
    }
    assert report["events_generated"] >= 2000
    assert report["drained"] and report["settled"], text[-3000:]
    figures = {k: report[k] for k in ZERO_FIGURES}
    assert figures == dict.fromkeys(ZERO_FIGURES, 0), text[-3000:]
    alerts = {k: report["alerts"][k] for k in ZERO_ALERT_FIGURES}
    assert alerts == dict.fromkeys(ZERO_ALERT_FIGURES, 0), text[-3000:]
    assert report["deadlettered_distinct"] == report["malformed_sent"] > 0
    assert len(report["poison_kinds"]) >= 7
    assert report["poison_deadlettered"] == report["poison_sent"] >= 7
    resets = [f for f in report["faults"] if f["kind"] in ("broker_reset", "topic_recreate")]
    assert all(f["detail"]["log_reset_incident"] for f in resets), resets
    assert report["passed"] and proc.returncode == 0
