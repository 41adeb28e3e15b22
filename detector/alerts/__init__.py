"""Alerts on-call engineers trust: lifecycle, routing, grouping, silences, inhibition, sinks.

Start with :class:`AlertPipeline` (anomaly records in, notifications out:
``push``, ``advance``, ``flush``, ``deliver_pending``). Its parts, one idea
per module: ``lifecycle`` (pending → firing → resolved per alert, flap
control, in event time), ``routing`` and ``routing_file`` (Alertmanager's
route tree, receivers, timers and inhibit rules, loaded from
``rules/routing.yaml``), ``grouping`` (groups and their timers),
``silences`` (SQLite store), ``matchers`` (on alert labels), ``sinks`` and
``payload`` (Slack, webhook with Alertmanager's JSON, preview),
``terminal`` (Slack messages drawn in a terminal), ``cli`` (``spendwatch
silence``) and ``settings``.
"""

from detector.alerts.grouping import Batch, Grouper, Notice
from detector.alerts.lifecycle import (
    Alert,
    Lifecycle,
    Transition,
    alert_labels,
    fingerprint,
)
from detector.alerts.matchers import parse_label_matcher
from detector.alerts.payload import alertmanager_payload
from detector.alerts.pipeline import AlertPipeline, PipelineReport
from detector.alerts.routing import (
    InhibitRule,
    Receiver,
    Route,
    Routing,
    SlackTarget,
    WebhookTarget,
    default_routing,
)
from detector.alerts.routing_file import (
    RoutingLoadError,
    load_routing,
    load_routing_text,
)
from detector.alerts.settings import AlertSettings
from detector.alerts.silences import Silence, SilenceError, SilenceStore
from detector.alerts.sinks import PreviewSink, SlackSink, WebhookSink
from detector.alerts.terminal import message_panel, print_messages

__all__ = [
    "Alert",
    "AlertPipeline",
    "AlertSettings",
    "Batch",
    "Grouper",
    "InhibitRule",
    "Lifecycle",
    "Notice",
    "PipelineReport",
    "PreviewSink",
    "Receiver",
    "Route",
    "Routing",
    "RoutingLoadError",
    "Silence",
    "SilenceError",
    "SilenceStore",
    "SlackSink",
    "SlackTarget",
    "Transition",
    "WebhookSink",
    "WebhookTarget",
    "alert_labels",
    "alertmanager_payload",
    "default_routing",
    "fingerprint",
    "load_routing",
    "load_routing_text",
    "message_panel",
    "parse_label_matcher",
    "print_messages",
]
