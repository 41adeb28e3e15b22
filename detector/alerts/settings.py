"""The alert pipeline's settings: :class:`~detector.config.Settings` and a few of its own.

Same rules as every setting: a ``SPENDWATCH_`` variable each, frozen,
unknown names refused. Paths left unset sit beside the Slack outbox, so one
directory holds all of a worker's alert state.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from detector.config import Settings


class AlertSettings(Settings):
    """Settings of routing, silences, flap control and the webhook sink.

    >>> s = AlertSettings(slack_outbox=Path("/var/lib/spendwatch/outbox.db"))
    >>> s.silences_path, s.flap_window_s
    (PosixPath('/var/lib/spendwatch/spendwatch-silences.db'), 600.0)
    """

    routing_file: Path | None = Field(
        None, description="alert routing file (default: routing.yaml in SPENDWATCH_RULES_DIR, if set and there)"
    )
    silences_db: Path | None = Field(None, description="SQLite file of silences (default: beside the Slack outbox)")
    flap_window_s: float = Field(
        600.0, ge=0, description="an alert that fires again this soon after it cleared continues, without a new page"
    )
    webhook_secret: str | None = Field(
        None, description="secret for the HMAC-SHA256 signature header of webhook notifications", repr=False
    )
    webhook_outbox: Path | None = Field(
        None, description="SQLite outbox of webhook notifications (default: beside the Slack outbox)"
    )
    external_url: str = Field("", description="URL that webhook payloads give as externalURL and generatorURL")

    @property
    def silences_path(self) -> Path:
        return self.silences_db or self.slack_outbox.with_name("spendwatch-silences.db")

    @property
    def webhook_outbox_path(self) -> Path:
        return self.webhook_outbox or self.slack_outbox.with_name("spendwatch-webhook-outbox.db")
