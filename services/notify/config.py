"""NotifyConfig: everything notify's use-cases need from the settings, built once."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from datetime import timedelta

from services.notify.retry import RetryPolicy
from services.notify.rules import RuleConfig
from shared.settings import Settings


@dataclass(frozen=True)
class NotifyConfig:
    """Everything the use-cases need from the settings."""

    rules: RuleConfig
    lang: str = "zh-CN"
    group_wait: timedelta = timedelta(seconds=5)
    link_base: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)

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

    def group_link(self, team_id: str | None) -> str | None:
        if not self.link_base:
            return None
        if team_id is None:
            return self.link_base
        return f"{self.link_base}/v1/teams/{urllib.parse.quote(team_id, safe='')}/kpis"
