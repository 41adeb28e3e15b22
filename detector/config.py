"""Settings, read once at start-up from flags and ``SPENDWATCH_*`` variables.

Frozen so that nothing downstream can change a setting mid-run: every
component receives the same validated object. The names of the variables are
a contract (DESIGN.md, Contract 5); do not rename them.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything spendwatch can be told at start-up.

    >>> Settings(max_tokens_per_request=5).max_tokens_per_request
    5
    """

    model_config = SettingsConfigDict(env_prefix="SPENDWATCH_", frozen=True, extra="forbid")

    broker: str = Field("kafka://127.0.0.1:9092", description="Kafka bootstrap URL")
    rules_dir: Path | None = Field(None, description="rule files directory (default: packaged rules)")
    prices: Path | None = Field(None, description="price file that overrides/extends the packaged table")
    db_url: str = Field("sqlite:///spendwatch.db", description="history store (SQLAlchemy URL)")
    slack_token: str | None = Field(None, description="Slack bot token", repr=False)
    slack_webhook_url: str | None = Field(None, description="Slack incoming webhook", repr=False)
    slack_channel: str | None = Field(None, description="default Slack channel")
    slack_api_url: str = Field("https://slack.com/api/", description="Slack Web API base URL")
    slack_token_file: Path | None = Field(None, description="file holding the Slack bot token (instead of the token)")
    slack_outbox: Path = Field(
        Path("spendwatch-outbox.db"), description="SQLite outbox: notifications wait here until Slack has them"
    )
    slack_max_age_s: float = Field(
        3600.0, gt=0, description="notifications older than this are sent as one summary, not as a flood"
    )

    max_tokens_per_request: int = Field(
        10_000_000, gt=0, description="events claiming more tokens than this are rejected as absurd"
    )
    max_cost_per_request_usd: float = Field(
        10_000.0, gt=0, description="events claiming a higher cost_usd than this are rejected as absurd"
    )
    dedupe_ids: int = Field(
        1_000_000, gt=0, description="how many recent request_ids are remembered to drop duplicates"
    )

    warmup_requests: int = Field(
        200, ge=10, description="requests a series must have before it can alert (new series are not anomalies)"
    )
    shift_threshold: float = Field(
        14.0, gt=0, description="alarm threshold of the sequential test (log-likelihood ratio; higher: fewer, later alerts)"
    )
    min_ratio: float = Field(
        1.3, gt=1, description="smallest change (observed/baseline) worth an alert, up or down"
    )
    critical_usd_per_hour: float = Field(
        5.0, ge=0, description="excess spend at which an anomaly is critical ($ per hour)"
    )
    warning_usd_per_hour: float = Field(
        0.5, ge=0, description="excess spend at which an anomaly is a warning ($ per hour); below is info"
    )
    max_series: int = Field(
        200_000, ge=10, description="most LLM series kept at once; the least recently seen are evicted (and counted)"
    )
    rebaseline_after_hours: float = Field(
        24.0, gt=0, description="a shift still present after this long is accepted as the new normal"
    )
