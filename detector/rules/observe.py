"""What one event says about each metric of Contract 2, as rules see it.

The evaluator turns every event into (metric, value, hit) observations: a
value per request for the distributions, a count or dollars for the rates,
a 0/1 (or token-weighted) hit for the shares. This module is that mapping,
and the labels an event's series carries, so the evaluator itself never
looks inside an event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.rules.catalog import USAGE_PREFIX

LLM_LABEL_FIELDS = ("team", "product", "feature", "cost_center", "cohort", "category", "model", "provider", "tier")
GPU_LABEL_FIELDS = ("team", "product", "feature", "cost_center", "cohort", "category",
                    "cluster", "node", "gpu", "gpu_model")
USAGE_LABEL_FIELDS = ("team", "product", "feature", "cost_center", "cohort", "category")
LLM_METRICS = ("input_tokens_per_request", "output_tokens_per_request", "cost_per_request",
               "request_rate", "spend_rate", "tier_mix", "retry_rate", "error_rate", "cache_hit_rate")


@dataclass(frozen=True, slots=True)
class Point:
    """One observation of a metric: ``value`` with ``weight``, and ``hit`` for shares (≤ weight)."""

    value: float
    weight: float = 1.0
    hit: float = 0.0


def event_labels(ev: Event, tier: str | None, tag_names: tuple[str, ...]) -> dict[str, str]:
    """The labels of the series an event belongs to (absent ones left out); ``tier`` resolved by the caller.

    >>> event_labels(LlmRequest(ts=0, model="m", input_tokens=1, output_tokens=1, team="a",
    ...                         tags={"env": "prod"}), "premium", ("env",))
    {'team': 'a', 'category': 'hosted_inference', 'model': 'm', 'tier': 'premium', 'tags.env': 'prod'}
    """
    if type(ev) is LlmRequest:
        fields = LLM_LABEL_FIELDS
    elif type(ev) is GpuSample:
        fields = GPU_LABEL_FIELDS
    else:
        fields = USAGE_LABEL_FIELDS
    labels = {}
    for name in fields:
        value = tier if name == "tier" else getattr(ev, name)
        if value is not None:
            labels[name] = value
    tags = ev.tags
    if tags and tag_names:
        for name in tag_names:
            if name in tags:
                labels["tags." + name] = tags[name]
    return labels


def metric_of_sample(ev: Event) -> str | None:
    """The one metric a sample feeds (None for an LLM request, which feeds several)."""
    if type(ev) is GpuSample:
        return "gpu_utilization"
    if type(ev) is UsageSample:
        return USAGE_PREFIX + ev.metric
    return None


_LLM: dict[str, Callable[[LlmRequest, float | None, Mapping[str, str]], Point | None]] = {
    "input_tokens_per_request": lambda ev, cost, labels: Point(ev.input_tokens),
    "output_tokens_per_request": lambda ev, cost, labels: Point(ev.output_tokens),
    "cost_per_request": lambda ev, cost, labels: None if cost is None else Point(cost),
    "request_rate": lambda ev, cost, labels: Point(1.0),
    "spend_rate": lambda ev, cost, labels: None if cost is None else Point(cost),
    "tier_mix": lambda ev, cost, labels: Point(1.0, hit=1.0),  # the share's denominator is kept apart
    "retry_rate": lambda ev, cost, labels: Point(1.0, hit=float(ev.attempt > 1)),
    "error_rate": lambda ev, cost, labels: Point(1.0, hit=float(ev.status != "ok")),
    "cache_hit_rate": lambda ev, cost, labels: (
        Point(1.0, weight=ev.input_tokens, hit=ev.cached_input_tokens) if ev.input_tokens else None),
}


def point(metric: str, ev: Event, cost: float | None, labels: Mapping[str, str]) -> Point | None:
    """The observation ``ev`` makes of ``metric``; None when it says nothing (an unpriced request's cost).

    >>> ev = LlmRequest(ts=0, model="m", input_tokens=800, output_tokens=1, cached_input_tokens=200, attempt=2)
    >>> point("retry_rate", ev, None, {}), point("cache_hit_rate", ev, None, {}).hit, point("spend_rate", ev, None, {})
    (Point(value=1.0, weight=1.0, hit=1.0), 200, None)
    """
    if type(ev) is LlmRequest:
        return _LLM[metric](ev, cost, labels)
    if type(ev) is GpuSample:
        return Point(ev.utilization)
    assert type(ev) is UsageSample
    return Point(ev.value)
