"""docker-compose.yml stays true to the code: env names exist, commands exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

from kpi.cli import app as cli_app
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, object]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())  # type: ignore[no-any-return]


def test_every_kpi_env_name_is_a_setting() -> None:
    known = {f"KPI_{name.upper()}" for name in Settings.model_fields}
    services = _compose()["services"]
    assert isinstance(services, dict)
    seen = set()
    for name, svc in services.items():
        for key in svc.get("environment") or {}:
            if key.startswith("KPI_"):
                seen.add(key)
                assert key in known, f"{name}: {key} is not a setting"
    assert {"KPI_DATABASE_URL", "KPI_KAFKA_BOOTSTRAP", "KPI_BOOTSTRAP_ADMIN_TOKEN"} <= seen


def test_every_command_exists() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    cli_commands = {c.name or c.callback.__name__ for c in cli_app.registered_commands}  # type: ignore[union-attr]
    for name, svc in services.items():
        command = svc.get("command")
        if not command:
            continue
        text = " ".join(command)
        for module in re.findall(r"python -m ([\w.]+)", text):
            importlib.import_module(module if module == "kpi" else f"{module}.__main__")
        for sub in re.findall(r"python -m kpi (\w+)", text):
            assert sub in cli_commands, f"{name}: 'kpi {sub}' does not exist"
    for svc_name in ("ingest", "scoring", "notify"):
        assert f"python -m services.{svc_name}" in " ".join(services[svc_name]["command"])


def test_service_ports_match_settings_defaults() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    defaults = Settings.model_fields
    for svc_name in ("ingest", "scoring", "notify"):
        port = defaults[f"{svc_name}_port"].default
        assert services[svc_name]["ports"] == [f"{port}:{port}"]


def test_dockerfile_copies_every_package() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("shared", "services", "migrations", "kpi"):
        assert f"COPY {package} " in dockerfile


def test_replicas_publish_no_port_and_run_the_same_service() -> None:
    """``--scale`` works on the replica services only because they bind no host port."""
    services = _compose()["services"]
    assert isinstance(services, dict)
    for svc_name in ("scoring", "notify"):
        replica = services[f"{svc_name}-replica"]
        assert "ports" not in replica
        assert replica["command"] == services[svc_name]["command"]
        assert replica["environment"] == services[svc_name]["environment"]


def test_kafka_keeps_its_log_on_the_volume() -> None:
    """Offsets stored in PostgreSQL only mean something while the broker keeps its log."""
    kafka = _compose()["services"]["kafka"]  # type: ignore[index]
    log_dirs = kafka["environment"]["KAFKA_LOG_DIRS"]
    mounts = {v.split(":", 1)[1] for v in kafka["volumes"]}
    assert log_dirs in mounts


def test_blank_replication_factor_means_the_broker_default() -> None:
    assert Settings(topic_replication_factor="").topic_replication_factor is None  # type: ignore[arg-type]
    assert Settings(topic_replication_factor="3").topic_replication_factor == 3  # type: ignore[arg-type]
