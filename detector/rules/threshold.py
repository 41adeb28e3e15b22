"""One threshold rule over one series: the statistic, ``for``, ``keep_firing_for``, fire and resolve.

The state machine is Prometheus' (inactive → pending → firing), judged once
per minute of event time on the buckets that minute closed: a breach starts
a pending period (the onset), the alert fires once the breach has held for
``for``, and resolves once it has been absent for ``keep_firing_for`` (at the
first evaluation without a breach when that is 0). The excess dollars per
hour are priced from the series' own spend over the last hour.
"""

from __future__ import annotations

from detector.anomaly import Anomaly
from detector.rules.catalog import metric_kind
from detector.rules.observe import Point
from detector.rules.records import (
    Loudness,
    alert_labels,
    build_record,
    resolved,
    threshold_summary,
)
from detector.rules.ruleset import Rule
from detector.rules.spend import SpendTrack
from detector.rules.window_stats import QUANTILES, WindowStats

PER_UNIT_TIME = {"request_rate": 60.0}
"""Seconds per unit of a ``rate``: requests per minute; dollars and usage values per hour otherwise."""


class ThresholdState:
    """The window, the spend and the alert of one (threshold rule, series).

    >>> from detector.rules.loader import load_data
    >>> rs = load_data({"groups": [{"name": "g", "rules": [{"id": "err", "alert": "Errors",
    ...     "expr": {"metric": "error_rate", "by": ["team"],
    ...              "threshold": {"statistic": "share", "window": "5m", "above": 0.2}}}]}]})
    >>> state = ThresholdState(rs.rules[0], {"team": "a"}, 0.0)
    >>> seen = []
    >>> for minute in range(10):  # ten requests a minute; from minute 5 on, every other one fails
    ...     for i in range(10):
    ...         state.add(minute * 60.0 + i * 6, Point(1.0, hit=float(minute >= 5 and i % 2 == 0)), 0.01)
    ...     record = state.evaluate((minute + 1) * 60.0, Loudness())
    ...     seen.append((minute + 1, round(state.statistic((minute + 1) * 60.0), 2), record and record.status))
    >>> seen[5:8]
    [(6, 0.1, None), (7, 0.2, None), (8, 0.3, 'firing')]
    """

    __slots__ = ("rule", "labels", "stats", "spend", "first_ts", "pending_since", "last_breach", "alert",
                 "judged", "hourly", "denominator")

    def __init__(self, rule: Rule, labels: dict[str, str], first_ts: float) -> None:
        threshold = rule.expr.threshold
        assert threshold is not None
        self.rule = rule
        self.labels = labels
        self.stats = WindowStats(threshold.window, quantiles=threshold.statistic in QUANTILES)
        self.spend = SpendTrack()
        self.first_ts = first_ts
        self.pending_since: float | None = None
        self.last_breach = 0.0
        self.alert: Anomaly | None = None
        self.judged = -1  # the last minute judged, kept by the evaluator
        self.hourly: float | None = None  # $ per hour of a GPU, from its latest sample
        self.denominator: WindowStats | None = None  # tier_mix: requests of every tier of the group

    def add(self, ts: float, p: Point, dollars: float | None, hourly: float | None = None) -> None:
        """Count one observation and the dollars it cost (None: unpriced); ``hourly`` prices a GPU."""
        self.stats.add(ts, p.value, weight=p.weight, hit=p.hit)
        if dollars is not None:
            self.spend.add(ts, dollars)
        if hourly is not None:
            self.hourly = hourly

    def statistic(self, now: float) -> float | None:
        """The rule's statistic over its window ending at ``now``; None when too little was seen."""
        threshold = self.rule.expr.threshold
        assert threshold is not None
        name, stats = threshold.statistic, self.stats
        if name in ("sum", "rate"):
            total = stats.total(now)
            if name == "sum":
                return total
            covered = min(threshold.window, max(stats.width, now - self.first_ts))
            return total / covered * PER_UNIT_TIME.get(self.rule.expr.metric, 3600.0)
        if self.denominator is not None:
            among = self.denominator.count(now)
            return stats.count(now) / among if among >= threshold.min_requests else None
        if stats.count(now) < threshold.min_requests:
            return None
        if name == "share":
            return stats.share(now)
        if name == "mean":
            return stats.mean(now)
        return stats.quantile(now, QUANTILES[name])

    def evaluate(self, now: float, loudness: Loudness) -> Anomaly | None:
        """Judge the window that closed at ``now``; a record when the alert fires or resolves."""
        rule = self.rule
        threshold = rule.expr.threshold
        assert threshold is not None
        value = self.statistic(now)
        above = threshold.above is not None and value is not None and value > threshold.above
        below = threshold.below is not None and value is not None and value < threshold.below
        if above or below:
            assert value is not None
            self.last_breach = now
            if self.pending_since is None:
                self.pending_since = now
            if self.alert is None and now - self.pending_since >= rule.for_s:
                bound = threshold.above if above else threshold.below
                assert bound is not None
                self.alert = self._fire(now, value, bound, above, loudness)
                return self.alert
            return None
        if self.alert is None:
            self.pending_since = None
            return None
        if now - self.last_breach >= rule.keep_firing_for_s:
            why = "the statistic is unknown (too few requests)" if value is None else (
                f"{threshold.statistic} back to {value:.4g}")
            record = resolved(self.alert, rule, now, why)
            self.alert, self.pending_since = None, None
            return record
        return None

    def _fire(self, now: float, value: float, bound: float, above: bool, loudness: Loudness) -> Anomaly:
        rule = self.rule
        labels = alert_labels(rule, self.labels)
        values = {
            "value": value,
            "baseline": bound,
            "threshold": bound,
            "excess_usd_per_hour": self._excess(now, value, bound) if above else self._idle(value),
            "projected_month_usd": self.spend.projected_month(now) if self.spend.seen else None,
        }
        assert self.pending_since is not None
        return build_record(rule, labels, started=self.pending_since, detected=now, values=values,
                            loudness=loudness, default_summary=threshold_summary(
                                rule, labels, value, bound, above))

    def _idle(self, value: float) -> float:
        """Dollars per hour of a GPU below its utilisation bound that buy nothing."""
        if self.rule.expr.metric != "gpu_utilization" or self.hourly is None:
            return 0.0
        return self.hourly * (1 - min(1.0, value))

    def _excess(self, now: float, value: float, bound: float) -> float:
        """Dollars per hour above what the series would spend at the threshold."""
        metric, per_hour = self.rule.expr.metric, self.spend.per_hour(now)
        threshold = self.rule.expr.threshold
        assert threshold is not None
        if metric == "spend_rate" and threshold.statistic == "rate":
            return value - bound
        kind = metric_kind(metric)
        if kind == "gpu":
            return 0.0  # a GPU above a utilisation bound is busy, not wasted
        if kind == "share":
            return per_hour * (value - bound)  # spend on the failed or retried requests beyond the bound
        if value <= 0:
            return 0.0
        return per_hour * (1 - bound / value)

