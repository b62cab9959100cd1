"""Digest periods and schedule: ISO weeks and months, due times across DST and year ends,
which period is due at a moment (against a brute-force reference)."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.digests.periods import (
    DigestSchedule,
    Period,
    PeriodError,
    due_at,
    due_period,
    following,
    last_finished,
    parse_period,
    period_of,
    previous,
)
from shared.settings import SettingsError, load_settings

ZONES = [ZoneInfo(z) for z in ("UTC", "Asia/Shanghai", "Europe/Berlin", "America/New_York",
                               "Australia/Lord_Howe", "Pacific/Chatham")]  # fmt: skip
days = st.dates(min_value=dt.date(1990, 1, 1), max_value=dt.date(2090, 12, 31))
kinds = st.sampled_from(["week", "month"])
schedules = st.builds(
    DigestSchedule,
    kind=kinds,
    weekday=st.integers(0, 6),
    hour=st.integers(0, 23),
)


@given(kinds, days)
def test_a_period_contains_its_day_and_periods_tile_the_calendar(kind: str, day: dt.date) -> None:
    p = period_of(kind, day)  # type: ignore[arg-type]
    assert p.start <= day <= p.end
    assert previous(p).end + dt.timedelta(days=1) == p.start
    assert following(p).start == p.end + dt.timedelta(days=1)
    assert previous(following(p)) == p
    assert parse_period(p.name) == p
    if kind == "week":
        assert p.start.weekday() == 0 and p.days == 7
        assert p.name == f"{day.isocalendar()[0]:04d}-W{day.isocalendar()[1]:02d}"
    else:
        assert p.start.day == 1 and p.end.month == day.month
        assert (p.end + dt.timedelta(days=1)).day == 1
        assert p.days in (28, 29, 30, 31)


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2026-W01", dt.date(2025, 12, 29), dt.date(2026, 1, 4)),  # ISO year starts in December
        ("2020-W53", dt.date(2020, 12, 28), dt.date(2021, 1, 3)),  # a 53-week year
        ("2026-W49", dt.date(2026, 11, 30), dt.date(2026, 12, 6)),
        ("2024-02", dt.date(2024, 2, 1), dt.date(2024, 2, 29)),  # leap February
        ("2026-02", dt.date(2026, 2, 1), dt.date(2026, 2, 28)),
        ("2026-12", dt.date(2026, 12, 1), dt.date(2026, 12, 31)),
        (" 2026-04 ", dt.date(2026, 4, 1), dt.date(2026, 4, 30)),
    ],
)
def test_period_names(text: str, start: dt.date, end: dt.date) -> None:
    p = parse_period(text)
    assert (p.start, p.end) == (start, end)


@pytest.mark.parametrize(
    "text",
    ["2026-W54", "2025-W53", "2026-W00", "2026-13", "2026-00", "2026W49", "26-W01", "2026-1",
     "0001-W01", "9999-12", "", "2026-W4９", "2026-12\x00", "\ud800"],
)  # fmt: skip
def test_bad_period_names_are_refused(text: str) -> None:
    with pytest.raises(PeriodError, match="YYYY-Www"):
        parse_period(text)


def test_previous_across_the_year_end() -> None:
    assert previous(parse_period("2026-W01")).name == "2025-W52"
    assert previous(parse_period("2021-W01")).name == "2020-W53"
    assert previous(parse_period("2027-01")).name == "2026-12"
    assert following(parse_period("2026-12")).name == "2027-01"


def reference_due(now: dt.datetime, schedule: DigestSchedule, tz: ZoneInfo) -> Period:
    """Walk back from the period of today until one is finished and due."""
    assert schedule.kind is not None
    p = period_of(schedule.kind, now.astimezone(tz).date())
    while not (p.end < now.astimezone(tz).date() and due_at(p, schedule, tz) <= now):
        p = previous(p)
    return p


@settings(max_examples=300)
@given(
    st.datetimes(min_value=dt.datetime(1995, 1, 1), max_value=dt.datetime(2085, 1, 1)),
    schedules,
    st.sampled_from(ZONES),
)
def test_the_due_period_is_the_latest_finished_one_already_due(
    naive: dt.datetime, schedule: DigestSchedule, tz: ZoneInfo
) -> None:
    now = naive.replace(tzinfo=dt.UTC)
    p = due_period(now, schedule, tz)
    assert p == reference_due(now, schedule, tz)
    assert p is not None
    # The next one is not due yet, and it is due within one period of this one's end.
    nxt = following(p)
    assert due_at(nxt, schedule, tz) > now
    assert due_at(p, schedule, tz).date() - p.end <= dt.timedelta(days=7)


@given(st.lists(schedules, min_size=1, max_size=1), st.sampled_from(ZONES), kinds, days)
def test_due_times_keep_period_order_and_local_hour(
    one: list[DigestSchedule], tz: ZoneInfo, kind: str, day: dt.date
) -> None:
    schedule = DigestSchedule(kind, one[0].weekday, one[0].hour)  # type: ignore[arg-type]
    p = period_of(kind, day)  # type: ignore[arg-type]
    a, b = due_at(p, schedule, tz), due_at(following(p), schedule, tz)
    assert a < b
    assert a.date() > p.end
    if kind == "week":
        assert a.weekday() == schedule.weekday
        assert a.date() - p.end <= dt.timedelta(days=7)
    else:
        assert a.day == 1


def test_a_weekly_digest_is_due_monday_8_local_and_monthly_on_the_first() -> None:
    sh = ZoneInfo("Asia/Shanghai")
    weekly = DigestSchedule("week", 0, 8)
    # Monday 7 Dec 2026 07:59 in Shanghai: week 49 not due yet, so week 48 is the latest.
    assert due_period(dt.datetime(2026, 12, 7, 7, 59, tzinfo=sh), weekly, sh) == parse_period(
        "2026-W48"
    )
    assert due_period(dt.datetime(2026, 12, 7, 8, 0, tzinfo=sh), weekly, sh) == parse_period(
        "2026-W49"
    )
    # Friday digests: week 49 goes out on Friday 11 Dec.
    friday = DigestSchedule("week", 4, 8)
    assert due_period(dt.datetime(2026, 12, 10, 12, tzinfo=sh), friday, sh).name == "2026-W48"  # type: ignore[union-attr]
    assert due_period(dt.datetime(2026, 12, 11, 8, tzinfo=sh), friday, sh).name == "2026-W49"  # type: ignore[union-attr]
    monthly = DigestSchedule("month", 0, 8)
    assert due_period(dt.datetime(2027, 1, 1, 7, tzinfo=sh), monthly, sh).name == "2026-11"  # type: ignore[union-attr]
    assert due_period(dt.datetime(2027, 1, 1, 8, tzinfo=sh), monthly, sh).name == "2026-12"  # type: ignore[union-attr]
    assert due_period(dt.datetime(2027, 1, 1, tzinfo=sh), DigestSchedule(None), sh) is None


def test_dst_the_hour_is_local_on_both_sides_of_the_change() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    weekly = DigestSchedule("week", 0, 8)
    # 2026-03-29 clocks go forward; Monday 30 March 08:00 CEST is 06:00 UTC.
    assert due_at(parse_period("2026-W13"), weekly, berlin).astimezone(dt.UTC) == dt.datetime(
        2026, 3, 30, 6, tzinfo=dt.UTC
    )
    assert due_at(parse_period("2026-W12"), weekly, berlin).astimezone(dt.UTC) == dt.datetime(
        2026, 3, 23, 7, tzinfo=dt.UTC
    )
    # An hour the clocks skip (02:00 on the change day) is still due that day, once.
    ny = ZoneInfo("America/New_York")
    sunday2 = DigestSchedule("week", 6, 2)  # 2026-03-08 02:00 does not exist in New York
    at = due_at(parse_period("2026-W09"), sunday2, ny)
    assert at.astimezone(ny).date() == dt.date(2026, 3, 8)
    before = dt.datetime(2026, 3, 8, 6, 59, tzinfo=dt.UTC)  # 01:59 EST
    after = dt.datetime(2026, 3, 8, 8, 0, tzinfo=dt.UTC)  # 04:00 EDT
    assert due_period(before, sunday2, ny).name == "2026-W08"  # type: ignore[union-attr]
    assert due_period(after, sunday2, ny).name == "2026-W09"  # type: ignore[union-attr]


def test_last_finished() -> None:
    assert last_finished("week", dt.date(2026, 12, 7)).name == "2026-W49"  # a Monday
    assert last_finished("week", dt.date(2026, 12, 6)).name == "2026-W48"  # the Sunday before
    assert last_finished("month", dt.date(2026, 1, 15)).name == "2025-12"


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"digest_schedule": "daily"}, "KPI_DIGEST_SCHEDULE"),
        ({"digest_weekday": "mon"}, "KPI_DIGEST_WEEKDAY"),
        ({"digest_weekday": "\x00"}, "KPI_DIGEST_WEEKDAY"),
        ({"digest_hour": 24}, "KPI_DIGEST_HOUR"),
        ({"digest_hour": -1}, "KPI_DIGEST_HOUR"),
        ({"digest_hour": "8am"}, "KPI_DIGEST_HOUR"),
        ({"digest_scan_seconds": "0"}, "KPI_DIGEST_SCAN_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(env: dict[str, object], name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(**env)


def test_settings_build_the_schedule() -> None:
    assert DigestSchedule.from_settings(load_settings()) == DigestSchedule("week", 0, 8)
    s = load_settings(digest_schedule=" Monthly", digest_weekday="FRIDAY", digest_hour=23)
    assert DigestSchedule.from_settings(s) == DigestSchedule("month", 4, 23)
    assert load_settings().digest_scan_seconds == 300
    assert load_settings(digest_scan_seconds="15m").digest_scan_seconds == 900
    off = DigestSchedule.from_settings(load_settings(digest_schedule="off"))
    assert not off.enabled and off.period_kind == "week"
