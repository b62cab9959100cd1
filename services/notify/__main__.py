"""Entry point: `python -m services.notify`."""

from __future__ import annotations

from services.notify.app import build_app
from shared.runtime import serve


def main() -> None:
    serve("notify", build_app, lambda s: s.notify_port)


if __name__ == "__main__":
    main()
