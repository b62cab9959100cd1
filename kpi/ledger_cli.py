"""``kpi ledger verify|repair``: check the explain ledger (kpi_facts) against stored tickets."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

    from services.scoring.engine.ledger import LedgerReport, Progress
    from services.scoring.kpi.measure import Measure

    Pass = Callable[[async_sessionmaker[AsyncSession], Progress], Awaitable[LedgerReport]]

HOME = Annotated[
    Path, typer.Option("--home", envvar="KPI_HOME", help="Where local data and logs live.")
]
ledger_app = typer.Typer(
    help="The explain ledger (kpi_facts): which ticket, session or event holds each share.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    """Add ``kpi ledger`` to the CLI."""
    app.add_typer(ledger_app, name="ledger")


def _measure() -> Measure:
    from kpi.cli import _settings, console
    from services.scoring.config import ScoringConfig
    from shared.settings import SettingsError

    try:
        measure = ScoringConfig.from_settings(_settings()).measure
    except SettingsError as exc:
        console.print(f"[red]{exc}[/]")
        raise typer.Exit(2) from None
    hours = "calendar hours" if measure.hours_fn is None else f"calendar {measure.calendar}"
    console.print(f"ledger: day buckets in {measure.tz}, response times in {hours}")
    return measure


def _run(name: str, home: Path, work: Pass, *, pool: int = 2) -> tuple[LedgerReport, float]:
    """Run one pass with a progress bar (or a line every 10 s when stderr is no terminal)."""
    from kpi.cli import _bar, _database_url, console
    from shared.db import create_engine, create_sessionmaker

    url = _database_url(home)
    started = time.monotonic()
    tty = console.is_terminal
    last_line = [time.monotonic()]

    async def main() -> LedgerReport:
        engine = create_engine(url, pool_size=pool, application_name=f"kpi-ledger-{name}")
        try:
            with _bar(disable=not tty) as bar:
                task = bar.add_task("tickets", total=None)

                def progress(done: int, total: int) -> None:
                    bar.update(task, completed=done, total=total)
                    if not tty and time.monotonic() - last_line[0] > 10:
                        last_line[0] = time.monotonic()
                        console.print(f"ledger {name}: {done}/{total} tickets")

                return await work(create_sessionmaker(engine), progress)
        finally:
            await engine.dispose()

    try:
        report = asyncio.run(main())
    except Exception as exc:
        console.print(f"[red]kpi ledger {name} failed:[/] {type(exc).__name__}: {escape(str(exc))}")
        raise typer.Exit(1) from None
    return report, time.monotonic() - started


def _ids(ids: list[str], total: int) -> str:
    shown = ", ".join(escape(repr(i)) for i in ids)
    return f" ({shown}{', …' if total > len(ids) else ''})" if ids else ""


def _summary(report: LedgerReport) -> list[str]:
    from kpi.cli import _count

    check = report.check
    lines = [
        f"checked {_count(check.tickets, 'ticket')}: "
        f"{_count(check.mismatching, 'ticket')} whose ledger rows disagree with the stored "
        f"ticket{_ids(check.examples, check.mismatching)}, {_count(check.rows_off, 'row')} off"
    ]
    if check.unreadable:
        lines.append(
            f"{_count(check.unreadable, 'ticket')} with an unreadable state document"
            f"{_ids(check.unreadable_examples, check.unreadable)}"
        )
    return lines


@ledger_app.command()
def verify(home: HOME = Path(".kpi")) -> None:
    """Check every stored ticket's kpi_facts rows against its document and every day
    bucket's kpi_facts sum against kpi_daily; exit 1 when anything disagrees."""
    from kpi.cli import _count, console
    from services.scoring.engine.ledger import verify_ledger

    measure = _measure()
    report, took = _run("verify", home, lambda s, p: verify_ledger(s, measure, p), pool=1)
    lines = _summary(report)
    off = report.buckets_off or 0
    lines.append(
        f"{_count(off, 'day bucket')} whose ledger sum differs from kpi_daily"
        + (" (kpi ledger repair does not change kpi_daily)" if off else "")
    )
    for b in report.bucket_examples:
        lines.append(
            f"  {escape(repr(b.specialist_id))} {b.metric} {b.day}: kpi_daily "
            f"{b.daily[0]:g}/{b.daily[1]}, ledger {b.ledger[0]:g}/{b.ledger[1]}"
        )
    verdict = "clean" if report.clean else "[red]MISMATCH[/]"
    console.print(f"ledger verify: {verdict}, {took:.1f}s")
    for line in lines:
        console.print(f"  {line}")
    if report.check.mismatching:
        console.print("  fix the ticket rows with: kpi ledger repair")
    if not report.clean:
        raise typer.Exit(1)


@ledger_app.command()
def repair(
    batch: Annotated[int, typer.Option(min=1, max=20_000, help="Tickets per transaction.")] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be rewritten; write nothing.")
    ] = False,
    home: HOME = Path(".kpi"),
) -> None:
    """Rewrite the kpi_facts rows of every ticket whose rows disagree with its stored document
    (kpi_daily is not changed); safe while scoring runs, and a second run changes nothing."""
    from kpi.cli import _count, console
    from services.scoring.engine.ledger import repair_ledger

    measure = _measure()
    report, took = _run(
        "repair",
        home,
        lambda s, p: repair_ledger(s, measure, batch=batch, dry_run=dry_run, progress=p),
    )
    verb = "would rewrite" if dry_run else "rewrote"
    console.print(f"ledger repair{' (dry run)' if dry_run else ''}: {took:.1f}s")
    for line in _summary(report):
        console.print(f"  {line}")
    console.print(
        f"  {verb} the ledger rows of {_count(report.repaired, 'ticket')} "
        f"({_count(report.rows_deleted, 'row')} out, {_count(report.rows_written, 'row')} in)"
    )
