"""``kpi`` command line (Typer): run the local platform and operate it."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from kpi.accounts_cli import register as register_account_commands
from kpi.digest_cli import register as register_digest_commands
from kpi.stack import SERVICES, LocalStack

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

    from rich.progress import Progress

    from kpi.demo import DemoTarget
    from shared.settings import Settings

app = typer.Typer(help="KPI platform for after-sales service specialists.", no_args_is_help=True)
token_app = typer.Typer(help="Manage API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")
register_account_commands(app, token_app)
register_digest_commands(app)
console = Console(stderr=True)

HOME_OPTION = Annotated[
    Path, typer.Option("--home", envvar="KPI_HOME", help="Where local data and logs live.")
]


def _state_file(home: Path) -> Path:
    return home / "stack.json"


def _database_url(home: Path) -> str:
    """KPI_DATABASE_URL, else the database of a running `kpi up` in this directory."""
    url = os.environ.get("KPI_DATABASE_URL")
    if url:
        return url
    state = _state_file(home)
    if state.exists():
        return str(json.loads(state.read_text())["database_url"])
    console.print(
        "[red]No database:[/] set KPI_DATABASE_URL or start the platform with 'kpi up' "
        f"(looked for {state})."
    )
    raise typer.Exit(2)


def _settings() -> Settings:
    """Settings from the environment; a bad variable ends the command with its reason."""
    from shared.settings import SettingsError, load_settings

    try:
        return load_settings()
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None


def _bar(*, disable: bool) -> Progress:
    """Progress of a long command on stderr: description, bar, done/total, time left."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=disable,
    )


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


@app.command()
def up(
    home: HOME_OPTION = Path(".kpi"),
    partitions: Annotated[
        int, typer.Option(envvar="KPI_TOPIC_PARTITIONS", min=1, help="Partitions per topic.")
    ] = 6,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 60,
    demo: Annotated[
        bool,
        typer.Option(
            "--demo/--no-demo",
            help="Also stream a synthetic team (kpi demo: 60-day backfill, then ~20 events/s).",
        ),
    ] = False,
) -> None:
    """Start PostgreSQL, the broker and the three services; Ctrl-C stops everything."""
    started = time.monotonic()
    stack = LocalStack(
        home=home.resolve(), say=lambda m: console.print(f"• {m}"), partitions=partitions
    )
    signal.signal(signal.SIGTERM, _raise_stop)
    # A shell that starts us in the background hands us SIGINT ignored; Ctrl-C and
    # `kill -INT` must still stop everything we start.
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        stack.start_infrastructure()
        stack.migrate()
        stack.start_services()
        stack.wait_ready(timeout)
        _state_file(stack.home).write_text(
            json.dumps({"database_url": stack.database_url, "bootstrap": stack.bootstrap,
                        "services": {n: s.url for n, s in stack.services.items()}})
        )  # fmt: skip
        console.print(f"\n[bold green]KPI platform ready[/] in {time.monotonic() - started:.1f}s")
        for name in SERVICES:
            svc = stack.services[name]
            console.print(f"  {name:<8} {svc.url}   (docs {svc.url}/docs, log {svc.log_path})")
        console.print(f"  dashboard {stack.services['scoring'].url}/")
        console.print(f"  broker   {stack.bootstrap}")
        where = (
            "KPI_BOOTSTRAP_ADMIN_PASSWORD"
            if os.environ.get("KPI_BOOTSTRAP_ADMIN_PASSWORD")
            else stack.home / "admin-password"
        )
        console.print(
            f"  sign in  admin / [bold]{stack.admin_password}[/]   (first password, from {where})"
        )
        console.print(f"  admin token: [bold]{stack.admin_token}[/]")
        console.print(
            f"  try: curl -H 'Authorization: Bearer {stack.admin_token}' "
            f"{stack.services['scoring'].url}/v1/leaderboard?kpi=customer_satisfaction"
        )
        if demo:
            log = stack.start_demo(["--backfill-days", "60", "--rate", "20"])
            console.print(
                f"  demo     streaming a synthetic team (60-day backfill, then ~20 events/s; "
                f"log {log})"
            )
            console.print(
                "  digest   see a team digest arrive now: kpi receive --port 9000 --secret "
                "digest-secret, then kpi digest send demo-north --webhook "
                "http://127.0.0.1:9000/ --secret digest-secret (docs/alerts.md#team-digests)"
            )
        console.print("\nPress Ctrl-C to stop.")
        while True:
            time.sleep(1)
            stack.supervise_once()
    except (KeyboardInterrupt, _Stop):
        console.print("\nstopping…")
    except Exception as exc:
        console.print(f"[red]kpi up failed:[/] {exc}")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        stack.stop()
        _state_file(stack.home).unlink(missing_ok=True)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
    console.print("stopped; nothing left running")


@app.command()
def migrate(home: HOME_OPTION = Path(".kpi")) -> None:
    """Apply database migrations (alembic upgrade head)."""
    from migrations import upgrade

    upgrade(_database_url(home))
    console.print("database schema at head")


@app.command()
def topics(
    partitions: Annotated[
        int, typer.Option(envvar="KPI_TOPIC_PARTITIONS", min=1, help="Partitions per new topic.")
    ] = 6,
) -> None:
    """Create the platform's topics on KPI_KAFKA_BOOTSTRAP (existing ones are left as they are)."""
    from shared.kafka import ensure_topics

    settings = _settings()
    created = asyncio.run(
        ensure_topics(
            settings.bootstrap_servers,
            partitions,
            settings.topics.all,
            replication_factor=settings.topic_replication_factor,
            security=settings.kafka_security,
        )
    )
    console.print(f"created: {', '.join(created) or 'nothing (all topics exist)'}")


@app.command("replay-deadletter")
def replay_deadletter(
    reason: Annotated[
        str | None,
        typer.Option("--reason", help="Only letters with this code (e.g. unknown_type)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Re-validate and report; publish nothing.")
    ] = False,
) -> None:
    """Re-submit dead-lettered events: valid ones to kpi.events, others back with the new reason."""
    from rich.progress import Progress

    from services.ingest.replay import replay_deadletter as replay

    settings = _settings()
    with Progress(console=console, transient=False) as bar:
        task = bar.add_task("replaying kpi.deadletter", total=None)

        def advance(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        summary = asyncio.run(
            replay(
                settings.bootstrap_servers,
                settings.topics,
                security=settings.kafka_security,
                reason=reason,
                dry_run=dry_run,
                progress=advance,
            )
        )
    verb = "would be" if dry_run else "were"
    console.print(
        f"scanned {summary.scanned} dead letters, {summary.matched} matched"
        f"{f' --reason {reason}' if reason else ''}: "
        f"{summary.republished} {verb} published to kpi.events, "
        f"{summary.deadlettered} {verb} dead-lettered again, {summary.unreadable} unreadable"
    )
    for code, n in sorted(summary.by_code.items()):
        console.print(f"  still invalid: {code}: {n}")


@app.command()
def rescore(
    since: Annotated[
        str | None,
        typer.Option(
            metavar="YYYY-MM-DD",
            help="Only tickets whose state was written on or after this local day "
            "(ticket_states.updated_at; default: every ticket).",
        ),
    ] = None,
    batch: Annotated[int, typer.Option(min=1, max=20_000, help="Tickets per transaction.")] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would change; write nothing.")
    ] = False,
    home: HOME_OPTION = Path(".kpi"),
) -> None:
    """Re-measure stored tickets with the current KPI_BUSINESS_CALENDAR, KPI_TIMEZONE and
    KPI_SLA_FIRST_RESPONSE_HOURS (also backfills tickets stored before the §3a measures)."""
    import datetime as dt

    from services.scoring.config import ScoringConfig
    from services.scoring.engine.repository import count_stored_tickets, stored_ticket_ids
    from services.scoring.engine.rescore import rescore_tickets
    from shared.db import create_engine, create_sessionmaker, raw_connection
    from shared.settings import SettingsError

    settings = _settings()
    try:
        config = ScoringConfig.from_settings(settings)
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    tz, hours_fn = config.measure.tz, config.measure.hours_fn
    start: dt.datetime | None = None
    if since is not None:
        try:
            start = dt.datetime.combine(dt.date.fromisoformat(since), dt.time(), tz)
        except ValueError:
            raise typer.BadParameter(
                f"'{since}' is not a date like 2026-11-30", param_hint="--since"
            ) from None
    measure = (
        "calendar hours"
        if hours_fn is None
        else f"business hours of calendar {config.measure.calendar}"
    )
    url = _database_url(home)
    console.print(
        f"rescore: response times in {measure}, first-response SLA "
        f"{config.measure.sla_hours:g} h, day buckets in {settings.timezone}"
    )
    started = time.monotonic()

    async def run() -> tuple[int, int, set[str]]:
        engine = create_engine(url, pool_size=1, application_name="kpi-rescore")
        sessions = create_sessionmaker(engine)
        scanned = changed = 0
        specialists: set[str] = set()
        tty = console.is_terminal
        last_line = time.monotonic()
        try:
            async with sessions() as session:
                total = await count_stored_tickets(await raw_connection(session), start)
            with _bar(disable=not tty) as bar:
                task = bar.add_task("tickets", total=total)
                after = ""
                while True:
                    # One transaction per batch: ticket rows stay locked only briefly while
                    # the scoring engine keeps running.
                    async with sessions() as session:
                        conn = await raw_connection(session)
                        ids = await stored_ticket_ids(conn, after, batch, start)
                        if not ids:
                            break
                        done = await rescore_tickets(conn, ids, config.measure, dry_run=dry_run)
                        await (session.rollback() if dry_run else session.commit())
                    after = ids[-1]
                    scanned += done.scanned
                    changed += done.changed
                    specialists.update(done.specialists)
                    bar.update(task, completed=scanned, total=max(total, scanned))
                    if not tty and time.monotonic() - last_line > 10:
                        # No bar in a log or pipe: a line now and then instead.
                        last_line = time.monotonic()
                        console.print(f"rescore: {scanned}/{total} tickets, {changed} changed")
        finally:
            await engine.dispose()
        return scanned, changed, specialists

    try:
        scanned, changed, specialists = asyncio.run(run())
    except Exception as exc:
        console.print(f"[red]kpi rescore failed:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    verb = "would change" if dry_run else "changed"
    queued = "" if dry_run or not specialists else " (queued for kpi.scores)"
    console.print(
        f"rescore{' (dry run)' if dry_run else ''}: scanned {_count(scanned, 'ticket')}"
        f"{f' written since {since}' if since else ''}, {_count(changed, 'ticket')} {verb}, "
        f"{_count(len(specialists), 'specialist')} affected{queued}, "
        f"{time.monotonic() - started:.1f}s"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _demo_target(home: Path) -> tuple[DemoTarget, ZoneInfo]:
    """Where the demo sends: broker and raw topics, scoring URL, admin token, time zone."""
    from kpi.demo import DemoTarget
    from shared.kafka_settings import PLAINTEXT

    settings = _settings()
    state_path = _state_file(home)
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    bootstrap = os.environ.get("KPI_KAFKA_BOOTSTRAP") or state.get("bootstrap")
    services = state.get("services", {})
    scoring = os.environ.get("KPI_SCORING_URL") or services.get("scoring")
    notify = os.environ.get("KPI_NOTIFY_URL") or services.get("notify")
    if not bootstrap or not scoring:
        console.print(
            "[red]Nothing to send to:[/] start the platform with 'kpi up' (or set "
            f"KPI_KAFKA_BOOTSTRAP and KPI_SCORING_URL); looked for {state_path}."
        )
        raise typer.Exit(2)
    token = os.environ.get("KPI_BOOTSTRAP_ADMIN_TOKEN")
    token_path = home / "admin-token"
    if not token and token_path.exists():
        token = token_path.read_text().strip()
    if not token:
        console.print(f"[red]No admin token:[/] set KPI_BOOTSTRAP_ADMIN_TOKEN (or {token_path}).")
        raise typer.Exit(2)
    # The security variables describe KPI_KAFKA_BOOTSTRAP; the embedded broker speaks plaintext.
    external = bool(os.environ.get("KPI_KAFKA_BOOTSTRAP"))
    target = DemoTarget(
        bootstrap=bootstrap,
        security=settings.kafka_security if external else PLAINTEXT,
        tickets_topic=settings.topics.tickets,
        surveys_topic=settings.topics.surveys,
        scoring_url=scoring,
        admin_token=token,
        notify_url=notify,
    )
    return target, settings.tz


def _ratio(text: str) -> float:
    """'0.5%' -> 0.005; '0.005' -> 0.005."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise typer.BadParameter(f"'{text}' is not a ratio like 0.5% or 0.005") from None
    if not 0 <= value <= 0.5:
        raise typer.BadParameter(f"'{text}' must be between 0% and 50%")
    return value


@app.command()
def demo(
    rate: Annotated[
        float, typer.Option(min=0, help="Live events per second after the backfill (0 = none).")
    ] = 20,
    backfill_days: Annotated[
        int, typer.Option(min=0, max=400, help="Days of history to send first (0 = none).")
    ] = 60,
    teams: Annotated[int, typer.Option(min=1, max=8, help="Number of teams.")] = 4,
    specialists: Annotated[int, typer.Option(min=1, max=5000, help="Number of specialists.")] = 32,
    malformed: Annotated[
        str, typer.Option(help="Share of malformed messages (dead-lettered), e.g. 0.5%.")
    ] = "0.5%",
    seed: Annotated[int, typer.Option(help="Seed of the synthetic behaviour.")] = 7,
    duration: Annotated[
        float | None, typer.Option(min=0, help="Stop live streaming after this many seconds.")
    ] = None,
    force_backfill: Annotated[
        bool, typer.Option(help="Backfill even when the demo teams already exist.")
    ] = False,
    webhook: Annotated[
        str | None, typer.Option(help="Also create a generic webhook channel to this URL.")
    ] = None,
    home: HOME_OPTION = Path(".kpi"),
) -> None:
    """Stream a realistic synthetic team through the raw topics (backfill, then live)."""
    from rich.progress import TaskID

    from kpi.demo import DemoOptions, run_demo

    target, tz = _demo_target(home)
    opts = DemoOptions(
        teams=teams,
        specialists=specialists,
        backfill_days=backfill_days,
        rate=rate,
        malformed=_ratio(malformed),
        seed=seed,
        duration=duration,
        force_backfill=force_backfill,
        webhook=webhook,
    )
    if specialists < teams:
        console.print(f"[red]--specialists:[/] must be at least --teams ({teams})")
        raise typer.Exit(2)
    tty = console.is_terminal
    last_line = [0.0]

    async def main_() -> dict[str, int]:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        with _bar(disable=not tty) as bar:
            tasks: dict[str, TaskID] = {}

            def progress(phase: str, done: int, total: int | None) -> None:
                if phase not in tasks:
                    label = "live events" if phase == "live" else phase
                    tasks[phase] = bar.add_task(label, total=total)
                    if not tty or total == 0:
                        console.print(f"demo: {phase}" + (f" ({total} messages)" if total else ""))
                bar.update(tasks[phase], completed=done, total=total)
                now = time.monotonic()
                if not tty and now - last_line[0] > 10:
                    last_line[0] = now
                    console.print(f"demo: {phase} {done}" + (f"/{total}" if total else ""))

            return await run_demo(target, opts, tz, progress, stop=stop)

    try:
        sent = asyncio.run(main_())
    except Exception as exc:
        console.print(f"[red]kpi demo failed:[/] {type(exc).__name__}: {exc}")
        raise typer.Exit(1) from None
    console.print(
        f"demo: sent {sent['backfill']} backfill and {sent['live']} live messages "
        f"({sent['malformed']} malformed, dead-lettered on purpose); "
        f"teams demo-north…, supervisors sup-<team>"
    )


def _check_option(
    option: str, value: str, rule: Callable[[str], str | None], max_length: int
) -> None:
    """Exit 2 naming the option and the reason when ``value`` cannot be stored as given."""
    problem = rule(value)
    if problem is None and len(value) > max_length:
        problem = f"must be at most {max_length} characters"
    if problem is not None:
        # The value is not echoed: it may hold control characters (terminal escapes).
        console.print(f"[red]{option}:[/] {problem}")
        raise typer.Exit(2)


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option(help="admin, supervisor, specialist or service")],
    subject: Annotated[
        str, typer.Option(help="Who holds it (supervisor id, specialist id, system name).")
    ] = "",
    team: Annotated[
        list[str] | None, typer.Option(help="Team a supervisor may see (repeat).")
    ] = None,
    description: Annotated[str | None, typer.Option(help="Free text note.")] = None,
    expires: Annotated[
        str | None,
        typer.Option(help="Lifetime such as 90d, 12h, 30m or 2w (default: never expires)."),
    ] = None,
    home: HOME_OPTION = Path(".kpi"),
) -> None:
    """Create an API token and print it once (only its hash is stored)."""
    from shared.accounts import parse_lifetime
    from shared.auth import Role, issue_token
    from shared.db import create_engine, create_sessionmaker, session_scope, utcnow
    from shared.directory import ID_LENGTH
    from shared.text import id_problem, text_problem

    try:
        role_ = Role(role)
    except ValueError:
        console.print(
            f"[red]--role:[/] must be one of admin, supervisor, specialist, service (got '{role}')"
        )
        raise typer.Exit(2) from None
    # Subjects and team ids are ids (shared.text, as the directory's): the subject is logged
    # and recorded as who acknowledged, silenced or resent; they are matched against teams.
    _check_option("--subject", subject, id_problem, ID_LENGTH)
    for team_id in team or ():
        _check_option("--team", team_id, id_problem, ID_LENGTH)
    if description is not None:
        _check_option("--description", description, text_problem, 200)
    if role_ is Role.SUPERVISOR and not team and not subject:
        console.print("[red]--team or --subject:[/] a supervisor token needs teams or a subject")
        raise typer.Exit(2)
    if role_ is Role.SPECIALIST and (not subject or team):
        console.print(
            "[red]--subject:[/] a specialist token needs --subject <specialist_id> (and no --team)"
        )
        raise typer.Exit(2)
    try:
        expires_at = None if expires is None else utcnow() + parse_lifetime(expires)
    except ValueError as exc:
        console.print(f"[red]--expires:[/] {exc}")
        raise typer.Exit(2) from None

    async def create() -> str:
        engine = create_engine(_database_url(home), pool_size=1, application_name="kpi-cli")
        try:
            async with session_scope(create_sessionmaker(engine)) as session:
                token, _ = await issue_token(
                    session, role_, subject or role_.value, team or (), description, expires_at
                )
            return token
        finally:
            await engine.dispose()

    print(asyncio.run(create()))


def main() -> None:
    app()
