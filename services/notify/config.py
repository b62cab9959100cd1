"""NotifyConfig: everything notify's use-cases need from the settings, built once."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta

from services.notify.egress import EgressPolicy, host_port
from services.notify.retry import RetryPolicy
from services.notify.rules import RuleConfig
from shared.settings import Settings


@dataclass(frozen=True)
class SmtpPolicy:
    """How email channels talk to their server: trusted CAs, login only over TLS."""

    ca_file: str | None = None
    allow_plaintext_login: bool = False


def platform_endpoints(settings: Settings) -> list[tuple[str, int]]:
    """(host, port) of everything the platform itself runs: channels must never target them."""
    out: list[tuple[str, int]] = []
    try:
        netloc = urllib.parse.urlsplit(settings.database_dsn).netloc
    except ValueError:
        netloc = ""
    # libpq/asyncpg take "host1:port1,host2:port2" for several servers.
    hosts = [host_port(p, 5432) for p in netloc.rpartition("@")[2].split(",") if p]
    hosts += [host_port(item, 9092) for item in settings.kafka_bootstrap]
    for url in (settings.notify_base_url, settings.ingest_base_url, settings.public_url):
        if url:
            hosts.append(host_port(url, 443 if url.startswith("https:") else 80))
    out.extend(h for h in hosts if h is not None)
    ports = (settings.ingest_port, settings.scoring_port, settings.notify_port)
    out.extend((settings.bind_host, port) for port in ports)
    return out


@dataclass(frozen=True)
class NotifyConfig:
    """Everything the use-cases need from the settings."""

    rules: RuleConfig
    lang: str = "zh-CN"
    group_wait: timedelta = timedelta(seconds=5)
    link_base: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # Deny-by-default: a config built without settings reaches public addresses only.
    egress: EgressPolicy = field(default_factory=EgressPolicy)
    smtp: SmtpPolicy = field(default_factory=SmtpPolicy)
    silence_max: timedelta = timedelta(days=31)

    @classmethod
    def from_settings(cls, settings: Settings) -> NotifyConfig:
        base = settings.public_url or f"http://{settings.bind_host}:{settings.scoring_port}"
        return cls(
            rules=RuleConfig(
                ratio_hysteresis=settings.notify_ratio_hysteresis,
                hours_hysteresis=settings.notify_hours_hysteresis,
                repeat_interval=timedelta(seconds=settings.notify_repeat_interval),
                pending_for=timedelta(seconds=settings.notify_pending_seconds),
            ),
            lang=settings.notify_lang,
            group_wait=timedelta(seconds=settings.notify_group_wait_seconds),
            link_base=base.rstrip("/"),
            retry=RetryPolicy(
                retry_for=timedelta(seconds=settings.notify_retry_for),
                base=settings.notify_retry_base_seconds,
                cap=settings.notify_retry_max_seconds,
                max_attempts=settings.notify_max_attempts,
            ),
            egress=EgressPolicy.build(
                allow_private=settings.notify_allow_private_targets,
                allowed_hosts=settings.notify_allowed_private_hosts,
                denied_hosts=settings.notify_denied_hosts,
                platform=platform_endpoints(settings),
            ),
            smtp=SmtpPolicy(
                ca_file=settings.notify_smtp_ca_file,
                allow_plaintext_login=settings.notify_smtp_allow_plaintext_login,
            ),
            silence_max=timedelta(hours=settings.notify_silence_max_hours),
        )

    def specialist_link(self, specialist_id: str, window: str | None) -> str | None:
        if not self.link_base:
            return None
        sid = urllib.parse.quote(specialist_id, safe="")
        query = f"?window={urllib.parse.quote(window)}" if window else ""
        return f"{self.link_base}/v1/specialists/{sid}/kpis{query}"

    def dashboard_link(self) -> str | None:
        """The dashboard, where the platform-health banner and its incidents are shown."""
        return f"{self.link_base}/ui/" if self.link_base else None

    def cycle_link(self, specialist_id: str) -> str | None:
        """The specialist's page in the dashboard (appraisals, meetings, plans)."""
        if not self.link_base:
            return None
        return f"{self.link_base}/ui/#/specialist/{urllib.parse.quote(specialist_id, safe='')}"

    def group_link(self, team_id: str | None) -> str | None:
        if not self.link_base:
            return None
        if team_id is None:
            return self.link_base
        return f"{self.link_base}/v1/teams/{urllib.parse.quote(team_id, safe='')}/kpis"
