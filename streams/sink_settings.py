"""The sink's settings: the worker's, the alert pipeline's and the history store's, plus its own.

Apart from :mod:`streams.sink` so that ``spendwatch sink --help`` can list
them without loading faust.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from detector.alerts.settings import AlertSettings
from detector.history.settings import HistorySettings
from streams.settings import StreamSettings


class SinkSettings(StreamSettings, AlertSettings, HistorySettings):
    """The worker's settings, the alert pipeline's and the history store's, plus the sink's own.

    >>> s = SinkSettings(consumer_group="spendwatch", digest_timezone="Europe/Paris")
    >>> sink_group(s), s.flap_window_s, s.sink_watermark_delay_s
    ('spendwatch-sink', 600.0, 120.0)
    """

    sink_watermark_delay_s: float = Field(
        120.0, ge=0,
        description="the sink's alert clock trails the newest usage event by this much, so a detection "
        "worker that is behind can still report an alert flapping before it is announced resolved",
    )
    sink_offsets_db: Path | None = Field(
        None, description="SQLite file of the usage offsets already booked (default: beside the Slack outbox)"
    )

    @property
    def sink_offsets_path(self) -> Path:
        return self.sink_offsets_db or self.slack_outbox.with_name("spendwatch-sink-offsets.db")


def sink_group(settings: StreamSettings) -> str:
    """The sink's consumer group (and faust app id): its own, beside the detection workers'."""
    return f"{settings.consumer_group}-sink"
