"""Entry point: `python -m services.scoring`."""

from __future__ import annotations

from services.scoring.app import build_app
from shared.runtime import serve


def main() -> None:
    serve("scoring", build_app, lambda s: s.scoring_port)


if __name__ == "__main__":
    main()
