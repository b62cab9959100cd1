"""docker-compose.yml stays true to the code: env names exist, commands exist."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

from kpi.cli import app as cli_app
from shared.kafka_settings import PLAINTEXT, KafkaSecuritySettings
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


_SECURITY = [f"KPI_{name.upper()}" for name in KafkaSecuritySettings.model_fields]


def test_every_kafka_security_variable_reaches_every_service() -> None:
    services = _compose()["services"]
    assert isinstance(services, dict)
    for name in ("migrate", "ingest", "scoring", "notify", "scoring-replica", "notify-replica"):
        env = services[name]["environment"]
        assert set(_SECURITY) <= set(env), f"{name} lacks Kafka security variables"
        # Blank compose defaults must load as plaintext without SASL or TLS files.
        values = {
            key[4:].lower(): re.sub(r"^\$\{\w+:-(.*)\}$", r"\1", str(env[key])) for key in _SECURITY
        }
        assert Settings(**values).kafka_security == PLAINTEXT


def test_env_example_names_only_real_settings_and_the_required_ones() -> None:
    text = (ROOT / ".env.example").read_text()
    names = set(re.findall(r"^#? ?(KPI_\w+)=", text, re.MULTILINE))
    known = {f"KPI_{name.upper()}" for name in Settings.model_fields}
    assert names <= known, names - known
    assert set(_SECURITY) <= names
    compose = (ROOT / "docker-compose.yml").read_text()
    for required in re.findall(r"\$\{(\w+):\?", compose):
        assert re.search(rf"^{required}=", text, re.MULTILINE), f"{required} not in .env.example"


def test_postgres_is_the_major_the_tests_run() -> None:
    postgres = _compose()["services"]["postgres"]  # type: ignore[index]
    assert postgres["image"] == "postgres:18"
    # The 18 image refuses a volume at /var/lib/postgresql/data (its data is versioned below).
    assert postgres["volumes"] == ["pgdata:/var/lib/postgresql"]


def test_kafka_advertises_an_external_listener_on_its_published_port() -> None:
    kafka = _compose()["services"]["kafka"]  # type: ignore[index]
    env = kafka["environment"]
    assert "EXTERNAL://:9094" in env["KAFKA_LISTENERS"]
    assert "EXTERNAL:" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    advertised = dict(item.split("://") for item in env["KAFKA_ADVERTISED_LISTENERS"].split(","))
    assert advertised["INTERNAL"] == "kafka:9092"
    assert advertised["EXTERNAL"].endswith(":${KAFKA_EXTERNAL_PORT:-9094}")
    assert kafka["ports"] == ["${KAFKA_EXTERNAL_BIND:-127.0.0.1}:${KAFKA_EXTERNAL_PORT:-9094}:9094"]


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_image() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert {".env", ".git", ".venv", ".kpi"} <= set(ignored)
    dockerfile = (ROOT / "Dockerfile").read_text()
    for copied in re.findall(r"^COPY (.+) \S+$", dockerfile, re.MULTILINE):
        assert not set(copied.split()) & set(ignored), copied
