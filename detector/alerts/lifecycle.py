"""The life of one alert: pending → firing → resolved, in event time.

An alert's identity is its rule and labels (:func:`fingerprint`), not the
anomaly id: the engine gives every onset a new id, and a series that flaps
(fires, resolves, fires again) must stay one alert for the person on call.
The *episode* is the id of the anomaly that opened the alert; sinks key their
messages (and so the Slack thread) on it.

One timeline, every step in event time (the caller's watermark, never the
wall clock)::

    firing record ──► pending ──(for elapsed)──► firing
                         │                         │ resolved record
                         └─ resolved record:       ▼
                            dropped, never      held firing for keep_firing_for
                            notified               │ then quiet for the flap window
                                                   ▼
                                                resolved (announced)

A firing record for the same rule and labels while the alert is held or
quiet continues the same alert (same episode, nothing new is sent); after it
is announced resolved, the next one opens a new episode. So a resolved notice
only goes out once the series has stayed normal for ``keep_firing_for`` plus
the flap window, and a flapping series never pages twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from detector.anomaly import Anomaly

PENDING, FIRING, RESOLVED = "pending", "firing", "resolved"
Timing = Callable[[Anomaly], tuple[float, float]]  # anomaly → (for_s, keep_firing_for_s)
Labeller = Callable[[Anomaly], dict[str, str]]


def fingerprint(rule: str, labels: Mapping[str, str]) -> str:
    """The identity of an alert: its rule and series labels, not its onset.

    >>> fingerprint("r", {"team": "a"}) == fingerprint("r", {"team": "a"}) != fingerprint("r", {"team": "b"})
    True
    """
    key = "\x1f".join([rule, *(f"{k}={labels[k]}" for k in sorted(labels))])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def event_time(text: str) -> float:
    """Epoch seconds of an RFC 3339 time in a record.

    >>> event_time("2026-11-16T14:05:00Z")
    1794837900.0
    """
    return datetime.fromisoformat(text).timestamp()


def alert_labels(anomaly: Anomaly) -> dict[str, str]:
    """The labels routes, silences and inhibition rules match: the series' and the record's own.

    >>> from detector.notify.render import _example
    >>> sorted(alert_labels(_example()).items())[:3]
    [('alertname', 'search.prompt-length'), ('feature', 'summarize'), ('metric', 'input_tokens_per_request')]
    """
    return {**anomaly.labels, "rule": anomaly.rule, "alertname": anomaly.rule,
            "severity": anomaly.severity, "metric": anomaly.metric}


@dataclass(slots=True)
class Alert:
    """One alert and where it is in its life; ``record`` is the latest firing record."""

    fingerprint: str
    episode: str
    labels: dict[str, str]
    record: dict[str, Any]
    state: str
    since: float  # pending: when it began; firing: when it fired; resolved: when announced
    for_s: float
    keep_firing_for_s: float
    ids: set[str] = field(default_factory=set)
    ended_at: float | None = None  # event time the last resolved record gave
    quiet_until: float | None = None  # held or quiet until then; a firing record clears it
    resolved_record: dict[str, Any] | None = None

    @property
    def starts_at(self) -> float:
        return event_time(self.record["started_at"])

    @property
    def is_firing(self) -> bool:
        """Firing, held firing, or quiet before its resolution is announced (not yet over)."""
        return self.state == FIRING

    @property
    def condition_clear(self) -> bool:
        """The series is back to normal; the alert only waits to announce it."""
        return self.quiet_until is not None


@dataclass(frozen=True, slots=True)
class Transition:
    """An alert changed state at ``at`` (event time): it fired or was resolved."""

    kind: str  # FIRING or RESOLVED
    alert: Alert
    at: float


class Lifecycle:
    """Every alert's state, driven by anomaly records and the caller's clock.

    >>> from detector.notify.render import _example
    >>> life = Lifecycle(timing=lambda a: (300.0, 0.0), flap_window_s=600)
    >>> a = _example()
    >>> life.push(a)
    >>> life.advance(event_time(a.detected_at) + 299), [t.kind for t in life.advance(event_time(a.detected_at) + 300)]
    ([], ['firing'])
    >>> life.push(a.resolve("2025-11-16T15:00:00Z", "back to normal"))
    >>> [t.kind for t in life.advance(event_time("2025-11-16T15:10:00Z"))]
    ['resolved']
    """

    def __init__(self, *, timing: Timing | None = None, labeller: Labeller = alert_labels,
                 flap_window_s: float = 600.0) -> None:
        if flap_window_s < 0:
            raise ValueError(f"lifecycle: flap window must be ≥ 0 seconds, found {flap_window_s}")
        self.timing: Timing = timing or (lambda a: (0.0, 0.0))
        self.labeller = labeller
        self.flap_window_s = flap_window_s
        self.alerts: dict[str, Alert] = {}  # fingerprint → alert
        self._due: list[Transition] = []

    def push(self, anomaly: Anomaly) -> None:
        """Take one anomaly record (firing or resolved); transitions come out of :meth:`advance`."""
        fp = fingerprint(anomaly.rule, anomaly.labels)
        alert = self.alerts.get(fp)
        if anomaly.status == FIRING:
            self._firing(fp, alert, anomaly)
        elif anomaly.status == RESOLVED:
            self._resolved(fp, alert, anomaly)
        else:
            raise ValueError(f"anomaly {anomaly.id}: status must be firing or resolved, found {anomaly.status!r}")

    def _firing(self, fp: str, alert: Alert | None, anomaly: Anomaly) -> None:
        record = anomaly.to_dict()
        if alert is None:
            for_s, keep_s = self.timing(anomaly)
            self.alerts[fp] = Alert(fp, anomaly.id, self.labeller(anomaly), record, PENDING,
                                    event_time(anomaly.detected_at), for_s, keep_s, {anomaly.id})
            return
        if anomaly.id in alert.ids and alert.condition_clear:
            return  # a redelivered firing record of an anomaly that already resolved
        alert.ids.add(anomaly.id)
        alert.quiet_until = None  # flapping: the same alert continues
        alert.resolved_record = None
        alert.record = {**record, **_episode_fields(alert)}  # latest values, the episode's identity

    def _resolved(self, fp: str, alert: Alert | None, anomaly: Anomaly) -> None:
        if alert is None or anomaly.id not in alert.ids:
            return
        ended = event_time(anomaly.resolved_at or anomaly.detected_at)
        if alert.state == PENDING:
            if ended < alert.since + alert.for_s:
                del self.alerts[fp]  # resolved before `for` elapsed: never notified
                return
            self._fire(alert)  # it held for `for` before it resolved, between two calls of advance
        alert.ended_at = ended
        alert.quiet_until = ended + alert.keep_firing_for_s + self.flap_window_s
        alert.resolved_record = {**anomaly.to_dict(), **_episode_fields(alert)}

    def _fire(self, alert: Alert) -> None:
        alert.state, alert.since = FIRING, alert.since + alert.for_s
        self._due.append(Transition(FIRING, alert, alert.since))

    def advance(self, now: float) -> list[Transition]:
        """Move every alert to ``now``; returns what fired or was resolved, oldest first."""
        for alert in list(self.alerts.values()):
            if alert.state == PENDING and now >= alert.since + alert.for_s:
                self._fire(alert)
            if alert.state == FIRING and alert.quiet_until is not None and now >= alert.quiet_until:
                alert.state, alert.since = RESOLVED, alert.quiet_until
                self._due.append(Transition(RESOLVED, alert, alert.since))
                del self.alerts[alert.fingerprint]  # announced: a later firing record opens a new episode
        out, self._due = sorted(self._due, key=lambda t: t.at), []
        return out

    def settle(self, now: float) -> list[Transition]:
        """The stream has ended: announce every cleared alert now instead of waiting out its quiet time."""
        for alert in self.alerts.values():
            if alert.state == FIRING and alert.quiet_until is not None:
                alert.quiet_until = min(alert.quiet_until, max(now, alert.ended_at or now))
        return self.advance(now)

    def firing(self) -> list[Alert]:
        """Alerts that fire now (held and quiet ones included: they are not over)."""
        return [a for a in self.alerts.values() if a.is_firing]


def _episode_fields(alert: Alert) -> dict[str, Any]:
    """What a later record of a flapping alert keeps from the first: its id and onset."""
    return {"id": alert.episode, "started_at": alert.record["started_at"],
            "detected_at": alert.record["detected_at"]}


def snapshot(alert: Alert) -> Alert:
    """A copy a sink may keep: later transitions do not change it."""
    return replace(alert, labels=dict(alert.labels), record=dict(alert.record), ids=set(alert.ids))
