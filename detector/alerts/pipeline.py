"""The one entry point from anomaly records to notifications: :class:`AlertPipeline`.

``replay``, ``demo`` and the stream worker all drive it the same way::

    pipeline.push(anomaly)      # each record the engine emits (firing or resolved)
    pipeline.advance(now)       # the event-time watermark moved: timers fire
    pipeline.flush()            # end of a replay: send what waits on group timers
    pipeline.deliver_pending()  # I/O: the outboxes send what is due

Everything before ``deliver_pending`` is pure and in event time:
lifecycle (:mod:`~detector.alerts.lifecycle`) → groups and their timers
(:mod:`~detector.alerts.grouping`), with silences and inhibition deciding at
each look whether an alert is held back → sinks
(:mod:`~detector.alerts.sinks`), which write into their durable outboxes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.alerts.grouping import Batch, Grouper
from detector.alerts.lifecycle import Alert, Lifecycle
from detector.alerts.routing import Routing, default_routing
from detector.alerts.routing_file import load_routing
from detector.alerts.settings import AlertSettings
from detector.alerts.silences import Silence, SilenceStore
from detector.alerts.sinks import PreviewSink, SlackSink, WebhookSink
from detector.anomaly import Anomaly
from detector.config import Settings
from detector.errors import ConfigError
from detector.notify.slack import SlackNotifier
from detector.notify.webhook import WebhookNotifier
from detector.rules.ruleset import RuleSet


@dataclass(frozen=True, slots=True)
class PipelineReport:
    """What :meth:`AlertPipeline.deliver_pending` did: one report per notifier (None: not in use)."""

    slack: Any = None
    webhook: Any = None


def rule_timing(rules: RuleSet | None) -> Callable[[Anomaly], tuple[float, float]]:
    """(for, keep_firing_for) in seconds of the rule that raised an anomaly; (0, 0) for an unknown rule."""
    def timing(anomaly: Anomaly) -> tuple[float, float]:
        if rules is None:
            return 0.0, 0.0
        found = [r for r in rules.for_series(anomaly.labels, anomaly.metric) if r.id == anomaly.rule]
        found = found or [r for r in rules.rules if r.id == anomaly.rule]
        return (found[0].for_s, found[0].keep_firing_for_s) if found else (0.0, 0.0)
    return timing


class AlertPipeline:
    """Anomaly records in, routed, grouped, silenced and inhibited notifications out.

    >>> from detector.alerts.lifecycle import event_time
    >>> from detector.notify.render import _example
    >>> from detector.alerts.routing import SlackTarget
    >>> pipeline = AlertPipeline(default_routing(), {"default": [PreviewSink(SlackTarget(), "#spend")]})
    >>> pipeline.push(_example()); pipeline.advance(event_time(_example().detected_at) + 30)
    >>> [(channel, kind) for channel, kind, _ in pipeline.previews()]
    [('#spend', 'firing')]
    """

    def __init__(
        self,
        routing: Routing,
        sinks: Mapping[str, list[Any]],
        *,
        lifecycle: Lifecycle | None = None,
        silences: SilenceStore | Path | None = None,
        notifiers: tuple[Any, ...] = (),
    ) -> None:
        missing = sorted(set(routing.receivers) - set(sinks))
        if missing:
            raise ConfigError(f"alert pipeline: no sinks for receiver(s) {', '.join(missing)}")
        self.routing, self.sinks = routing, dict(sinks)
        self.lifecycle = lifecycle or Lifecycle()
        self.grouper = Grouper(routing)
        # a path is opened once the file exists: `silence add` may create it while we run
        self.silences: SilenceStore | None = silences if isinstance(silences, SilenceStore) else None
        self._silences_path = silences if isinstance(silences, Path) else None
        self.notifiers = notifiers
        self.now = float("-inf")  # the watermark: the latest event time seen
        self._silences: list[Silence] = []

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        rules: RuleSet | None = None,
        routing_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> AlertPipeline:
        """The pipeline the settings describe; with no Slack set, Slack receivers only preview."""
        alert = settings if isinstance(settings, AlertSettings) else AlertSettings(**_explicit(settings))
        routing = _routing(alert, routing_path)
        slack = _slack(alert, clock)
        needs_webhook = any(r.webhooks for r in routing.receivers.values())
        hook = (WebhookNotifier(alert.webhook_outbox_path, secret=alert.webhook_secret, clock=clock)
                if needs_webhook else None)
        sinks: dict[str, list[Any]] = {}
        for name, receiver in routing.receivers.items():
            sinks[name] = [SlackSink(slack, t) if slack else PreviewSink(t, alert.slack_channel)
                           for t in receiver.slack]
            sinks[name] += [WebhookSink(hook, w, alert.external_url) for w in receiver.webhooks if hook]
        return cls(routing, sinks, lifecycle=Lifecycle(timing=rule_timing(rules), flap_window_s=alert.flap_window_s),
                   silences=alert.silences_path, notifiers=tuple(n for n in (slack, hook) if n))

    # -- event time -------------------------------------------------------------------
    def push(self, anomaly: Anomaly) -> None:
        """Take one anomaly record; nothing is sent until time moves (:meth:`advance`)."""
        self.lifecycle.push(anomaly)

    def advance(self, now: float) -> None:
        """The watermark reached ``now``: fire and resolve what is due, send what groups say."""
        self.now = max(self.now, now)
        self.grouper.add(self.lifecycle.advance(self.now))
        self._load_silences()
        self._send(self.grouper.look(self.now, self.muted))

    def flush(self, now: float | None = None) -> None:
        """The end of a replay: announce cleared alerts and send what waits on group timers, now.

        Alerts still pending (their ``for`` not elapsed) stay pending; alerts
        still firing stay firing. The stream worker never calls this.
        """
        if now is not None:
            self.now = max(self.now, now)
        if self.now == float("-inf"):
            return
        self.advance(self.now)
        self.grouper.add(self.lifecycle.settle(self.now))
        self._send(self.grouper.flush(self.now, self.muted))

    def muted(self, alert: Alert, at: float) -> bool:
        """Whether an alert is held back at ``at``: silenced, or inhibited by another that fires."""
        if any(s.mutes(alert.labels, at) for s in self._silences):
            return True
        return any(rule.inhibits(source.labels, alert.labels)
                   for rule in self.routing.inhibit_rules
                   for source in self.lifecycle.firing() if source.fingerprint != alert.fingerprint)

    def _load_silences(self) -> None:
        if self.silences is None and self._silences_path is not None and self._silences_path.exists():
            self.silences = SilenceStore(self._silences_path)
        self._silences = self.silences.all() if self.silences is not None else []

    def _send(self, batches: list[Batch]) -> None:
        for batch in batches:
            for sink in self.sinks[batch.receiver.name]:
                sink.send(batch)

    # -- I/O ----------------------------------------------------------------------------
    def deliver_pending(self) -> PipelineReport:
        """Let each outbox send what is due (real time: retries and backoff are about the network)."""
        reports = {type(n).__name__: n.deliver_pending() for n in self.notifiers}
        return PipelineReport(slack=reports.get("SlackNotifier"), webhook=reports.get("WebhookNotifier"))

    def previews(self) -> list[tuple[str, str, dict[str, Any]]]:
        """The Slack messages preview sinks rendered instead of sending: (channel, kind, message)."""
        return [m for sinks in self.sinks.values() for s in sinks if isinstance(s, PreviewSink) for m in s.messages]

    def close(self) -> None:
        for notifier in self.notifiers:
            notifier.close()
        if self.silences is not None:
            self.silences.close()


def _explicit(settings: Settings) -> dict[str, Any]:
    return {k: getattr(settings, k) for k in settings.model_fields_set}


def _routing(settings: AlertSettings, path: Path | None) -> Routing:
    explicit = path or settings.routing_file
    if explicit is not None:
        return load_routing(explicit)
    if settings.rules_dir is None:
        return default_routing()  # ./rules/routing.yaml of a checkout is documentation, not a deployment
    beside_rules = settings.rules_dir / "routing.yaml"
    return load_routing(beside_rules) if beside_rules.is_file() else default_routing()


def _slack(settings: AlertSettings, clock: Callable[[], float]) -> SlackNotifier | None:
    if not (settings.slack_token or settings.slack_token_file or settings.slack_webhook_url):
        return None
    return SlackNotifier.from_settings(
        token=settings.slack_token, webhook_url=settings.slack_webhook_url, channel=settings.slack_channel,
        api_url=settings.slack_api_url, token_file=settings.slack_token_file, outbox_path=settings.slack_outbox,
        clock=clock, max_age_s=settings.slack_max_age_s,
    )
