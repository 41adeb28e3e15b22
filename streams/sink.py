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

The core's work blocks: a Slack call that hangs, or is retried through an
outage, takes tens of seconds, and so can a database write. It therefore
runs on a thread of its own (:class:`CoreThread`), never on faust's event
loop, which must keep answering the broker's heartbeats, ``/health`` and
``/metrics`` meanwhile; a consumer that stops heartbeating is thrown out of
its group, and a liveness probe that gets no answer restarts the pod. One
thread, so the core (its SQLite connections are not shared between threads)
sees one call at a time: it is built, fed, and closed there.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import faust

from detector.alerts import AlertPipeline
from detector.anomaly import Anomaly
from detector.detection_run import rules_in_force
from detector.events import Decoder
from detector.history import HistoryStore, HistoryWriter
from detector.pricing import PriceTable
from detector.rules import RuleSet
from streams.admit import Admitter
from streams.agents import or_exit
from streams.app import new_app
from streams.batches import take_batches
from streams.sink_core import (
    DIGEST_CRON,
    SinkCore,
    SinkRecordError,
    digest_timezone,
    parse_record,
    post_weekly_digest,
)
from streams.sink_offsets import OffsetLedger
from streams.sink_settings import SinkSettings, sink_group
from streams.web import SinkMetrics, add_pages

log = logging.getLogger(__name__)
T = TypeVar("T")
DELIVER_EVERY_S = 5.0  # how often what is due in the outboxes is sent when no batch arrives


class CoreThread:
    """The one thread a :class:`SinkCore` is built on, works on and is closed on.

    >>> import threading
    >>> t = CoreThread()
    >>> t.call(threading.current_thread).name.startswith("spendwatch-sink-core")
    True
    >>> asyncio.run(t.run(sum, [1, 2]))
    3
    >>> t.shutdown()
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spendwatch-sink-core")

    def call(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(*args)`` there and wait for it (from plain code: start-up and shutdown)."""
        return self._pool.submit(work, *args).result()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        """Run ``work(*args)`` there while the event loop goes on with the rest."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, work, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True)


@dataclass
class SinkApp:
    """The faust app and what a caller may look at; :meth:`close` when the worker has stopped."""

    app: faust.App
    core: SinkCore
    settings: SinkSettings
    thread: CoreThread

    def close(self) -> None:
        self.thread.call(self.core.close)
        self.thread.shutdown()


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


def build_sink_app(settings: SinkSettings, clock: Callable[[], float] = time.time) -> SinkApp:
    """The sink's faust app, ready for ``faust.Worker``; ``clock`` says which week the Monday digest is for.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sa = build_sink_app(SinkSettings(db_url=f"sqlite:///{d}/h.db", slack_outbox=d / "o.db"))
    >>> sa.app.conf.id, sorted(sa.app.agents)
    ('spendwatch-sink', ['spendwatch-sink-anomalies', 'spendwatch-sink-usage'])
    >>> sa.close()
    """
    app = new_app(sink_group(settings), settings)
    rules = rules_in_force(settings)
    thread = CoreThread()
    try:
        core = thread.call(build_core, settings, rules)
    except BaseException:
        thread.shutdown()
        raise
    n = settings.partitions
    usage = app.topic(settings.usage_topic, partitions=n, key_serializer="raw", value_serializer="raw")
    anomalies = app.topic(settings.anomalies_topic, partitions=n, key_serializer="raw", value_serializer="raw")
    take = (settings.batch_max, settings.batch_within_s)
    metrics = SinkMetrics()
    counted = CountedCore(core, metrics)
    admit = Admitter(app, lambda why: metrics.out_of_order.labels(why).inc(),
                     topics=(settings.usage_topic, settings.anomalies_topic))
    admit.watch()

    @app.agent(anomalies, name="spendwatch-sink-anomalies")
    async def anomalies_agent(stream: faust.StreamT) -> None:
        async for batch in take_batches(stream, *take):
            async with or_exit("sink-anomalies"):
                await thread.run(counted.take_anomalies, _records(await admit.take_many(batch)))

    @app.agent(usage, name="spendwatch-sink-usage")
    async def usage_agent(stream: faust.StreamT) -> None:
        async for batch in take_batches(stream, *take):
            async with or_exit("sink-usage"):
                messages = [(e.message.topic, e.message.partition, e.message.offset, e.value)
                            for e in await admit.take_many(batch)]
                await thread.run(counted.take_usage, messages)

    @app.timer(DELIVER_EVERY_S)
    async def deliver_due() -> None:
        # A page that failed waits in its outbox for its retry time; a quiet stream brings no batch to send it.
        try:
            await thread.run(counted.deliver)
        except Exception:  # the outbox keeps what was not sent; the next round tries again
            log.exception("spendwatch sink: delivering the outboxes failed")

    @app.crontab(DIGEST_CRON, timezone=digest_timezone(settings), on_leader=True)
    async def weekly_digest() -> None:
        try:
            week = await thread.run(post_weekly_digest, core.writer.store, settings, clock(), rules)
        except Exception:  # the digest must never stop alerting; it is logged and tried next week
            log.exception("spendwatch sink: the weekly digest failed")
            return
        log.info("spendwatch sink: weekly digest %s", f"for {week} posted" if week else "skipped (no Slack bot)")

    add_pages(app, metrics, lambda: _health(app, core))
    return SinkApp(app, core, settings, thread)


@dataclass
class CountedCore:
    """The core's work as the agents and the timer run it (on the core thread), counted in the metrics."""

    core: SinkCore
    metrics: SinkMetrics

    def take_anomalies(self, records: list[Anomaly]) -> None:
        repeats = self.core.repeats
        for a in records:
            if self.core.take_anomalies([a]):
                self.metrics.records.labels(a.status).inc()
        self.metrics.repeats.inc(self.core.repeats - repeats)
        self.deliver()

    def take_usage(self, messages: list[tuple[str, int, int, bytes]]) -> None:
        events, rejects = self.core.take_usage_messages(messages)
        self.metrics.usage_events.inc(events)
        self.metrics.usage_rejected.inc(rejects)
        self.deliver()

    def deliver(self) -> None:
        report = self.core.deliver()
        for channel, done in (("slack", report.slack), ("webhook", report.webhook)):
            if done is not None:
                self.metrics.delivered.labels(channel).inc(len(done.delivered))
                self.metrics.failures.labels(channel).inc(len(done.failed))
                self.metrics.pending.labels(channel).set(done.pending)


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
