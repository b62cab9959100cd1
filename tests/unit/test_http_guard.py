"""The HTTP guard's policy (what is public, which CSP) and a dashboard the strict CSP allows."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from services.scoring.api.dashboard import DASHBOARD_PATHS, DASHBOARD_PREFIXES, STATIC_DIR
from shared.http_guard import API_CSP, DASHBOARD_CSP, PUBLIC_PATHS, GuardPolicy

SCORING = GuardPolicy(dashboard_paths=DASHBOARD_PATHS, dashboard_prefixes=DASHBOARD_PREFIXES)
segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.{}%", min_size=1, max_size=12)


@given(st.lists(segment, min_size=1, max_size=5))
def test_api_paths_are_never_public(segments: list[str]) -> None:
    path = "/v1/" + "/".join(segments)
    assert not SCORING.is_public(path)
    assert SCORING.csp(path) == API_CSP.encode()


@given(st.lists(segment, min_size=1, max_size=5))
def test_only_dot_free_paths_below_the_ui_are_the_dashboard(segments: list[str]) -> None:
    path = "/ui/" + "/".join(segments)
    dotted = any(s in (".", "..") for s in segments)
    assert SCORING.is_public(path) is not dotted
    assert (SCORING.csp(path) == DASHBOARD_CSP.encode()) is not dotted


def test_public_paths() -> None:
    assert {"/", "/ui", "/ui/", "/ui/js/app.js", *PUBLIC_PATHS} == {
        p for p in ("/", "/ui", "/ui/", "/ui/js/app.js", *PUBLIC_PATHS) if SCORING.is_public(p)
    }
    for path in ("/v1/whoami", "/healthz/", "/uix", "/ui/../v1/teams", "/metrics/x", ""):
        assert not SCORING.is_public(path), path
    assert not GuardPolicy().is_public("/")  # only scoring serves a dashboard


@given(st.lists(segment, min_size=1, max_size=3))
def test_only_one_segment_below_a_self_authenticated_prefix_skips_the_token(
    segments: list[str],
) -> None:
    ingest = GuardPolicy(self_authenticated=("/v1/webhooks/",))
    path = "/v1/webhooks/" + "/".join(segments)
    expected = len(segments) == 1 and segments[0] not in (".", "..")
    assert ingest.is_public(path, "POST") is expected
    assert not ingest.is_public(path, "GET")
    assert not ingest.is_public("/v1/webhooks/", "POST")
    assert not ingest.is_public("/v1/events", "POST")


def _directives(csp: str) -> dict[str, str]:
    return {p.strip().split(" ")[0]: p.strip() for p in csp.split(";")}


def test_the_dashboard_policy_allows_no_inline_script_or_style() -> None:
    d = _directives(DASHBOARD_CSP)
    assert d["script-src"] == "script-src 'self'" and d["style-src"] == "style-src 'self'"
    assert d["frame-ancestors"].endswith("'none'") and d["object-src"].endswith("'none'")
    assert "unsafe" not in DASHBOARD_CSP


class _Inline(HTMLParser):
    """Collects what a strict CSP would refuse in an HTML document."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "style":
            self.found.append("<style> element")
        if tag == "script":
            self._in_script = "src" not in names
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.found.append(f"<{tag} {name}=...>")
            if value and value.strip().lower().startswith("javascript:"):
                self.found.append(f"<{tag} {name}=javascript:>")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.found.append("inline <script>")


def test_index_html_has_no_inline_script_handler_or_style() -> None:
    parser = _Inline()
    parser.feed((STATIC_DIR / "index.html").read_text(encoding="utf-8"))
    assert parser.found == []


# What the views' HTML templates must not contain: style attributes, inline event handlers,
# javascript: URLs; nor code the policy refuses (eval, string timers, style text).
_FORBIDDEN_JS = re.compile(
    r"""\sstyle=["'$]|\son[a-z]+=["'$]|javascript:|\beval\(|new Function\(|"""
    r"""setAttribute\(\s*["']style|\.cssText\b|<style|setTimeout\(\s*["'`]"""
)


def test_dashboard_scripts_build_no_inline_handlers_or_styles() -> None:
    found = []
    for path in sorted(Path(STATIC_DIR, "js").rglob("*.js")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if _FORBIDDEN_JS.search(line):
                found.append(f"{path.relative_to(STATIC_DIR)}:{n}: {line.strip()[:120]}")
    assert found == []
