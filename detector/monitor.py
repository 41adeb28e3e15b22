"""One rule watching one series: the model that judges it, and whether it has paged.

The rules say *what* to watch and how sensitive to be (``rules/default.yaml``
ships one anomaly rule per metric; a team file may override one for its own
scope); the engine turns each anomaly rule that selects a series into a
monitor: the online model the rule names, built with the rule's parameters,
carrying the rule and whether its shift has paged
(:class:`~detector.models.state.Watched`). Threshold and budget rules are
not monitors: they have no model to learn and are evaluated by
:mod:`detector.rules`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from weakref import WeakValueDictionary

from detector.config import Settings
from detector.models.drift import SlowCreep
from detector.models.level_shift import LogLevelShift
from detector.models.proportion import ProportionShift
from detector.models.seasonal_rate import SeasonalRate
from detector.packed_monitors import PackedMonitor
from detector.rules.ruleset import Rule, RuleSet

Model = LogLevelShift | ProportionShift | SeasonalRate | SlowCreep

CREEP_RULE = "builtin.input_tokens_drift"
RATE_BUCKET_MINUTES = 60  # one visit of an hour of the day lets it judge: a runaway on day two is caught

DERIVED = frozenset({"cost_per_request", "spend_rate"})
"""Metrics that move whenever a cause moves: they page only when no cause explains them."""


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Watch:
    """What a monitor watches and under which rule: one instance shared by every series the rule selects."""

    rule: Rule | None
    rule_id: str
    metric: str


_WATCHES: WeakValueDictionary[tuple[int, str, str], Watch] = WeakValueDictionary()


def watch(rule: Rule | None, metric: str, rule_id: str) -> Watch:
    """The shared :class:`Watch` of a rule on a metric (kept while a monitor uses it).

    >>> watch(None, "error_rate", "builtin.error_rate") is watch(None, "error_rate", "builtin.error_rate")
    True
    """
    key = (id(rule), rule_id, metric)  # the Watch holds the rule, so its id is not reused while the entry lives
    found = _WATCHES.get(key)
    if found is None:
        found = _WATCHES[key] = Watch(rule, sys.intern(rule_id), sys.intern(metric))
    return found


Monitor = Model | PackedMonitor
"""A rule's model on one series, carrying its rule and paging state: kept in its series' array once the
series takes it (``detector.packed_monitors``), the model itself until then (``Watched``)."""


def monitor(rule: Rule | None, metric: str, model: Model, rule_id: str | None = None) -> Model:
    """``model`` as the monitor of ``rule`` (or of the built-in ``rule_id``) on ``metric``.

    >>> m = monitor(None, "error_rate", ProportionShift())
    >>> m.rule_id, m.metric, m.paged, m.model is m
    ('builtin.error_rate', 'error_rate', False, True)
    """
    model.watch = watch(rule, metric, rule.id if rule is not None else rule_id or f"builtin.{metric}")
    model.paged = False
    model.held_since = 0.0
    return model


def monitor_state(mon: Monitor) -> dict[str, Any]:
    """A monitor's saved state: its rule, its model's state and its alert flags."""
    return {"rule": mon.rule_id, "model": mon.to_state(), "paged": mon.paged, "held": mon.held_since}


def monitors_for(
    rules: RuleSet | None, labels: Mapping[str, str], metrics: tuple[str, ...], settings: Settings
) -> tuple[Model, ...]:
    """The monitors a series gets: one per anomaly rule selecting it, for each of ``metrics``.

    New models, each carrying its rule: the series packs them into its array
    (:mod:`detector.packed_monitors`).

    Without rules, each metric gets its built-in model with the settings' defaults.

    >>> [m.rule_id for m in monitors_for(None, {"team": "a"}, ("input_tokens_per_request",), Settings())]
    ['builtin.input_tokens_per_request', 'builtin.input_tokens_drift']
    """
    out: list[Model] = []
    for metric in metrics:
        if rules is None:
            out.append(monitor(None, metric, default_model(metric, settings)))
            if metric == "input_tokens_per_request":
                out.append(monitor(None, metric, SlowCreep(), rule_id=CREEP_RULE))
            continue
        for rule in rules.for_series(labels, metric):
            if rule.enabled and rule.expr.anomaly is not None:
                model = model_for(rule, settings)
                if model is not None:
                    out.append(monitor(rule, metric, model))
    return tuple(out)


def default_model(metric: str, settings: Settings) -> Model:
    """The model a metric gets when no rule file says otherwise."""
    warmup = settings.warmup_requests
    if metric in ("input_tokens_per_request", "output_tokens_per_request", "cost_per_request"):
        ratio = settings.min_ratio if metric != "output_tokens_per_request" else max(settings.min_ratio, 1.5)
        return LogLevelShift(warmup=warmup, h=settings.shift_threshold, min_ratio=ratio)
    if metric == "cache_hit_rate":
        return ProportionShift(ratio_above=None, ratio_below=0.5, min_delta=0.2, min_ratio=1.5, warmup=warmup)
    if metric in ("retry_rate", "error_rate", "tier_mix"):
        return ProportionShift(warmup=warmup)
    if metric == "request_rate":
        return SeasonalRate(ratio_above=2.0, min_bucket_minutes=RATE_BUCKET_MINUTES)
    if metric == "spend_rate":
        return SeasonalRate(ratio_above=2.0, min_bucket_minutes=RATE_BUCKET_MINUTES)
    raise ValueError(f"no built-in model for metric {metric!r}")


def model_for(rule: Rule, settings: Settings) -> Model | None:
    """The model an anomaly rule names, with its parameters; None for kinds watched elsewhere."""
    spec = rule.expr.anomaly
    metric = rule.expr.metric
    kind = getattr(spec, "model", None)
    if kind == "level_shift" and metric in ("input_tokens_per_request", "output_tokens_per_request",
                                           "cost_per_request"):
        ratio = spec.ratio_above or (1 / spec.ratio_below if spec.ratio_below else settings.min_ratio)
        return LogLevelShift(warmup=max(spec.min_requests, settings.warmup_requests),
                             h=settings.shift_threshold, min_ratio=ratio)
    if kind == "proportion_shift":
        warmup = max(spec.min_requests, settings.warmup_requests)
        if spec.delta_below is not None and spec.delta_above is None:
            return ProportionShift(ratio_above=None, ratio_below=0.5, min_delta=spec.delta_below,
                                   min_ratio=1.5, warmup=warmup)
        return ProportionShift(min_delta=spec.delta_above or 0.05, warmup=warmup)
    if kind == "drift" and metric in ("input_tokens_per_request", "output_tokens_per_request",
                                      "cost_per_request"):
        return SlowCreep(min_ratio=spec.ratio_above, baseline_half_life_h=spec.window / 3600)
    if kind == "rate_shift":
        return SeasonalRate(ratio_above=spec.ratio_above, ratio_below=spec.ratio_below, min_bucket_minutes=RATE_BUCKET_MINUTES,
                            min_ratio=min(1.5, spec.ratio_above or 1.5))
    return None
