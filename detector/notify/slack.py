"""Delivering anomaly notifications to Slack so that none is lost and none is sent twice.

:meth:`SlackNotifier.notify` only writes the record into the :class:`Outbox`;
:meth:`SlackNotifier.deliver_pending` sends what is due. A firing anomaly is
posted with chat.postMessage and its channel and ``ts`` kept; its resolved
notice is posted in that thread and the original is rewritten with
chat.update. Through an incoming webhook, which cannot thread or edit, both
are posted as messages of their own (the resolved one as the full card).

Three layers keep a notification alive through trouble: slack-sdk's retry
handlers (see :mod:`detector.notify.transport`); then the outbox, where a row
Slack did not take stays pending with exponential backoff and survives a
restart of the worker; and, when Slack comes back after a long outage, rows
older than ``max_age_s`` go out as one summary instead of a flood.

Slack has no idempotency key, so each step is written down the moment Slack
answers: the firing message's ts, then for a resolved notice the thread reply
and the update separately. A retry skips every step already done. What a
crash between Slack's answer and that write (or an answer lost after Slack
acted) leaves unknown is read back from Slack: every post carries its
outbox key as message metadata, and before posting a row again that an
earlier attempt may have posted, the channel (or thread) is searched for it
(:meth:`SlackTransport.find_posted`; the bot needs the history scopes, and
``channels:read`` when the channel is set by name). Without those scopes
the row is posted again, as before: at least once, never lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slack_sdk import WebClient
from slack_sdk.http_retry import RetryIntervalCalculator
from slack_sdk.webhook import WebhookClient

from detector.anomaly import Anomaly
from detector.errors import ConfigError
from detector.notify.outbox import Key, Outbox, OutboxRow
from detector.notify.render import (
    as_record,
    render_alert,
    render_reminder,
    render_resolved,
    render_summary,
)
from detector.notify.transport import (
    SDK_LOGGER,
    SDK_REDACTOR,
    DeliveryError,
    SlackTransport,
    read_secret_file,
    retry_handlers,
)

log = logging.getLogger(__name__)

NOTICE_EVENT = "spendwatch_notice"  # the metadata event type of every message we post
LOOKBACK_S = 300.0  # search from this long before a row was enqueued (clocks differ)


@dataclass(frozen=True, slots=True)
class DeliveryReport:
    """What one :meth:`SlackNotifier.deliver_pending` round did, by (alert id, status)."""

    delivered: tuple[Key, ...] = ()
    summarised: tuple[Key, ...] = ()
    failed: tuple[tuple[Key, DeliveryError], ...] = ()
    deferred: tuple[Key, ...] = ()  # resolved notices waiting for their firing alert
    pending: int = 0  # rows still pending after the round


@dataclass(slots=True)
class _Round:
    now: float
    delivered: list[Key] = field(default_factory=list)
    summarised: list[Key] = field(default_factory=list)
    failed: list[tuple[Key, DeliveryError]] = field(default_factory=list)
    deferred: list[Key] = field(default_factory=list)
    stopped: bool = False


class SlackNotifier:
    """Anomaly records to Slack through a durable outbox.

    Give it a slack-sdk ``WebClient`` (bot token: threads and updates) or a
    ``WebhookClient`` (incoming webhook); ``clock`` returns epoch seconds.

    >>> from detector.notify.render import _example
    >>> hook = WebhookClient("http://127.0.0.1:9/services/T/B/x")
    >>> notifier = SlackNotifier(None, hook, None, Outbox(":memory:"), clock=lambda: 1_700_000_000.0)
    >>> notifier
    SlackNotifier(mode='webhook', channel=None, outbox=Outbox(':memory:'))
    >>> notifier.notify(_example()); notifier.notify(_example())  # a repeat is ignored
    >>> notifier.outbox.count("pending")
    1
    >>> notifier.close()
    """

    def __init__(
        self,
        client: WebClient | None,
        webhook: WebhookClient | None,
        channel: str | None,
        outbox: Outbox,
        clock: Callable[[], float],
        *,
        max_age_s: float = 3600.0,
        backoff_s: float = 30.0,
        max_backoff_s: float = 900.0,
    ) -> None:
        self.transport = SlackTransport(client, webhook)
        if self.transport.mode == "web_api" and not channel:
            raise ConfigError("Slack: a bot token needs a default channel (SPENDWATCH_SLACK_CHANNEL)")
        self.channel = channel
        self.outbox = outbox
        self.clock = clock
        self.max_age_s, self.backoff_s, self.max_backoff_s = max_age_s, backoff_s, max_backoff_s

    def __repr__(self) -> str:
        return f"SlackNotifier(mode={self.transport.mode!r}, channel={self.channel!r}, outbox={self.outbox!r})"

    @classmethod
    def from_settings(
        cls,
        token: str | None = None,
        webhook_url: str | None = None,
        channel: str | None = None,
        api_url: str = "https://slack.com/api/",
        token_file: str | Path | None = None,
        outbox_path: str | Path = "spendwatch-outbox.db",
        *,
        clock: Callable[[], float] = time.time,
        max_age_s: float = 3600.0,
        max_retry_count: int = 3,
        timeout: int = 10,
        interval_calculator: RetryIntervalCalculator | None = None,
    ) -> SlackNotifier:
        """The notifier the settings describe (SPENDWATCH_SLACK_*), secrets kept out of logs."""
        if token and token_file:
            raise ConfigError("Slack: set SPENDWATCH_SLACK_TOKEN or SPENDWATCH_SLACK_TOKEN_FILE, not both")
        if token_file:
            token = read_secret_file(token_file, what="Slack token file")
        if token and webhook_url:
            raise ConfigError("Slack: set a bot token or SPENDWATCH_SLACK_WEBHOOK_URL, not both")
        if not token and not webhook_url:
            raise ConfigError(
                "Slack: no destination; set SPENDWATCH_SLACK_TOKEN (with SPENDWATCH_SLACK_CHANNEL) "
                "or SPENDWATCH_SLACK_WEBHOOK_URL"
            )
        if token and not channel:
            raise ConfigError("Slack: a bot token needs a default channel (SPENDWATCH_SLACK_CHANNEL)")
        if webhook_url and not webhook_url.lower().startswith(("https://", "http://")):
            raise ConfigError("Slack: SPENDWATCH_SLACK_WEBHOOK_URL is not an http(s) URL")  # the value is secret
        SDK_REDACTOR.hide(token, webhook_url)
        handlers = retry_handlers(max_retry_count, interval_calculator)
        client = webhook = None
        if token:
            base = api_url if api_url.endswith("/") else api_url + "/"
            client = WebClient(
                token=token, base_url=base, timeout=timeout, logger=SDK_LOGGER, retry_handlers=handlers
            )
        else:
            webhook = WebhookClient(
                webhook_url, timeout=timeout, logger=SDK_LOGGER, retry_handlers=handlers
            )
        return cls(client, webhook, channel, Outbox(outbox_path), clock, max_age_s=max_age_s)

    def close(self) -> None:
        self.outbox.close()

    # -- queueing -------------------------------------------------------------------
    def notify(self, anomaly: Anomaly | Mapping[str, Any], *, channel: str | None = None,
               key: str | None = None) -> None:
        """Write the notification down; :meth:`deliver_pending` sends it. Repeats are ignored.

        ``key`` names it in the outbox (default: the record's id). A record
        with ``thread_of`` (the key of a posted alert) goes into that alert's
        thread; with ``notice: reminder`` it is a still-firing reminder.
        """
        web_api = self.transport.mode == "web_api"
        self.outbox.enqueue(as_record(anomaly), channel=(channel or self.channel) if web_api else None,
                            now=self.clock(), key=key)

    # -- delivery -------------------------------------------------------------------
    def deliver_pending(self, now: float | None = None) -> DeliveryReport:
        """Send what is due: stale rows as one summary, the rest one by one, oldest first."""
        run = _Round(now=self.clock() if now is None else now)
        due = self.outbox.due(now=run.now)
        stale = [r for r in due if run.now - r.enqueued_at > self.max_age_s]
        if stale:
            self._summarise(run, stale)
        stale_keys = {r.key for r in stale}
        for row in due:
            if run.stopped:
                break
            if row.key not in stale_keys:
                self._deliver_one(run, row)
        return DeliveryReport(
            delivered=tuple(run.delivered), summarised=tuple(run.summarised), failed=tuple(run.failed),
            deferred=tuple(run.deferred), pending=self.outbox.count("pending"),
        )

    def _deliver_one(self, run: _Round, row: OutboxRow) -> None:
        firing = self._thread_row(row)
        if firing is not None and firing.state == "pending":
            run.deferred.append(row.key)  # its thread does not exist yet
            return
        self.outbox.note_attempt(row.key)
        try:
            if row.payload.get("notice") == "reminder":
                self._send_reminder(row, firing)
            elif row.status == "firing":
                self._send_firing(row)
            else:
                self._send_resolved(row, firing)
        except DeliveryError as err:
            self._failed(run, row, err)
            return
        self.outbox.mark_delivered(row.key, now=run.now)
        run.delivered.append(row.key)

    def _thread_row(self, row: OutboxRow) -> OutboxRow | None:
        """The posted alert a row belongs under: its own firing row, or the one ``thread_of`` names."""
        thread_of = row.payload.get("thread_of")
        if thread_of:
            return self.outbox.get((str(thread_of), "firing"))
        return self.outbox.get((row.alert_id, "firing")) if row.status == "resolved" else None

    def _send_reminder(self, row: OutboxRow, firing: OutboxRow | None) -> None:
        if row.message_ts is not None:
            return
        message = render_reminder(row.payload, at=str(row.payload.get("notice_at") or row.payload["detected_at"]))
        if firing is not None and firing.message_ts:  # no thread when by webhook or summarised
            self._post_once(row, firing.message_channel, message, thread_ts=firing.message_ts)
        else:
            self._post_once(row, row.channel, message)

    def _send_firing(self, row: OutboxRow) -> None:
        if row.message_ts is not None:
            return  # posted before a crash or a failed write; never post it again
        self._post_once(row, row.channel, render_alert(row.payload))

    def _send_resolved(self, row: OutboxRow, firing: OutboxRow | None) -> None:
        rendered = render_resolved(row.payload, firing=firing.payload if firing else None)
        thread = firing if firing is not None and firing.message_ts else None
        if thread is None:  # no message to thread on (webhook, or the firing was summarised)
            if row.message_ts is None:
                self._post_once(row, row.channel, rendered.original)
            return
        if row.message_ts is None:
            self._post_once(row, thread.message_channel, rendered.reply, thread_ts=thread.message_ts)
        if not row.original_updated and thread.message_channel:
            self.transport.update(thread.message_channel, thread.message_ts, rendered.original)
            self.outbox.record_original_updated(row.key)

    def _post_once(self, row: OutboxRow, channel: str | None, message: dict[str, Any], *,
                   thread_ts: str | None = None) -> None:
        """Post the row's message and write down where it went, unless an earlier attempt already posted it."""
        marker = {"event_type": NOTICE_EVENT, "event_payload": {"key": row.alert_id, "status": row.status}}
        where: tuple[str, str | None] | None = self._posted_before(row, channel, marker, thread_ts)
        if where is not None:
            log.info("alert %s (%s): the earlier attempt reached Slack; not posting it again",
                     row.alert_id, row.status)
        else:
            where = self.transport.post(channel, message, thread_ts=thread_ts, metadata=marker)
        self.outbox.record_message(row.key, channel=where[0], ts=where[1] or "")

    def _posted_before(self, row: OutboxRow, channel: str | None, marker: dict[str, Any],
                       thread_ts: str | None) -> tuple[str, str] | None:
        """Where an earlier attempt's post landed, when Slack took it but the outbox never heard.

        Only a row with an earlier attempt is looked for. A search Slack
        refuses (a missing scope, a channel the bot cannot read) is logged
        and the row is posted: a second message is better than a lost page.
        """
        if not row.attempts or self.transport.mode != "web_api" or not channel:
            return None
        try:
            channel_id = self.outbox.channel_id(channel) or self.transport.channel_id(channel)
            if channel_id is None:
                log.warning("alert %s: channel %s not found by name; posting without checking for an "
                            "earlier post (set SPENDWATCH_SLACK_CHANNEL to the channel id)", row.alert_id, channel)
                return None
            ts = self.transport.find_posted(channel_id, marker, oldest=row.enqueued_at - LOOKBACK_S,
                                            thread_ts=thread_ts)
        except DeliveryError as err:
            if err.unavailable:
                raise
            log.warning("alert %s: cannot check Slack for an earlier post (%s); posting it", row.alert_id, err)
            return None
        return None if ts is None else (channel_id, ts)

    def _summarise(self, run: _Round, stale: list[OutboxRow]) -> None:
        reason = "a Slack outage" if any(r.attempts for r in stale) else "a delivery backlog"
        by_channel: dict[str | None, list[OutboxRow]] = {}
        for row in stale:
            by_channel.setdefault(row.channel, []).append(row)
        for channel, rows in by_channel.items():
            for row in rows:
                self.outbox.note_attempt(row.key)
            try:
                self.transport.post(channel, render_summary([r.payload for r in rows], reason=reason))
            except DeliveryError as err:
                for row in rows:
                    self._failed(run, row, err)
                if run.stopped:
                    return
                continue
            self.outbox.mark_summarised([r.key for r in rows], now=run.now)
            run.summarised.extend(r.key for r in rows)
            for row in rows:
                if row.status == "resolved":
                    self._quietly_update_original(row)

    def _quietly_update_original(self, row: OutboxRow) -> None:
        """A summarised resolved notice still turns its alert's message to resolved, without a new post."""
        firing = self._thread_row(row)
        if firing is None or not firing.message_channel or not firing.message_ts:
            return
        message = render_resolved(row.payload, firing=firing.payload).original
        try:
            self.transport.update(firing.message_channel, firing.message_ts, message)
        except DeliveryError as err:
            log.warning("alert %s: the summary covers it, but its message was not marked resolved: %s",
                        row.alert_id, err)

    def _failed(self, run: _Round, row: OutboxRow, err: DeliveryError) -> None:
        attempts = (self.outbox.get(row.key) or row).attempts
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** max(0, attempts - 1))
        self.outbox.mark_retry(row.key, error=str(err), next_attempt_at=run.now + delay)
        run.failed.append((row.key, err))
        run.stopped = run.stopped or err.unavailable
        log.warning("alert %s (%s) not delivered, attempt %d, next in %.0f s: %s",
                    row.alert_id, row.status, attempts, delay, err)
