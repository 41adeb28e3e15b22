"""Settings of the history store, the digest and the export, on top of the shared ones.

A subclass of :class:`detector.config.Settings`, so the same ``SPENDWATCH_*``
variables are read once and the shared names (``SPENDWATCH_DB_URL``, the
Slack ones) keep their meaning; the fields below are the additions.
"""

from __future__ import annotations

from pydantic import Field

from detector.config import Settings


class HistorySettings(Settings):
    """Everything the history store, the weekly digest and the FOCUS export can be told.

    >>> HistorySettings(history_retention_days=30).history_retention_days
    30
    """

    history_retention_days: int = Field(
        400, ge=1, description="rollups and anomalies older than this many days are deleted by pruning"
    )
    idle_gpu_below: float = Field(
        0.10, ge=0, le=1, description="a GPU sample below this utilisation counts its unused share as idle dollars"
    )
    dedupe_window_hours: float = Field(
        24.0, gt=0, description="request ids are remembered this long (event time) so a redelivered event counts once"
    )
    digest_channel: str | None = Field(None, description="Slack channel of the weekly digest (default: slack_channel)")
    digest_timezone: str = Field("UTC", description="time zone of the weekly digest's schedule (Monday 09:00)")
