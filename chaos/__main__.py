"""`python -m chaos [--events N] [--duration S] [--short] [--seed N] [--runs K]`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from chaos.report import render, write
from chaos.run import RESULTS, Options, campaign


async def _guarded(opts: Options) -> dict[str, Any]:
    """Run a campaign; SIGTERM/SIGINT cancel it so everything it started is stopped."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    return await campaign(opts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    parser.add_argument("--events", type=int, default=None, help="generated events")
    parser.add_argument("--duration", type=float, default=None, help="stream seconds")
    parser.add_argument("--short", action="store_true", help="few thousand events, ~5 s pauses")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--runs", type=int, default=1, help="campaigns in a row (seed, seed+1…)")
    parser.add_argument("--keep", action="store_true", help="keep logs and data of passed runs")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated fault kinds or kind:target to keep (e.g. poison,pause:broker)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "latest.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(name)s %(levelname)s %(message)s")
    events = args.events or (3000 if args.short else 40_000)
    duration = args.duration or (45.0 if args.short else 900.0)
    reports = []
    for i in range(args.runs):
        opts = Options(
            events=events,
            duration=duration,
            short=args.short,
            seed=args.seed + i,
            keep=args.keep,
            only=tuple(x for x in args.only.split(",") if x),
        )
        report = asyncio.run(_guarded(opts))
        print(render(report), flush=True)
        reports.append(report)
    write(reports[-1] if len(reports) == 1 else {"runs": reports}, args.out)
    print(f"report written to {args.out}")
    return 0 if all(r["passed"] for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
