"""Imports every module that declares tables, so Alembic sees the whole metadata."""

from __future__ import annotations

import importlib

MODEL_MODULES = (
    "shared.directory",
    "shared.auth",
    "shared.users",
    "shared.sessions",
    "services.ingest.models",
    "services.scoring.models",
    "services.scoring.sso.store",
    "services.notify.models",
)


def import_all_models() -> None:
    for name in MODEL_MODULES:
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as exc:
            # A service without tables yet has no models module; anything else is a bug.
            if exc.name != name:
                raise
