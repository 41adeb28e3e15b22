"""The health endpoint and Prometheus metrics of the worker and of the sink, served by faust's web server.

``GET /health`` answers 200 with what the process holds; ``GET /metrics``
answers in the Prometheus text format. Each app has its own registry, so two
workers in one process (tests) never share counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import faust
from faust.web import Request, Response, View
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from detector.models import build

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Registered:
    """A process's figures in a registry of its own, so two apps in one process never share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def out_of_order_counter(name: str, registry: CollectorRegistry) -> Counter:
    """What :class:`streams.admit.Admitter` drops or seeks again, by why: the worker's and the sink's alike."""
    return Counter(
        name,
        "messages dropped because the consumer handed them over out of turn (they come again in order), "
        "by why: repeat, early, silent (a partition sought again)", ["why"], registry=registry,
    )


class Metrics(Registered):
    """Every figure the worker exposes, named ``spendwatch_*``.

    >>> m = Metrics()
    >>> m.processed.inc(3)
    >>> b"spendwatch_events_processed_total 3.0" in m.exposition()
    True
    >>> b'spendwatch_build_info{models="source"} 1.0' in m.exposition()
    True
    """

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.messages = Counter("spendwatch_messages", "usage messages read", registry=r)
        self.processed = Counter("spendwatch_events_processed", "events run through detection", registry=r)
        self.deadlettered = Counter(
            "spendwatch_events_deadlettered", "events sent to the dead-letter topic, by reason code", ["code"],
            registry=r,
        )
        self.forwarded = Counter(
            "spendwatch_events_forwarded", "events sent on through the repartition topic because their message "
            "was not on their key's partition (producers that place keys as `spendwatch produce` does save this)",
            registry=r,
        )
        self.duplicates = Counter("spendwatch_events_duplicate", "events dropped as a repeated request_id", registry=r)
        self.skipped = Counter(
            "spendwatch_events_redelivered", "events skipped because their state already holds them", registry=r
        )
        self.anomalies = Counter("spendwatch_anomalies", "anomaly records sent, by status", ["status"], registry=r)
        self.out_of_order = out_of_order_counter("spendwatch_messages_out_of_order", r)
        self.latency = Histogram(
            "spendwatch_batch_processing_seconds", "time to process one batch of keyed events",
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self.series = Gauge("spendwatch_series_tracked", "series whose state this worker holds", registry=r)
        self.groups = Gauge("spendwatch_groups_tracked", "partition keys whose state this worker holds", registry=r)
        self.table_values = Gauge(
            "spendwatch_table_values_held", "saved states a memory:// table holds besides the live models "
            "(read back after a restart, until each key is written again)", registry=r,
        )
        self.restored = Counter(
            "spendwatch_groups_restored", "partition keys whose saved state was read back from the table "
            "(after a restart, or a partition moving here)", registry=r,
        )
        Info("spendwatch_build", "how this worker's models run: compiled by mypyc or as source",
             registry=r).info({"models": build()})

    def watch_lag(self, lag: Callable[[], dict[tuple[str, int], int]]) -> None:
        """Report consumer lag per topic partition, computed when scraped."""
        self.registry.register(_LagCollector(lag))


class SinkMetrics(Registered):
    """What the sink exposes, named ``spendwatch_sink_*``: what it took, and whether the alerts get out.

    Alert on ``spendwatch_sink_notifications_pending`` staying above zero or
    ``spendwatch_sink_notification_failures_total`` growing: pages are waiting
    in an outbox because Slack or a webhook refuses them.

    >>> m = SinkMetrics()
    >>> m.pending.labels("slack").set(2)
    >>> b'spendwatch_sink_notifications_pending{channel="slack"} 2.0' in m.exposition()
    True
    """

    def __init__(self) -> None:
        super().__init__()
        r = self.registry
        self.records = Counter("spendwatch_sink_records", "anomaly records taken, by status", ["status"], registry=r)
        self.out_of_order = out_of_order_counter("spendwatch_sink_messages_out_of_order", r)
        self.repeats = Counter(
            "spendwatch_sink_records_repeated", "anomaly records skipped as already taken (same id and status)",
            registry=r,
        )
        self.usage_events = Counter("spendwatch_sink_usage_events", "usage events booked into hourly rollups",
                                    registry=r)
        self.usage_rejected = Counter("spendwatch_sink_usage_rejected",
                                      "usage events not booked (the workers dead-letter them)", registry=r)
        self.delivered = Counter("spendwatch_sink_notifications_delivered",
                                 "notifications delivered, by channel (slack, webhook)", ["channel"], registry=r)
        self.failures = Counter("spendwatch_sink_notification_failures",
                                "delivery attempts that failed and will be retried, by channel", ["channel"],
                                registry=r)
        self.pending = Gauge("spendwatch_sink_notifications_pending",
                             "notifications waiting in an outbox, by channel", ["channel"], registry=r)


class _LagCollector(Collector):
    def __init__(self, lag: Callable[[], dict[tuple[str, int], int]]) -> None:
        self._lag = lag

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "spendwatch_consumer_lag", "messages on the broker not yet read, by topic partition",
            labels=["topic", "partition"],
        )
        for (topic, partition), lag in sorted(self._lag().items()):
            family.add_metric([topic, str(partition)], lag)
        yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily("spendwatch_consumer_lag", "", labels=["topic", "partition"])


def add_pages(app: faust.App, metrics: Registered, health: Callable[[], dict[str, Any]]) -> None:
    """Mount ``/health`` and ``/metrics`` on the app's web server."""

    class HealthView(View):
        async def get(self, request: Request) -> Response:
            return self.json(health())

    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            return self.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE})

    app.page("/health", name="spendwatch-health")(HealthView)
    app.page("/metrics", name="spendwatch-metrics")(MetricsView)
