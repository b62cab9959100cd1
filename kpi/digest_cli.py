"""``kpi digest send|preview`` and ``kpi receive``: a team digest now, and a local webhook
receiver to watch it (or any alert) arrive."""

from __future__ import annotations

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer

HOME = Annotated[
    Path, typer.Option("--home", envvar="KPI_HOME", help="Where local data and logs live.")
]
PERIOD = Annotated[
    str | None,
    typer.Option(help="YYYY-Www (ISO week) or YYYY-MM; default: the latest finished period."),
]
digest_app = typer.Typer(help="Team digests: preview one, or send one now.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add ``kpi digest`` and ``kpi receive`` to the CLI."""
    app.add_typer(digest_app, name="digest")
    app.command("receive")(receive)


def _fail(reason: str) -> typer.Exit:
    from kpi.cli import console

    console.print(f"[red]{reason}[/]")
    return typer.Exit(2)


def _target(home: Path) -> tuple[dict[str, str], str]:
    """The running services' URLs (`kpi up`'s, or KPI_SCORING_URL/KPI_NOTIFY_URL) and an admin
    token (KPI_BOOTSTRAP_ADMIN_TOKEN, or `kpi up`'s)."""
    from kpi.cli import _state_file

    state_path = _state_file(home)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    services = dict(state.get("services", {}))
    for name in ("scoring", "notify"):
        services[name] = os.environ.get(f"KPI_{name.upper()}_URL") or services.get(name, "")
    if not services["scoring"]:
        raise _fail(f"No platform: start it with 'kpi up' or set KPI_SCORING_URL ({state_path}).")
    token = os.environ.get("KPI_BOOTSTRAP_ADMIN_TOKEN")
    token_path = home / "admin-token"
    if not token and token_path.exists():
        token = token_path.read_text().strip()
    if not token:
        raise _fail(f"No admin token: set KPI_BOOTSTRAP_ADMIN_TOKEN (or {token_path}).")
    return services, token


def _answer(r: Any) -> Any:
    """The JSON answer, or exit naming the problem the service answered."""
    if r.status_code >= 400:
        try:
            body = r.json()
            detail = body.get("detail") or body.get("title")
            fields = [f"{e.get('field')}: {e.get('msg')}" for e in body.get("errors", [])]
        except ValueError:
            detail, fields = r.text[:200], []
        raise _fail(f"HTTP {r.status_code}: {'; '.join(fields) or detail}")
    return r.json()


@digest_app.command("preview")
def digest_preview(
    team: Annotated[str, typer.Argument(help="The team's id, e.g. demo-north.")],
    period: PERIOD = None,
    home: HOME = Path(".kpi"),
) -> None:
    """Print a team's digest of a period as JSON (nothing is sent)."""
    import httpx

    services, token = _target(home)
    r = httpx.get(
        f"{services['scoring']}/v1/teams/{quote(team, safe='')}/digest",
        params={"period": period} if period else None,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    print(json.dumps(_answer(r), ensure_ascii=False, indent=2))


@digest_app.command("send")
def digest_send(
    team: Annotated[str, typer.Argument(help="The team's id, e.g. demo-north.")],
    period: PERIOD = None,
    webhook: Annotated[
        str | None,
        typer.Option(help="First add a generic webhook channel of the team to this URL."),
    ] = None,
    secret: Annotated[
        str | None,
        typer.Option(help="The new webhook channel's signing secret (8+ characters)."),
    ] = None,
    home: HOME = Path(".kpi"),
) -> None:
    """Send a team's digest of a finished period now, to the team's channels (once per period:
    sending it again sends nothing)."""
    import httpx

    from kpi.cli import console

    services, token = _target(home)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(headers=headers, timeout=30) as c:
        if webhook:
            if not secret:
                raise _fail("--secret: a webhook channel needs a signing secret (8+ characters)")
            if not services["notify"]:
                raise _fail(
                    "No notify URL: start the platform with 'kpi up' or set KPI_NOTIFY_URL."
                )
            config = {"url": webhook, "secret": secret}
            body = {"name": f"{team} digest", "kind": "webhook", "team_id": team, "config": config}
            created = _answer(c.post(f"{services['notify']}/v1/channels", json=body))
            console.print(f"channel {created['id']}: webhook of team {team} to {webhook}")
        sent = _answer(
            c.post(
                f"{services['scoring']}/v1/teams/{quote(team, safe='')}/digest/send",
                params={"period": period} if period else None,
            )
        )
    if sent["recorded"]:
        console.print(
            f"digest {sent['digest_id']} of {team} {sent['period']}: sent to the team's channels"
        )
    else:
        console.print(
            f"digest {sent['digest_id']} of {team} {sent['period']} was recorded before "
            f"({sent['created_at']}): sent to the team's channels that have not had it"
        )


def receive(
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port on 127.0.0.1.")] = 9000,
    secret: Annotated[
        str | None, typer.Option(help="Check X-KPI-Signature with this channel secret.")
    ] = None,
) -> None:
    """A local webhook receiver: prints the message of every notice that arrives (alerts,
    reminders, digests) and whether its signature checks; Ctrl-C stops it."""
    from kpi.cli import console
    from shared.webhooks import SIGNATURE_HEADER, verify_webhook_signature

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            signed = "unchecked (no --secret)"
            if secret is not None:
                ok = verify_webhook_signature(secret, body, self.headers.get(SIGNATURE_HEADER))
                signed = "valid" if ok else "INVALID"
            try:
                doc = json.loads(body)
                kind = doc.get("type") or doc.get("status") or "alerts"
                message = doc.get("message") or json.dumps(doc, ensure_ascii=False)[:2000]
            except (ValueError, AttributeError):
                kind, message = "not JSON", body[:500].decode(errors="replace")
            console.rule(f"{kind} · signature {signed}")
            console.print(message, markup=False, highlight=False)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    console.print(f"receiving on http://127.0.0.1:{port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
