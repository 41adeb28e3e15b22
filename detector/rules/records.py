"""Anomaly records (Contract 3) for threshold and budget rules, worded by the rule's own annotations.

A rule alert carries the series' labels, the labels its scope pins and the
rule's own labels (``owner`` and the like, which routing matches on); the
severity comes from the rule, or from the excess dollars per hour when the
rule leaves it at ``auto``. The summary is the rule's ``summary``
annotation rendered with plain substitution, or a plain sentence when the
rule has none.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from detector.anomaly import Anomaly, anomaly_id, money, rfc3339, severity_for, where
from detector.rules.durations import format_duration
from detector.rules.ruleset import Rule
from detector.rules.templates import format_value


@dataclass(frozen=True, slots=True)
class Loudness:
    """Excess $/hour at which an ``auto`` severity becomes critical or warning."""

    critical_usd_per_hour: float = 5.0
    warning_usd_per_hour: float = 0.5


def month_bounds(ts: float) -> tuple[str, float, float]:
    """The calendar month (UTC) holding ``ts``: its name, first instant and end.

    >>> month_bounds(1_790_000_000.0)[0]
    '2026-09'
    """
    now = datetime.fromtimestamp(ts, UTC)
    start = datetime(now.year, now.month, 1, tzinfo=UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    return start.strftime("%Y-%m"), start.timestamp(), start.timestamp() + days * 86400.0


def alert_labels(rule: Rule, series: Mapping[str, str]) -> dict[str, str]:
    """Labels of an alert: what the scope pins, the series' ``by`` labels, then the rule's labels.

    >>> from detector.rules.loader import load_data
    >>> rs = load_data({"groups": [{"name": "g", "labels": {"team": "s", "owner": "o", "severity": "info"},
    ...     "rules": [{"id": "x", "alert": "X", "expr": {"metric": "spend_rate", "by": ["feature"],
    ...     "budget": {"monthly_usd": 5}}}]}]})
    >>> alert_labels(rs.rules[0], {"feature": "f"})
    {'team': 's', 'feature': 'f', 'owner': 'o'}
    """
    labels = {m.name: m.value for m in rule.scope if m.is_equality}
    labels.update(series)
    labels.update((k, v) for k, v in rule.labels.items() if k != "severity")
    return labels


def build_record(
    rule: Rule,
    labels: dict[str, str],
    *,
    started: float,
    detected: float,
    values: Mapping[str, float | None],
    loudness: Loudness,
    default_summary: str,
) -> Anomaly:
    """A ``firing`` record; ``values`` holds ``value``, ``baseline`` and the rule kind's own numbers."""
    observed = values.get("value") or 0.0
    baseline = values.get("baseline") or 0.0
    excess = values.get("excess_usd_per_hour") or 0.0
    projected = values.get("projected_month_usd")
    severity = rule.severity
    if severity == "auto":
        severity = severity_for(excess, loudness.critical_usd_per_hour, loudness.warning_usd_per_hour)
    started_at = rfc3339(started)
    rendered = rule.annotate(labels, values)
    return Anomaly(
        id=anomaly_id(rule.id, labels, started_at),
        rule=rule.id,
        metric=rule.expr.metric,
        labels=labels,
        severity=severity,
        status="firing",
        started_at=started_at,
        detected_at=rfc3339(detected),
        resolved_at=None,
        observed=round(observed, 6),
        baseline=round(baseline, 6),
        ratio=round(observed / baseline, 3) if baseline else 0.0,
        excess_cost_usd_per_hour=round(max(0.0, excess), 4),
        projected_month_usd=None if projected is None else round(projected, 2),
        summary=rendered.get("summary") or default_summary,
        runbook=rendered.get("runbook"),
    )


def resolved(alert: Anomaly, rule: Rule, at: float, why: str) -> Anomaly:
    """The matching ``resolved`` record, saying why it ended."""
    return alert.resolve(rfc3339(at), f"{rule.alert} for {where(alert.labels)} resolved: {why}")


def threshold_summary(rule: Rule, labels: Mapping[str, str], value: float, bound: float, above: bool) -> str:
    """The sentence of a threshold alert whose rule has no ``summary`` annotation.

    >>> from detector.rules.loader import load_data
    >>> rs = load_data({"groups": [{"name": "g", "rules": [{"id": "x", "alert": "ErrorsHigh",
    ...     "expr": {"metric": "error_rate", "threshold": {"statistic": "share", "window": "10m", "above": 0.1}}}]}]})
    >>> threshold_summary(rs.rules[0], {"team": "a"}, 0.25, 0.1, True)
    'ErrorsHigh: share of error_rate over 10m for a is 0.25, above 0.1'
    """
    assert rule.expr.threshold is not None
    t = rule.expr.threshold
    side = "above" if above else "below"
    return (f"{rule.alert}: {t.statistic} of {rule.expr.metric} over {format_duration(t.window)} "
            f"for {where(dict(labels))} is {format_value('value', value)}, {side} {format_value('value', bound)}")


def budget_summary(rule: Rule, labels: Mapping[str, str], stage: str, spent: float, projected: float,
                   budget: float) -> str:
    """The sentence of a budget alert whose rule has no ``summary`` annotation."""
    scope = where(dict(labels))
    if stage == "spent":
        return f"{rule.alert}: {scope} has spent {money(spent)} this month, its whole budget of {money(budget)}"
    return (f"{rule.alert}: {scope} is on course for {money(projected)} this month, over its budget of "
            f"{money(budget)} ({money(spent)} spent so far)")
