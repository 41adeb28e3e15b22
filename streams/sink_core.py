"""What the sink does with each batch, without Kafka: alerts, history, the weekly digest.

:class:`SinkCore` is synchronous and knows nothing of faust, so the
faust app in :mod:`streams.sink` stays a thin loop around it and a test can
drive it with plain bytes. One sink runs per deployment: it is the only
writer of the history store and the only sender of notifications, so
several detection workers never add an hour twice or page twice.

Restarts. The alert lifecycle lives in memory; the history store keeps every
anomaly with its latest record. On start :meth:`SinkCore.restore` pushes the
anomalies that may still matter (firing, or resolved so recently that the
resolution may not have been announced) back into the pipeline, so a
resolved notice after a restart still finds its alert and lands in the
firing message's thread. What the restored alerts send again is dropped by
the outboxes, which are keyed by the alert's episode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from zoneinfo import ZoneInfo

import orjson
from slack_sdk import WebClient

from detector.alerts import AlertPipeline, PipelineReport
from detector.alerts.lifecycle import event_time
from detector.anomaly import Anomaly
from detector.digest.publish import post_digest
from detector.digest.weeks import last_complete_week
from detector.errors import ConfigError
from detector.events import Decoder
from detector.history import HistoryStore, HistoryWriter, StoredAnomaly
from detector.history.settings import HistorySettings
from detector.notify.transport import read_secret_file, retry_handlers
from detector.rules import RuleSet
from streams.sink_offsets import OffsetLedger

FIRING, RESOLVED = "firing", "resolved"
DIGEST_CRON = "0 9 * * 1"
"""Monday 09:00, in ``SPENDWATCH_DIGEST_TIMEZONE``."""


class SinkRecordError(ValueError):
    """An anomaly record on the topic is not a Contract 3 record."""


def parse_record(payload: bytes, where: str) -> Anomaly:
    """One message of the anomalies topic as an :class:`Anomaly`; a bad one says where and what.

    >>> parse_record(b'[1, 2]', "spendwatch.anomalies:0@7")
    Traceback (most recent call last):
    ...
    streams.sink_core.SinkRecordError: spendwatch.anomalies:0@7: expected a Contract 3 anomaly record, found [1, 2] (a JSON list, not an object)
    """
    try:
        fields = orjson.loads(payload)
        if not isinstance(fields, dict):
            raise TypeError(f"a JSON {type(fields).__name__}, not an object")
        known = {f.name for f in dataclasses.fields(Anomaly)}
        anomaly = Anomaly(**{k: v for k, v in fields.items() if k in known})
        if anomaly.status not in (FIRING, RESOLVED):
            raise ValueError(f"status must be firing or resolved, got {anomaly.status!r}")
        return anomaly
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        shown = payload[:200].decode("utf-8", "replace")
        raise SinkRecordError(f"{where}: expected a Contract 3 anomaly record, found {shown} ({exc})") from None


def still_open(stored: StoredAnomaly, newest: float, hold_s: float) -> bool:
    """Firing, or resolved less than ``hold_s`` (keep_firing_for + flap window) before ``newest``."""
    if stored.record.status == FIRING:
        return True
    return stored.resolved_ts is not None and stored.resolved_ts + hold_s > newest


def as_firing(a: Anomaly) -> Anomaly:
    """The firing record a resolved one was once: the lifecycle only resolves what it saw fire."""
    return dataclasses.replace(a, status=FIRING, resolved_at=None)


class SinkCore:
    """Anomaly records and usage payloads in; notifications, rollups and anomaly rows out.

    >>> from detector.config import Settings
    >>> from detector.pricing import PriceTable
    >>> store = HistoryStore.open("sqlite://")
    >>> core = SinkCore(AlertPipeline.from_settings(Settings()), HistoryWriter(store, PriceTable.packaged()),
    ...                 Decoder(), delay_s=0)
    >>> core.take_usage([b'{"ts": 1.8e9, "model": "gpt-4o-mini", "input_tokens": 1000, "output_tokens": 100}'])
    (1, 0)
    >>> [round(r.cost_usd, 5) for r in store.rollups(0, 2e9)]
    [0.00021]
    """

    def __init__(self, pipeline: AlertPipeline, writer: HistoryWriter, decoder: Decoder, *,
                 delay_s: float = 120.0, offsets: OffsetLedger | None = None) -> None:
        self.pipeline = pipeline
        self.offsets = offsets or OffsetLedger(":memory:")
        self.writer = writer
        self.decoder = decoder
        self.delay_s = delay_s
        self.known: dict[str, str] = {}  # anomaly id → the status already taken
        self.repeats = 0

    # -- start --------------------------------------------------------------------
    def restore(self, hold_s: float) -> int:
        """Push the anomalies the store holds that may still be open; returns how many.

        ``hold_s``: how long after its end an alert may wait to be announced
        resolved (the longest keep_firing_for plus the flap window).
        """
        store = self.writer.store
        stored = store.anomalies(float("-inf"), float("inf"))
        self.known = {s.record.id: s.record.status for s in stored}
        newest = max((max(s.detected_ts, s.resolved_ts or 0.0) for s in stored), default=0.0)
        seen = store.latest_seen()
        if seen is not None:
            newest = max(newest, seen - self.delay_s)  # the alert clock where the last run left it
        restored = [s for s in stored if still_open(s, newest, hold_s)]
        for s in restored:
            self.pipeline.push(as_firing(s.record))
            if s.record.status == RESOLVED:
                self.pipeline.push(s.record)
        if restored:
            # Fire them and let their groups look once, as they had before the restart: the
            # pages repeat into the outbox (and are dropped there), and the alerts count as
            # sent, so their resolved notices go out. A resolution that arrives in the same
            # step as the firing would otherwise be taken for an alert never paged.
            self.pipeline.advance(newest)
        return len(restored)

    # -- batches --------------------------------------------------------------------
    def take_anomalies(self, records: Iterable[Anomaly]) -> int:
        """Feed new records to the alert pipeline and the store; a repeat of (id, status) is skipped."""
        taken = 0
        for a in records:
            if self.known.get(a.id) in (a.status, RESOLVED):
                self.repeats += 1
                continue
            self.pipeline.push(a)
            self.pipeline.advance(event_time(a.resolved_at or a.detected_at))
            self.writer.add_anomaly(a)
            self.known[a.id] = a.status
            taken += 1
        return taken

    def take_usage(self, payloads: Iterable[bytes]) -> tuple[int, int]:
        """Book the events of usage messages into hourly rollups; (events, rejects).

        Rejects are the detection workers' to dead-letter; here they are only
        counted. The rollups are flushed before returning, so once the
        caller commits the offsets the dollars are in the store.
        """
        events = rejects = 0
        newest = float("-inf")
        for payload in payloads:
            decoded, bad = self.decoder.decode_payload(payload)
            self.writer.add_events(decoded)
            events, rejects = events + len(decoded), rejects + len(bad)
            newest = max([newest, *(ev.ts for ev in decoded)])
        self.writer.flush()
        if newest > float("-inf"):
            # Held back: a detection worker may still be behind this event time.
            self.pipeline.advance(newest - self.delay_s)
        return events, rejects

    def take_usage_messages(self, messages: Iterable[tuple[str, int, int, bytes]]) -> tuple[int, int]:
        """:meth:`take_usage` for (topic, partition, offset, payload); a message booked before is skipped.

        The offsets are written down once the rollups are flushed (see :mod:`streams.sink_offsets`).
        """
        fresh = [m for m in messages if not self.offsets.booked(m[0], m[1], m[2])]
        counts = self.take_usage(m[3] for m in fresh)
        nexts: dict[tuple[str, int], int] = {}
        for topic, partition, offset, _ in fresh:
            nexts[(topic, partition)] = max(nexts.get((topic, partition), 0), offset + 1)
        self.offsets.save((t, p, n) for (t, p), n in nexts.items())
        return counts

    def deliver(self) -> PipelineReport:
        """Let the outboxes send what is due (blocking network I/O); what each sent, failed and holds."""
        return self.pipeline.deliver_pending()

    def close(self) -> None:
        self.writer.flush()
        self.pipeline.close()
        self.writer.store.close()
        self.offsets.close()


def digest_slack(settings: HistorySettings) -> tuple[WebClient, str] | None:
    """The client and channel the digest goes to, or None when no bot token and channel are set.

    An incoming webhook cannot upload charts, so it does not count.

    >>> digest_slack(HistorySettings()) is None
    True
    """
    token = settings.slack_token
    if token is None and settings.slack_token_file is not None:
        token = read_secret_file(settings.slack_token_file, what="Slack token file")
    channel = settings.digest_channel or settings.slack_channel
    if not token or not channel:
        return None
    client = WebClient(token=token, base_url=settings.slack_api_url, timeout=30,
                       retry_handlers=retry_handlers(repeat_posts=True))
    return client, channel


def post_weekly_digest(store: HistoryStore, settings: HistorySettings, now: float,
                       rules: RuleSet | None = None) -> str | None:
    """Post the last complete week's digest as of ``now``; the week posted, or None without Slack.

    The week is taken in UTC, like ``spendwatch digest``; the time zone only
    sets when Monday 09:00 is.
    """
    target = digest_slack(settings)
    if target is None:
        return None
    week = last_complete_week(now)
    post_digest(store, week, target[0], target[1], rules)
    return week


def digest_timezone(settings: HistorySettings) -> ZoneInfo:
    """``SPENDWATCH_DIGEST_TIMEZONE`` as a time zone; an unknown name says which.

    >>> digest_timezone(HistorySettings(digest_timezone="Europe/Paris")).key
    'Europe/Paris'
    """
    try:
        return ZoneInfo(settings.digest_timezone)
    except (ValueError, KeyError) as exc:
        raise ConfigError(
            f"SPENDWATCH_DIGEST_TIMEZONE: expected an IANA time zone such as Europe/Paris, "
            f"got {settings.digest_timezone!r}"
        ) from exc
