"""The sink's faust app: anomaly records to Slack, webhooks and the history store; usage to rollups.

::

    spendwatch.anomalies ──sink-anomalies──► alert pipeline (Slack, webhooks) + history store anomalies
    spendwatch.usage ─────sink-usage───────► history store hourly rollups
    Monday 09:00 (on the leader) ──────────► weekly digest in Slack

It reads with a consumer group of its own (``<group>-sink``), so it sees
every record whatever the detection workers' group does, and it is meant to
run as one instance: it is the single writer of the history store. The
work itself is :class:`streams.sink_core.SinkCore`; this module only moves
batches into it and acknowledges them once it is done, so an offset is
committed only after the rollups are flushed and the notifications are in
their outboxes.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import faust
from pydantic import Field

from detector.alerts import AlertPipeline
from detector.alerts.settings import AlertSettings
from detector.detection_run import rules_in_force
from detector.events import Decoder
from detector.history import HistoryStore, HistoryWriter
from detector.history.settings import HistorySettings
from detector.pricing import PriceTable
from detector.rules import RuleSet
from streams.agents import or_exit
from streams.app import faust_options
from streams.settings import StreamSettings
from streams.sink_core import (
    DIGEST_CRON,
    SinkCore,
    SinkRecordError,
    digest_timezone,
    parse_record,
    post_weekly_digest,
)
from streams.sink_offsets import OffsetLedger
from streams.web import Metrics, add_pages

log = logging.getLogger(__name__)


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


@dataclass
class SinkApp:
    """The faust app and what a caller may look at."""

    app: faust.App
    core: SinkCore
    settings: SinkSettings


def build_core(settings: SinkSettings, rules: RuleSet) -> SinkCore:
    """The pipeline and the history writer, with the open alerts put back (see :mod:`streams.sink_core`)."""
    pipeline = AlertPipeline.from_settings(settings, rules=rules)
    store = HistoryStore.open(settings.db_url)
    writer = HistoryWriter(store, PriceTable.load(settings.prices), idle_below=settings.idle_gpu_below,
                           window_s=settings.dedupe_window_hours * 3600)
    core = SinkCore(pipeline, writer, Decoder(settings), delay_s=settings.sink_watermark_delay_s,
                    offsets=OffsetLedger(settings.sink_offsets_path))
    longest_keep = max((r.keep_firing_for_s for r in rules.rules), default=0.0)
    restored = core.restore(hold_s=longest_keep + settings.flap_window_s)
    log.info("spendwatch sink: %d open alert(s) restored from the history store", restored)
    return core


def build_sink_app(settings: SinkSettings) -> SinkApp:
    """The sink's faust app, ready for ``faust.Worker``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sa = build_sink_app(SinkSettings(db_url=f"sqlite:///{d}/h.db", slack_outbox=d / "o.db"))
    >>> sa.app.conf.id, sorted(sa.app.agents)
    ('spendwatch-sink', ['spendwatch-sink-anomalies', 'spendwatch-sink-usage'])
    >>> sa.core.close()
    """
    app = faust.App(sink_group(settings), **faust_options(settings))
    rules = rules_in_force(settings)
    core = build_core(settings, rules)
    n = settings.partitions
    usage = app.topic(settings.usage_topic, partitions=n, key_serializer="raw", value_serializer="raw")
    anomalies = app.topic(settings.anomalies_topic, partitions=n, key_serializer="raw", value_serializer="raw")
    take = (settings.batch_max, settings.batch_within_s)

    @app.agent(anomalies, name="spendwatch-sink-anomalies")
    async def anomalies_agent(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(*take):
            async with or_exit("sink-anomalies"):
                core.take_anomalies(_records(batch))
                core.deliver()

    @app.agent(usage, name="spendwatch-sink-usage")
    async def usage_agent(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(*take):
            async with or_exit("sink-usage"):
                core.take_usage_messages(
                    (e.message.topic, e.message.partition, e.message.offset, e.value) for e in batch
                )
                core.deliver()

    @app.crontab(DIGEST_CRON, timezone=digest_timezone(settings), on_leader=True)
    async def weekly_digest() -> None:
        try:
            week = post_weekly_digest(core.writer.store, settings, time.time(), rules)
        except Exception:  # the digest must never stop alerting; it is logged and tried next week
            log.exception("spendwatch sink: the weekly digest failed")
            return
        log.info("spendwatch sink: weekly digest %s", f"for {week} posted" if week else "skipped (no Slack bot)")

    add_pages(app, Metrics(), lambda: _health(app, core))
    return SinkApp(app, core, settings)


def _records(batch: list[Any]) -> list[Any]:
    """A batch's anomaly records; a malformed one is logged with where it was and skipped."""
    out = []
    for e in batch:
        where = f"{e.message.topic}:{e.message.partition}@{e.message.offset}"
        try:
            out.append(parse_record(e.value, where))
        except SinkRecordError as exc:
            log.error("spendwatch sink: skipped: %s", exc)
    return out


def _health(app: faust.App, core: SinkCore) -> dict[str, Any]:
    try:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    except Exception:  # noqa: BLE001 (faust raises various errors before the consumer starts)
        assigned = []
    return {"status": "ok", "assigned": assigned, "repeats_skipped": core.repeats}
