"""Pure rules of user accounts: usernames, password policy, sign-in throttling, expiries."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from shared.text import id_problem, text_problem

USERNAME_MAX: Final = 128
DISPLAY_NAME_MAX: Final = 200
PASSWORD_MIN: Final = 12
PASSWORD_MAX: Final = 1024
# The roles a person's account may hold; `service` is for machine clients (tokens) only.
USER_ROLES: Final = ("admin", "supervisor", "specialist")
# Methods that change something: made with a session cookie, they must carry the CSRF token.
UNSAFE_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SESSION_COOKIE: Final = "kpi_session"
CSRF_HEADER: Final = "X-CSRF-Token"
CookieSecure = Literal["auto", "true", "false"]


SSO_NO_PASSWORD: Final = (
    "the account signs in by single sign-on: it has no password here (the identity "
    "provider keeps it)"
)


class AccountError(ValueError):
    """A value that cannot be stored on an account: the field it came from and why."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def username_problem(value: str) -> str | None:
    """Why ``value`` cannot be a username (the id rule of shared.text, 1..128), or None."""
    if not value:
        return "must not be empty"
    problem = id_problem(value)
    if problem is not None:
        return problem
    if len(value) > USERNAME_MAX:
        return f"must be at most {USERNAME_MAX} characters"
    if value != value.strip():
        return "must not start or end with white space"
    return None


def username_key(username: str) -> str:
    """What makes two usernames the same login: ``Ann`` and ``ANN`` (NFKC, case-folded)."""
    # Normalised again after folding: case-folding can leave a decomposed sequence (U+1FD2's
    # capital folds to ι + two combining marks) that a differently-cased spelling composes.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", username).casefold())


def password_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable new password, or None (lengths in characters)."""
    problem = text_problem(value)
    if problem is not None:
        return problem
    if len(value) < PASSWORD_MIN:
        return f"must be at least {PASSWORD_MIN} characters"
    if len(value) > PASSWORD_MAX:
        return f"must be at most {PASSWORD_MAX} characters"
    return None


def display_name_problem(value: str) -> str | None:
    problem = id_problem(value)
    if problem is None and len(value) > DISPLAY_NAME_MAX:
        problem = f"must be at most {DISPLAY_NAME_MAX} characters"
    return problem


@dataclass(frozen=True)
class Account:
    """What decides what a person may see: role, teams (supervisors), specialist id."""

    role: str
    team_ids: tuple[str, ...] = ()
    specialist_id: str | None = None


def check_account(account: Account) -> Account:
    """The account with sorted, unique teams; AccountError naming the field otherwise."""
    if account.role not in USER_ROLES:
        raise AccountError("role", f"must be one of {', '.join(USER_ROLES)}")
    for team in account.team_ids:
        problem = id_problem(team) or ("must not be empty" if not team else None)
        if problem is None and len(team) > USERNAME_MAX:
            problem = f"must be at most {USERNAME_MAX} characters"
        if problem is not None:
            raise AccountError("team_ids", problem)
    if account.team_ids and account.role != "supervisor":
        raise AccountError("team_ids", "only a supervisor has teams")
    if account.role == "specialist":
        if not account.specialist_id:
            raise AccountError("specialist_id", "a specialist account needs its specialist id")
        problem = username_problem(account.specialist_id)
        if problem is not None:
            raise AccountError("specialist_id", problem)
    elif account.specialist_id is not None:
        raise AccountError("specialist_id", "only a specialist account has a specialist id")
    return Account(account.role, tuple(sorted(set(account.team_ids))), account.specialist_id)


TOKEN_ROLES: Final = ("admin", "supervisor", "specialist", "service")


def check_token_request(
    role: str, subject: str, team_ids: Iterable[str]
) -> tuple[str, tuple[str, ...]]:
    """The subject (the role's name when none is given) and sorted teams of a new token, or
    AccountError naming the field: subjects and teams follow the id rule; a supervisor token
    needs teams or a subject, a specialist token its specialist id and no teams."""
    if role not in TOKEN_ROLES:
        raise AccountError("role", f"must be one of {', '.join(TOKEN_ROLES)}")
    teams = tuple(sorted(set(team_ids)))
    for field, value in (("subject", subject), *(("team_ids", t) for t in teams)):
        problem = id_problem(value) if value or field == "subject" else "must not be empty"
        if problem is None and len(value) > USERNAME_MAX:
            problem = f"must be at most {USERNAME_MAX} characters"
        if problem is not None:
            raise AccountError(field, problem)
    if role == "supervisor" and not teams and not subject:
        raise AccountError("team_ids", "a supervisor token needs teams or a subject")
    if role == "specialist" and (not subject or teams):
        raise AccountError("subject", "a specialist token needs its specialist id and no teams")
    if role not in ("supervisor",) and teams:
        raise AccountError("team_ids", "only a supervisor token has teams")
    return subject or role, teams


# --- sign-in throttling --------------------------------------------------------------------


@dataclass(frozen=True)
class Throttle:
    """At most ``max_failures`` failed sign-ins per key within ``window``."""

    max_failures: int
    window: dt.timedelta

    def retry_after(self, failures: Iterable[dt.datetime], now: dt.datetime) -> int | None:
        """Whole seconds until a sign-in may be tried again for this key; None: it may now.

        Blocked while ``max_failures`` failures lie within the window before ``now``; it
        opens when the oldest of the last ``max_failures`` of them leaves the window.
        """
        recent = sorted(f for f in failures if now - self.window < f <= now)
        if len(recent) < self.max_failures:
            return None
        opens = recent[len(recent) - self.max_failures] + self.window
        return max(1, math.ceil((opens - now).total_seconds()))


def login_retry_after(
    checks: Sequence[tuple[Throttle, Iterable[dt.datetime]]], now: dt.datetime
) -> int | None:
    """The longest wait any throttle asks for (per username, per address), or None."""
    waits = [w for throttle, failures in checks if (w := throttle.retry_after(failures, now))]
    return max(waits) if waits else None


# --- expiries ------------------------------------------------------------------------------

_LIFETIME_RE = re.compile(r"^\s*([1-9][0-9]{0,4})\s*([mhdw])\s*$")
_LIFETIME_UNITS: Final = {
    "m": dt.timedelta(minutes=1),
    "h": dt.timedelta(hours=1),
    "d": dt.timedelta(days=1),
    "w": dt.timedelta(weeks=1),
}
MAX_TOKEN_LIFETIME: Final = dt.timedelta(days=3660)


def parse_lifetime(text: str) -> dt.timedelta:
    """``90d``, ``12h``, ``30m`` or ``2w`` as a duration (at most ten years); ValueError."""
    m = _LIFETIME_RE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a lifetime such as 30m, 12h, 90d or 2w")
    lifetime = int(m.group(1)) * _LIFETIME_UNITS[m.group(2)]
    if lifetime > MAX_TOKEN_LIFETIME:
        raise ValueError("must be at most 3660 days")
    return lifetime


def is_expired(expires_at: dt.datetime | None, now: dt.datetime) -> bool:
    """A credential with no expiry never expires; one whose moment has come has."""
    return expires_at is not None and expires_at <= now


@dataclass(frozen=True)
class SessionPolicy:
    """A session ends after ``idle`` without use, and ``max_age`` after sign-in at the latest."""

    idle: dt.timedelta
    max_age: dt.timedelta

    def ends_at(self, created_at: dt.datetime, last_seen_at: dt.datetime) -> dt.datetime:
        return min(created_at + self.max_age, last_seen_at + self.idle)

    def alive(self, created_at: dt.datetime, last_seen_at: dt.datetime, now: dt.datetime) -> bool:
        return now < self.ends_at(created_at, last_seen_at)


# --- session secrets -----------------------------------------------------------------------


def session_digest(session_id: str) -> str:
    """What the database keeps of a session id (256 random bits: SHA-256 cannot be reversed)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token_for(session_id: str) -> str:
    """The session's CSRF token: derived from its id, so knowing it reveals nothing of the id
    and nothing needs storing; a page that can read it already speaks for the session."""
    return hashlib.sha256(b"kpi-csrf\x00" + session_id.encode()).hexdigest()


def cookie_is_secure(setting: CookieSecure, scheme: str, public_url: str) -> bool:
    """Whether the session cookie carries ``Secure``: always, never, or (auto) when the
    request came over https or the dashboard's public URL is https."""
    if setting != "auto":
        return setting == "true"
    return scheme == "https" or public_url.lower().startswith("https://")
