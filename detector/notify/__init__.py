"""Alert delivery: anomaly records rendered for Slack and delivered without loss.

:func:`render_alert` and :func:`render_resolved` turn a record into Block Kit
(pure); :mod:`~detector.notify.escape` keeps user strings from becoming
mentions or links; :class:`Outbox` is the durable queue (SQLite) that lets
delivery survive a Slack outage or a restart; :class:`SlackNotifier` sends
what the outbox holds through :class:`SlackTransport`, which wraps an
injected slack-sdk client or incoming webhook. :class:`WebhookNotifier` is
the generic webhook sink (JSON, signed, through an outbox of its own).
"""

from detector.notify.escape import escape_mrkdwn, escape_plain
from detector.notify.outbox import Outbox, OutboxRow
from detector.notify.render import (
    Driver,
    Resolved,
    render_alert,
    render_reminder,
    render_resolved,
    render_summary,
    silence_command,
)
from detector.notify.slack import DeliveryReport, SlackNotifier
from detector.notify.transport import (
    DeliveryError,
    SlackTransport,
    read_secret_file,
    retry_handlers,
)
from detector.notify.webhook import WebhookNotifier, WebhookReport, sign

__all__ = [
    "DeliveryError",
    "DeliveryReport",
    "Driver",
    "Outbox",
    "OutboxRow",
    "Resolved",
    "SlackNotifier",
    "SlackTransport",
    "WebhookNotifier",
    "WebhookReport",
    "escape_mrkdwn",
    "escape_plain",
    "read_secret_file",
    "render_alert",
    "render_reminder",
    "render_resolved",
    "render_summary",
    "retry_handlers",
    "sign",
    "silence_command",
]
