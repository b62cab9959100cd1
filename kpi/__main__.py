"""Entry point: ``python -m kpi``."""

from kpi.cli import main

main()
