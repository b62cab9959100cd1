"""The pure rules of accounts (shared.accounts) and password hashing (shared.passwords)."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from shared.accounts import (
    PASSWORD_MAX,
    PASSWORD_MIN,
    Account,
    AccountError,
    SessionPolicy,
    Throttle,
    check_account,
    check_token_request,
    cookie_is_secure,
    csrf_token_for,
    is_expired,
    login_retry_after,
    parse_lifetime,
    password_problem,
    session_digest,
    username_key,
    username_problem,
)
from shared.passwords import HashParams, Passwords
from shared.settings import SettingsError, load_settings

NOW = dt.datetime(2026, 12, 10, 9, 0, tzinfo=dt.UTC)
CHEAP = HashParams(time_cost=1, memory_kib=8192, parallelism=1)


# --- sign-in throttling: against counting failures second by second ------------------------


def _count(failures: list[dt.datetime], at: dt.datetime, window: dt.timedelta) -> int:
    return sum(1 for f in failures if at - window < f <= at)


failures_st = st.lists(
    st.integers(min_value=0, max_value=3600).map(lambda s: NOW - dt.timedelta(seconds=s)),
    max_size=30,
)


@given(
    failures=failures_st,
    limit=st.integers(min_value=1, max_value=10),
    window_s=st.integers(min_value=1, max_value=1800),
)
def test_retry_after_is_the_first_whole_second_a_sign_in_is_allowed(
    failures: list[dt.datetime], limit: int, window_s: int
) -> None:
    window = dt.timedelta(seconds=window_s)
    wait = Throttle(limit, window).retry_after(failures, NOW)
    if _count(failures, NOW, window) < limit:
        assert wait is None
        return
    assert wait is not None and wait >= 1
    # Allowed once Retry-After has passed (no new failures), and not a second earlier.
    assert _count(failures, NOW + dt.timedelta(seconds=wait), window) < limit
    if wait > 1:
        assert _count(failures, NOW + dt.timedelta(seconds=wait - 1), window) >= limit


@given(a=failures_st, b=failures_st)
def test_the_longest_wait_of_username_and_address_wins(
    a: list[dt.datetime], b: list[dt.datetime]
) -> None:
    user, address = Throttle(5, dt.timedelta(minutes=15)), Throttle(3, dt.timedelta(minutes=5))
    waits = [w for w in (user.retry_after(a, NOW), address.retry_after(b, NOW)) if w]
    assert login_retry_after([(user, a), (address, b)], NOW) == (max(waits) if waits else None)


def test_five_failures_in_fifteen_minutes_block_for_what_is_left() -> None:
    throttle = Throttle(5, dt.timedelta(minutes=15))
    four = [NOW - dt.timedelta(minutes=m) for m in (1, 2, 3, 10)]
    assert throttle.retry_after(four, NOW) is None
    five = [*four, NOW - dt.timedelta(minutes=14)]
    assert throttle.retry_after(five, NOW) == 60  # the oldest leaves the window in a minute
    assert throttle.retry_after([*five, NOW - dt.timedelta(minutes=16)], NOW) == 60


# --- password policy and usernames ----------------------------------------------------------


@given(st.text(max_size=1100))
def test_password_policy_matches_its_reference(value: str) -> None:
    unstorable = "\x00" in value or any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    ok = not unstorable and PASSWORD_MIN <= len(value) <= PASSWORD_MAX
    assert (password_problem(value) is None) == ok


def test_password_problems_say_why() -> None:
    assert "at least 12" in (password_problem("short") or "")
    assert "at most 1024" in (password_problem("x" * 1025) or "")
    assert "NUL" in (password_problem("twelve chars\x00 and more") or "")
    assert "surrogate" in (password_problem("twelve chars \ud800 and more") or "")
    assert password_problem("密码也可以是中文的十二个字符吗") is None


@given(st.text(alphabet=st.characters(categories=["Lu", "Ll", "Nd"]), min_size=1, max_size=60))
@example("\u1fd2")  # its capital folds to a decomposed sequence: normalised again after folding
def test_usernames_ignore_case(name: str) -> None:
    assert username_key(name.upper()) == username_key(name.upper().lower())


def test_username_rules() -> None:
    assert username_problem("li.na") is None and username_problem("张伟") is None
    assert username_problem("") and username_problem(" ann") and username_problem("a\tb")
    assert username_problem("x" * 129) and username_problem("a\x00b")
    assert username_key("Ann") == username_key("ANN") == username_key("ａｎｎ")  # NFKC


def test_account_rules_name_the_field() -> None:
    assert check_account(Account("supervisor", ("b", "a", "b"))) == Account(
        "supervisor", ("a", "b")
    )
    assert check_account(Account("specialist", (), "li.na")).specialist_id == "li.na"
    for account, field in (
        (Account("service"), "role"),
        (Account("admin", ("north",)), "team_ids"),
        (Account("specialist"), "specialist_id"),
        (Account("supervisor", (), "li.na"), "specialist_id"),
        (Account("supervisor", ("bad\x07",)), "team_ids"),
    ):
        with pytest.raises(AccountError) as caught:
            check_account(account)
        assert caught.value.field == field


def test_token_requests() -> None:
    assert check_token_request("service", "", []) == ("service", ())
    assert check_token_request("supervisor", "ann", ["n", "n"]) == ("ann", ("n",))
    for role, subject, teams, field in (
        ("root", "x", [], "role"),
        ("supervisor", "", [], "team_ids"),
        ("specialist", "", [], "subject"),
        ("specialist", "li", ["n"], "subject"),
        ("service", "zendesk", ["n"], "team_ids"),
        ("service", "bad\x1b[31m", [], "subject"),
        ("supervisor", "ann", [""], "team_ids"),
    ):
        with pytest.raises(AccountError) as caught:
            check_token_request(role, subject, teams)
        assert caught.value.field == field


# --- expiries ------------------------------------------------------------------------------


@given(n=st.integers(min_value=1, max_value=500), unit=st.sampled_from("mhdw"))
def test_lifetimes_parse(n: int, unit: str) -> None:
    seconds = {"m": 60, "h": 3600, "d": 86400, "w": 604800}[unit]
    assert parse_lifetime(f"{n}{unit}") == dt.timedelta(seconds=n * seconds)


@pytest.mark.parametrize("bad", ["", "90", "0d", "-1d", "1y", "3661d", "d", "1.5d", "1d\x00"])
def test_bad_lifetimes_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_lifetime(bad)


def test_expiry() -> None:
    assert not is_expired(None, NOW)
    assert is_expired(NOW, NOW) and is_expired(NOW - dt.timedelta(seconds=1), NOW)
    assert not is_expired(NOW + dt.timedelta(seconds=1), NOW)


@given(
    created=st.integers(min_value=0, max_value=86400),
    seen=st.integers(min_value=0, max_value=86400),
    at=st.integers(min_value=0, max_value=3 * 86400),
)
def test_a_session_lives_until_idle_or_too_old(created: int, seen: int, at: int) -> None:
    policy = SessionPolicy(idle=dt.timedelta(minutes=60), max_age=dt.timedelta(hours=12))
    t = lambda s: NOW + dt.timedelta(seconds=s)  # noqa: E731
    last_seen = t(max(created, seen))
    alive = policy.alive(t(created), last_seen, t(at))
    reference = (t(at) - last_seen < policy.idle) and (t(at) - t(created) < policy.max_age)
    assert alive == reference
    assert policy.ends_at(t(created), last_seen) <= t(created) + policy.max_age


def test_csrf_token_and_cookie_flags() -> None:
    sid = "a-session-id"
    token = csrf_token_for(sid)
    assert token == csrf_token_for(sid) and len(token) == 64
    assert token != session_digest(sid) and token != csrf_token_for("another")
    assert cookie_is_secure("auto", "https", "") and cookie_is_secure("auto", "http", "HTTPS://x")
    assert not cookie_is_secure("auto", "http", "http://kpi.example")
    assert cookie_is_secure("true", "http", "") and not cookie_is_secure("false", "https", "")


# --- hashing --------------------------------------------------------------------------------


def test_hashes_are_argon2id_with_the_given_parameters() -> None:
    passwords = Passwords(CHEAP)
    stored = passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=8192,t=1,p=1$")
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "correct horse battery!")
    assert not passwords.verify("not a hash", "x") and passwords.needs_rehash("not a hash")
    assert not passwords.needs_rehash(stored)
    assert Passwords(HashParams(time_cost=2, memory_kib=8192, parallelism=1)).needs_rehash(stored)
    assert Passwords(HashParams(time_cost=1, memory_kib=16384, parallelism=1)).needs_rehash(stored)
    assert not passwords.verify_nobody("correct horse battery")
    assert passwords.hash("same") != passwords.hash("same")  # salted


def test_default_parameters_are_rfc_9106s_second_choice() -> None:
    assert HashParams() == HashParams(time_cost=3, memory_kib=65536, parallelism=4)
    assert load_settings().password_params == HashParams()


@settings(max_examples=20, deadline=None)
@given(st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_any_text_round_trips(password: str) -> None:
    passwords = Passwords(CHEAP)
    assert passwords.verify(passwords.hash(password), password)


def test_account_settings() -> None:
    s = load_settings(session_idle_minutes=30, session_max_hours=8, login_window_minutes=10)
    assert s.session_policy == SessionPolicy(dt.timedelta(minutes=30), dt.timedelta(hours=8))
    assert [t.max_failures for t in s.login_throttles] == [5, 20]
    assert s.login_throttles[0].window == dt.timedelta(minutes=10)
    assert load_settings(bootstrap_admin_password="").bootstrap_admin_password is None
    with pytest.raises(SettingsError) as caught:
        load_settings(bootstrap_admin_password="tiny-secret")
    assert "KPI_BOOTSTRAP_ADMIN_PASSWORD" in str(caught.value)
    assert "tiny-secret" not in str(caught.value)  # the value is never echoed
    with pytest.raises(SettingsError) as caught:
        load_settings(session_cookie_secure="maybe")
    assert "KPI_SESSION_COOKIE_SECURE" in str(caught.value)
