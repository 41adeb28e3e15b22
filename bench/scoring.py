"""Scoring a detector's alerts against injected incidents: matching, delays, false alarms, duplicates.

The matching rule, the one every figure of the detection benchmark rests on:

* an alert **agrees** with an incident when its labels and the incident's
  target share at least one key and are equal on every key they share
  (``{team: search}`` agrees with ``{team: search, feature: summarize}``;
  ``{team: search, model: gpt-4o}`` does not agree with a target on
  ``model: gpt-4o-mini``);
* it **matches** when it also fires (``detected_at``) inside
  ``[onset, end + grace]``;
* an alert that matches several incidents goes to the one it agrees with on
  the most keys, then the one whose metric it names, then the latest onset;
* every firing record that matches no incident is a false alarm.

Only firing records count; a record is one record whatever it names in its
``related`` field, and records sharing an ``id`` are one alert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from detector.anomaly import Anomaly

GRACE_S = 30 * 60.0


@dataclass(frozen=True, slots=True)
class Alert:
    """A firing record as the scorer sees it, whichever detector made it.

    >>> Alert("a1", "request_rate", {"team": "search"}, "critical", 1_800_000_000.0).minute
    30000000
    """

    id: str
    metric: str
    labels: Mapping[str, str]
    severity: str
    detected_s: float
    related: tuple[str, ...] = ()

    @property
    def minute(self) -> int:
        return int(self.detected_s // 60)

    @classmethod
    def of(cls, record: Anomaly) -> Alert:
        """The scorer's view of an engine record (call it on firing records only)."""
        detected = _epoch(record.detected_at)
        return cls(record.id, record.metric, dict(record.labels), record.severity, detected,
                   tuple(record.related or ()))


@dataclass(frozen=True, slots=True)
class Window:
    """One injected incident: what, where, and when, in epoch seconds.

    >>> w = Window("w1", "prompt_doubling", "input_tokens_per_request", 2.0, {"feature": "chat"}, 0.0, 3600.0)
    >>> w.agreement({"team": "support", "feature": "chat"}), w.agreement({"feature": "answer"})
    (1, -1)
    """

    key: str
    kind: str
    metric: str
    magnitude: float
    target: Mapping[str, str]
    start_s: float
    end_s: float

    def agreement(self, labels: Mapping[str, str]) -> int:
        """Keys shared and equal; -1 when none are shared or one differs."""
        shared = labels.keys() & self.target.keys()
        if not shared or any(labels[k] != self.target[k] for k in shared):
            return -1
        return len(shared)

    def holds(self, t: float, grace_s: float) -> bool:
        return self.start_s <= t <= self.end_s + grace_s


@dataclass
class Matching:
    """Firing records per incident (in detection order, one per id), and the rest."""

    by_window: dict[str, list[Alert]] = field(default_factory=dict)
    unmatched: list[Alert] = field(default_factory=list)


def match(alerts: Iterable[Alert], windows: Sequence[Window], grace_s: float = GRACE_S) -> Matching:
    """Assign each firing record to the incident it belongs to, or to no incident.

    >>> w = Window("w", "retry_storm", "retry_rate", 0.4, {"team": "search", "feature": "rewrite"}, 0.0, 600.0)
    >>> hit = Alert("a", "retry_rate", {"team": "search", "feature": "rewrite"}, "critical", 120.0)
    >>> late = Alert("b", "retry_rate", {"team": "search", "feature": "rewrite"}, "critical", 600.0 + 3600)
    >>> m = match([hit, late], [w])
    >>> [a.id for a in m.by_window["w"]], [a.id for a in m.unmatched]
    (['a'], ['b'])
    """
    result = Matching({w.key: [] for w in windows})
    seen: set[str] = set()
    for alert in sorted(alerts, key=lambda a: a.detected_s):
        if alert.id in seen:
            continue
        seen.add(alert.id)
        best = _best(alert, windows, grace_s)
        if best is None:
            result.unmatched.append(alert)
        else:
            result.by_window[best.key].append(alert)
    return result


def _best(alert: Alert, windows: Sequence[Window], grace_s: float) -> Window | None:
    ranked = []
    for w in windows:
        agreement = w.agreement(alert.labels)
        if agreement >= 0 and w.holds(alert.detected_s, grace_s):
            ranked.append(((agreement, alert.metric == w.metric, w.start_s), w))
    return max(ranked, key=lambda pair: pair[0])[1] if ranked else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one detector did on one incident.

    ``requests`` counts the target's requests from onset to detection (None
    for incidents that are not about requests); ``leaked_usd`` is the extra
    spend before detection, or over the whole window when it was missed.
    """

    key: str
    detected: bool
    delay_min: float | None
    requests: int | None
    leaked_usd: float
    duplicates: int


def outcome(window: Window, firings: Sequence[Alert], request_ts: np.ndarray | None,
            excess_per_minute: np.ndarray, first_minute: int) -> Outcome:
    """Score one incident from its matched firings, its requests and its extra spend by minute.

    ``excess_per_minute[i]`` is the spend above the clean counterfactual in
    minute ``first_minute + i`` (epoch minutes); the minute holding the
    detection counts in proportion.

    >>> w = Window("w", "prompt_doubling", "input_tokens_per_request", 2.0, {"team": "a"}, 600.0, 4200.0)
    >>> fired = [Alert("x", "input_tokens_per_request", {"team": "a"}, "critical", 750.0)]
    >>> o = outcome(w, fired, np.array([590.0, 610.0, 700.0, 749.0, 800.0]), np.full(60, 2.0), 10)
    >>> o.detected, o.delay_min, o.requests, o.leaked_usd, o.duplicates
    (True, 2.5, 3, 5.0, 0)
    """
    if not firings:
        return Outcome(window.key, False, None, None, float(excess_per_minute.sum()), 0)
    detected = firings[0].detected_s
    requests = None
    if request_ts is not None:
        requests = int(np.searchsorted(request_ts, detected, "left") - np.searchsorted(request_ts, window.start_s))
    return Outcome(window.key, True, (detected - window.start_s) / 60.0, requests,
                   leaked_before(excess_per_minute, first_minute, detected), len(firings) - 1)


def leaked_before(excess_per_minute: np.ndarray, first_minute: int, t: float) -> float:
    """Extra spend from the first minute up to time ``t``, the minute holding ``t`` pro rata.

    >>> leaked_before(np.array([1.0, 1.0, 4.0]), 0, 150.0)
    4.0
    """
    whole = int(t // 60) - first_minute
    if whole <= 0:
        return 0.0
    total = float(excess_per_minute[:whole].sum())
    if whole < len(excess_per_minute):
        total += float(excess_per_minute[whole]) * (t / 60.0 - int(t // 60))
    return total


@dataclass(frozen=True, slots=True)
class RowStats:
    """Figures of one table row: a set of incidents scored for one detector."""

    incidents: int
    detected: int
    delay_median_min: float | None
    delay_p90_min: float | None
    requests_median: float | None
    requests_p90: float | None
    leaked_median_usd: float | None
    leaked_total_usd: float
    duplicates: int

    @property
    def recall(self) -> float:
        return self.detected / self.incidents if self.incidents else 0.0


def summarize(outcomes: Sequence[Outcome]) -> RowStats:
    """Recall, median and p90 delays, dollars leaked and duplicate firings over ``outcomes``.

    >>> a = Outcome("a", True, 2.0, 100, 1.5, 0)
    >>> b = Outcome("b", True, 4.0, 300, 2.5, 1)
    >>> c = Outcome("c", False, None, None, 9.0, 0)
    >>> s = summarize([a, b, c])
    >>> round(s.recall, 3), s.delay_median_min, s.requests_median, s.leaked_total_usd, s.duplicates
    (0.667, 3.0, 200.0, 13.0, 1)
    """
    hits = [o for o in outcomes if o.detected]
    delays = [o.delay_min for o in hits if o.delay_min is not None]
    requests = [o.requests for o in hits if o.requests is not None]
    leaked = [o.leaked_usd for o in hits]
    return RowStats(
        incidents=len(outcomes),
        detected=len(hits),
        delay_median_min=_quantile(delays, 0.5),
        delay_p90_min=_quantile(delays, 0.9),
        requests_median=_quantile(requests, 0.5),
        requests_p90=_quantile(requests, 0.9),
        leaked_median_usd=_quantile(leaked, 0.5),
        leaked_total_usd=float(sum(o.leaked_usd for o in outcomes)),
        duplicates=sum(o.duplicates for o in outcomes),
    )


def per_thousand_series_days(alerts: Sequence[Alert], series_days: float, severity: str | None = None) -> float:
    """False alarms per 1,000 series-days, of one severity or of all.

    >>> fa = [Alert("a", "m", {}, "critical", 0.0), Alert("b", "m", {}, "info", 0.0)]
    >>> per_thousand_series_days(fa, 500.0), per_thousand_series_days(fa, 500.0, "critical")
    (4.0, 2.0)
    """
    if series_days <= 0:
        raise ValueError(f"series_days must be positive, got {series_days}")
    count = sum(1 for a in alerts if severity is None or a.severity == severity)
    return 1000.0 * count / series_days


def _quantile(values: Sequence[float], q: float) -> float | None:
    return float(np.quantile(np.asarray(values, dtype=float), q)) if values else None


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
