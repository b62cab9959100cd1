"""Channel config validation, secret masking/merging, response classification, snapshots."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from services.notify.handlers import is_silenced, obs_from_dict, obs_to_dict, observations
from services.notify.schemas import (
    MASK,
    ScoreSnapshot,
    masked_config,
    merge_secrets,
    validate_config,
)
from services.notify.sender import _scrub, classify_response


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValidationError) as err:
        validate_config("webhook", {"url": "ftp://x", "secret": "short"})
    fields = {e["loc"][0] for e in err.value.errors()}
    assert fields == {"url", "secret"}
    with pytest.raises(ValidationError):
        validate_config("email", {"sender": "a@b.c", "recipients": []})
    with pytest.raises(ValidationError):
        validate_config("slack", {"url": "https://h/x", "extra": 1})


@given(
    secret=st.text(min_size=8, max_size=40).filter(lambda s: s != MASK),
    token=st.text(alphabet="abcdefXYZ0123", min_size=4, max_size=20),
)
def test_masked_config_never_contains_secrets(secret: str, token: str) -> None:
    url = f"https://oapi.dingtalk.com/robot/send?access_token={token}"
    masked = masked_config({"url": url, "secret": secret})
    assert masked["secret"] == MASK and token not in masked["url"]
    # Sending the masked config back keeps the stored secrets.
    assert merge_secrets(masked, {"url": url, "secret": secret}) == {"url": url, "secret": secret}
    assert merge_secrets({"url": url}, {"url": "https://old/x", "secret": secret})["url"] == url


def test_classify_response() -> None:
    assert classify_response(200, b'{"errcode":0,"errmsg":"ok"}').ok
    assert classify_response(200, b"ok").ok
    rate_limited = classify_response(200, b'{"errcode":130101,"errmsg":"send too fast"}')
    assert not rate_limited.ok and not rate_limited.permanent
    assert classify_response(200, b'{"code":19021,"msg":"sign match fail"}').ok is False
    assert classify_response(404, b"").permanent
    assert not classify_response(429, b"").permanent
    assert not classify_response(503, b"").permanent


def test_scrub_removes_url_and_secret() -> None:
    cfg = {"url": "https://h/robot?access_token=TOKEN", "secret": "SECRETVALUE"}
    text = _scrub("ConnectError https://h/robot?access_token=TOKEN key SECRETVALUE", cfg)
    assert "TOKEN" not in text and "SECRETVALUE" not in text


def test_snapshot_to_observations_roundtrip() -> None:
    snap = ScoreSnapshot.model_validate(
        {
            "specialist_id": "a",
            "team_id": None,
            "window": {"name": "30d", "from": "2026-01-01", "to": "2026-01-30"},
            "computed_at": "2026-01-30T10:00:00Z",
            "kpis": {
                "avg_response_time_hours": {
                    "value": 30.0,
                    "numerator": 300.0,
                    "denominator": 10,
                    "grade": "unqualified",
                    "qualified": 24.0,
                    "excellent": 12.0,
                    "min_samples": 10,
                },
                "nps": {"value": 10.0, "grade": None},
            },
        }
    )
    obs = observations(snap)
    assert [o.kpi for o in obs] == ["avg_response_time_hours", "nps"]
    assert obs[0].higher_is_better is False and obs[0].samples == 10
    assert obs[0].observed_at == dt.datetime(2026, 1, 30, 10, tzinfo=dt.UTC)
    assert obs_from_dict(obs_to_dict(obs[0])) == obs[0]
    with pytest.raises(ValidationError):
        ScoreSnapshot.model_validate({**snap.model_dump(), "computed_at": "2026-01-30T10:00:00"})


def test_silence_matching() -> None:
    sil = [("a", None), (None, "nps")]
    assert is_silenced(sil, "a", "resolution_rate")
    assert is_silenced(sil, "b", "nps")
    assert not is_silenced(sil, "b", "resolution_rate")
