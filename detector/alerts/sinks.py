"""Where a group's notification goes: a Slack channel, a webhook, or a preview on screen.

Each sink turns a :class:`~detector.alerts.grouping.Batch` into durable
notifications, keyed so that a repeat (a stream redelivering after a restart,
a replay run twice) is dropped by the outbox:

* Slack: one message per alert, as an on-call engineer reads them. The page
  is keyed by the alert's episode (and channel, when not the default); its
  reminders and its resolved notice go into its thread.
* webhook: one Alertmanager payload per batch, keyed by the group and the
  notices it carries.
* preview: the Slack messages rendered and kept in memory, for
  ``spendwatch demo`` when no Slack is configured.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from detector.alerts.grouping import PAGE, REMINDER, Batch, Notice
from detector.alerts.lifecycle import RESOLVED
from detector.alerts.payload import alertmanager_payload
from detector.alerts.routing import SlackTarget, WebhookTarget
from detector.anomaly import rfc3339
from detector.notify.render import render_alert, render_reminder, render_resolved
from detector.notify.slack import SlackNotifier
from detector.notify.webhook import WebhookNotifier


class Sink(Protocol):
    """Takes batches (durably) now; sends them on :meth:`deliver_pending`."""

    def send(self, batch: Batch) -> None: ...

    def deliver_pending(self, now: float | None = None) -> Any: ...


def page_key(episode: str, channel: str | None) -> str:
    """The outbox key of an alert's page in a channel (None: the default channel).

    >>> page_key("3f2a", None), page_key("3f2a", "#search")
    ('3f2a', '3f2a@#search')
    """
    return episode if channel is None else f"{episode}@{channel}"


def slack_record(notice: Notice, channel: str | None, at: float) -> tuple[str, dict[str, Any]]:
    """(outbox key, record) for one notice: the record the Slack notifier renders."""
    alert, key = notice.alert, page_key(notice.alert.episode, channel)
    if notice.kind == PAGE:
        return key, dict(alert.record)
    if notice.kind == REMINDER:
        record = {**alert.record, "notice": REMINDER, "thread_of": key, "notice_at": rfc3339(at)}
        return f"{key}/reminder-{notice.number}", record
    return key, dict(alert.resolved_record or alert.record)


class SlackSink:
    """A Slack channel of a receiver, through the durable :class:`SlackNotifier`."""

    def __init__(self, notifier: SlackNotifier, target: SlackTarget) -> None:
        self.notifier, self.target = notifier, target

    def __repr__(self) -> str:
        return f"SlackSink({self.target.channel or self.notifier.channel!r})"

    def send(self, batch: Batch) -> None:
        for notice in batch.notices:
            if notice.kind == RESOLVED and not self.target.send_resolved:
                continue
            key, record = slack_record(notice, self.target.channel, batch.at)
            self.notifier.notify(record, channel=self.target.channel, key=key)

    def deliver_pending(self, now: float | None = None) -> Any:
        return self.notifier.deliver_pending(now)


class PreviewSink:
    """The messages a Slack channel would get, rendered, kept in order (nothing is sent).

    ``messages`` holds (channel, kind, Block Kit message); a resolved notice
    gives its thread reply.
    """

    def __init__(self, target: SlackTarget, default_channel: str | None) -> None:
        self.target, self.channel = target, target.channel or default_channel or "#spendwatch"
        self.messages: list[tuple[str, str, dict[str, Any]]] = []

    def send(self, batch: Batch) -> None:
        for notice in batch.notices:
            if notice.kind == RESOLVED and not self.target.send_resolved:
                continue
            _, record = slack_record(notice, self.target.channel, batch.at)
            if notice.kind == PAGE:
                message = render_alert(record)
            elif notice.kind == REMINDER:
                message = render_reminder(record, at=rfc3339(batch.at))
            else:
                message = render_resolved(record, firing=notice.alert.record).reply
            self.messages.append((self.channel, notice.kind, message))

    def deliver_pending(self, now: float | None = None) -> None:
        return None


class WebhookSink:
    """A webhook of a receiver: one Alertmanager payload per batch, through the webhook outbox."""

    def __init__(self, notifier: WebhookNotifier, target: WebhookTarget, external_url: str = "") -> None:
        self.notifier, self.target, self.external_url = notifier, target, external_url

    def __repr__(self) -> str:
        return f"WebhookSink({self.notifier!r})"

    def send(self, batch: Batch) -> None:
        notices = [n for n in batch.notices if n.kind != RESOLVED or self.target.send_resolved]
        if not notices:
            return
        payload = alertmanager_payload(batch, external_url=self.external_url, max_alerts=self.target.max_alerts)
        self.notifier.enqueue(batch_key(batch, notices), self.target.url, payload)

    def deliver_pending(self, now: float | None = None) -> Any:
        return self.notifier.deliver_pending(now)


def batch_key(batch: Batch, notices: list[Notice]) -> str:
    """Stable across a restart: the group and what the batch announces, not a counter.

    >>> from detector.alerts.routing import default_routing
    >>> routing = default_routing()
    >>> len(batch_key(Batch(routing.receivers["default"], routing.route, "g", {}, (), (), 0.0, 0), []))
    24
    """
    what = "|".join(sorted(f"{n.alert.episode}:{n.kind}:{n.number}" for n in notices))
    return hashlib.sha256(f"{batch.group_key}\x1f{what}".encode()).hexdigest()[:24]
