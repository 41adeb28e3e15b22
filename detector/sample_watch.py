"""GPUs and usage lines: series that arrive as samples, not as requests.

A GPU (cluster, node, gpu) is watched for sustained idleness and saturation,
priced as the idle share of its hourly cost; a usage line (the ``metric`` of
a ``usage_sample`` with its team and feature) for spikes, level shifts and
drift in its own unit. Each such series has its own incident: there is no
feature above it whose other metrics could explain it.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from detector.anomaly import (
    Anomaly,
    anomaly_id,
    describe_ratio,
    duration_words,
    money,
    rfc3339,
    severity_for,
)
from detector.config import Settings
from detector.models.gpu_utilization import GpuShift, GpuUtilization
from detector.models.level_shift import SHIFTED
from detector.models.usage_metric import UsageMetric, UsageShift
from detector.rules.ruleset import RuleSet

GPU_RULE = "builtin.gpu_utilization"
USAGE_RULE = "builtin.usage_sample"
USAGE_LABELS = ("team", "feature", "product", "cost_center")
NODE_HOLD_S = 90.0  # seconds a GPU's alarm waits for the rest of its node


class SampleSeries:
    """One GPU or usage line: its model, its labels and its open alert."""

    __slots__ = ("alert", "labels", "merged", "metric", "model", "pending", "quiet", "unit")

    def __init__(self, labels: dict[str, str], metric: str, unit: str, model: GpuUtilization | UsageMetric,
                 quiet: bool = False) -> None:
        self.labels = labels
        self.metric = metric
        self.unit = unit
        self.model = model
        self.quiet = quiet  # its rule is switched off for these labels: it learns and prices, and never pages
        self.alert: Anomaly | None = None
        self.merged = False  # its shift is part of another GPU's record (same node)
        self.pending = 0.0  # event time its shift was first seen, while siblings get a chance to report

    def to_state(self) -> dict[str, Any]:
        return {"labels": self.labels, "metric": self.metric, "unit": self.unit, "model": self.model.to_state(),
                "alert": None if self.alert is None else self.alert.to_dict(), "merged": self.merged,
                "pending": self.pending, "quiet": self.quiet}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> SampleSeries:
        kind = GpuUtilization if state["metric"] == "gpu_utilization" else UsageMetric
        s = cls(dict(state["labels"]), state["metric"], state["unit"], kind.from_state(dict(state["model"])))
        s.alert = None if state["alert"] is None else Anomaly(**state["alert"])
        s.merged, s.pending = bool(state["merged"]), float(state["pending"])
        s.quiet = bool(state.get("quiet", False))
        return s


def gpu_series(labels: dict[str, str], hourly: float | None, rules: RuleSet | None = None) -> SampleSeries:
    """A GPU's series, its idle test set by the ``idle`` rule that selects it (``below``, ``for``).

    Without rules the model's own defaults hold; with rules but none enabled
    for this GPU, it is watched quietly (its idle dollars still count).

    >>> from detector.detection_run import rules_in_force
    >>> from detector.rules.ruleset import RuleSet
    >>> gpu = {"cluster": "c", "node": "n", "gpu": "0"}
    >>> gpu_series(gpu, 2.0, rules_in_force(Settings())).quiet, gpu_series(gpu, 2.0, RuleSet()).quiet
    (False, True)
    """
    hourly = hourly or 0.0
    if rules is None:
        return SampleSeries(labels, "gpu_utilization", "share", GpuUtilization(hourly_cost_usd=hourly))
    for rule in rules.for_series(labels, "gpu_utilization"):
        spec = rule.expr.anomaly
        if rule.enabled and spec is not None and getattr(spec, "model", None) == "idle":
            model = GpuUtilization(hourly_cost_usd=hourly, floor=spec.below, sustain_minutes=max(1, round(spec.for_ / 60)))
            return SampleSeries(labels, "gpu_utilization", "share", model)
    return SampleSeries(labels, "gpu_utilization", "share", GpuUtilization(hourly_cost_usd=hourly), quiet=True)


def usage_series(labels: dict[str, str], metric: str, unit: str) -> SampleSeries:
    return SampleSeries(labels, metric, unit, UsageMetric())


def judge_node(gpus: list[SampleSeries], s: SampleSeries, ts: float, settings: Settings) -> Anomaly | None:
    """One record for a node whose GPUs went idle together: the first to fire speaks for all.

    A GPU's shift waits ``NODE_HOLD_S`` so that its siblings, sampled in the
    same minute, report theirs; those in the same state then are named in
    ``related``, their dollars added, and they do not page on their own.
    """
    shifted = s.model.phase == SHIFTED and not s.quiet
    if s.merged:
        s.merged = shifted
        return None
    if not shifted or s.alert is not None:
        s.pending = 0.0
        return judge(s, ts, settings)
    if not s.pending:
        s.pending = ts
    if ts - s.pending < NODE_HOLD_S:
        return None
    record = judge(s, ts, settings)
    assert record is not None
    others = [g for g in gpus if g is not s and g.model.phase == SHIFTED and g.alert is None and not g.merged]
    if not others:
        return record
    excess = record.excess_cost_usd_per_hour
    for g in others:
        g.merged, g.pending = True, 0.0
        shift = g.model.shift()
        excess += shift.excess_usd_per_hour if isinstance(shift, GpuShift) else 0.0
    names = [f"GPU {g.labels.get('gpu', '?')}" for g in others]
    s.alert = replace(record, excess_cost_usd_per_hour=round(excess, 4),
                      severity=severity_for(excess, settings.critical_usd_per_hour, settings.warning_usd_per_hour),
                      summary=record.summary + f"; so are {len(others)} more GPUs of this node ({money(excess)}/h "
                      "above their usual idle cost in all)", related=names)
    return s.alert


def judge(s: SampleSeries, ts: float, settings: Settings) -> Anomaly | None:
    """The record a sample's update caused, if any: a new alert, or the end of one."""
    shift = s.model.shift() if s.model.phase == SHIFTED and not s.quiet else None
    if shift is not None and s.alert is None:
        s.alert = _fire(s, shift, ts, settings)
        return s.alert
    if shift is None and s.alert is not None:
        alert, s.alert = s.alert, None
        lasted = ts - datetime.fromisoformat(alert.started_at).timestamp()
        summary = f"{_title(s)} back to normal after {duration_words(lasted)}"
        if alert.excess_cost_usd_per_hour > 0:
            summary += f"; about {money(alert.excess_cost_usd_per_hour * lasted / 3600)} wasted in all"
        return alert.resolve(rfc3339(ts), summary)
    since = getattr(s.model, "shifted_at", None) or (shift.onset_ts if shift is not None else ts)
    if shift is not None and ts - since >= settings.rebaseline_after_hours * 3600:
        s.model.rebaseline(ts)
    return None


def _fire(s: SampleSeries, shift: GpuShift | UsageShift, ts: float, settings: Settings) -> Anomaly:
    started = rfc3339(shift.onset_ts)
    since = datetime.fromtimestamp(shift.onset_ts, UTC).strftime("%a %H:%M")
    if isinstance(shift, GpuShift):
        rule, excess = GPU_RULE, shift.excess_usd_per_hour
        observed, baseline = shift.observed_utilization, shift.baseline_utilization
        what = "idle" if shift.kind == "idle" else "saturated"
        summary = (f"{_title(s)} is {what}: {observed:.0%} busy against a usual {baseline:.0%} since {since} UTC")
        if shift.kind == "idle":
            summary += f"; {money(shift.idle_usd_per_hour)}/h paid for idle capacity"
    else:
        rule = USAGE_RULE
        observed, baseline = shift.observed, shift.baseline
        excess = (observed - baseline) if s.unit == "usd" and shift.kind != "spike" else 0.0
        words = {"spike": "spiked", "level": "shifted", "drift": "drifted"}[shift.kind]
        summary = (f"{_title(s)} {words} ({describe_ratio(shift.ratio)}): {baseline:,.2f} → {observed:,.2f} "
                   f"{s.unit} since {since} UTC")
    return Anomaly(
        id=anomaly_id(rule, s.labels | {"metric": s.metric}, started), rule=rule, metric=s.metric,
        labels=dict(s.labels), severity=severity_for(excess, settings.critical_usd_per_hour,
                                                     settings.warning_usd_per_hour),
        status="firing", started_at=started, detected_at=rfc3339(ts), resolved_at=None,
        observed=round(observed, 4), baseline=round(baseline, 4),
        ratio=round(shift.ratio, 3) if shift.ratio != float("inf") else 0.0,
        excess_cost_usd_per_hour=round(excess, 4), projected_month_usd=None, summary=summary,
    )


def _title(s: SampleSeries) -> str:
    if s.metric == "gpu_utilization":
        return f"GPU {s.labels.get('gpu', '?')} on {s.labels.get('cluster', '?')}/{s.labels.get('node', '?')}"
    scope = "/".join(s.labels[k] for k in USAGE_LABELS if k in s.labels)
    return f"{s.metric} for {scope}" if scope else s.metric
