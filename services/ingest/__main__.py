"""Entry point: `python -m services.ingest`."""

from __future__ import annotations

from services.ingest.app import build_app
from shared.runtime import serve


def main() -> None:
    serve("ingest", build_app, lambda s: s.ingest_port)


if __name__ == "__main__":
    main()
