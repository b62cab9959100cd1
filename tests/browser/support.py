"""Helpers of the browser tests (Playwright's sync API runs in a thread, so these are sync)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def watch_csp(page: Any) -> list[str]:
    """Collect the page's Content-Security-Policy violations, across navigations.

    Chromium reports each refused inline script, handler or style as a console error
    ("Refused to ... because it violates the following Content Security Policy directive").
    """
    violations: list[str] = []

    def on_console(msg: Any) -> None:
        if "Content Security Policy" in msg.text:
            violations.append(msg.text)

    page.on("console", on_console)
    return violations


def assert_dashboard_csp(response: Any) -> None:
    """The dashboard document was served with the strict policy the violations are about."""
    assert response is not None
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self';" in csp and "style-src 'self';" in csp, csp
    assert "frame-ancestors 'none'" in csp, csp
