"""The closed sets a rule file may name: metrics, labels, models, statistics.

Everything a rule refers to by name is listed here, so a typo is a load
error with a "did you mean", never a rule that silently matches nothing.
Metrics come from DESIGN.md Contract 2; a ``usage_sample`` metric is named
``usage:<metric>`` (for example ``usage:vector_db_usd``), which keeps the
canonical names closed while still letting teams watch their own spend lines.
"""

from __future__ import annotations

import difflib
import re

USAGE_PREFIX = "usage:"
USAGE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}")

# Metric kinds decide which statistics, models and labels make sense.
DISTRIBUTION, RATE, SHARE, GPU, USAGE = "distribution", "rate", "share", "gpu", "usage"

METRIC_KINDS: dict[str, str] = {
    "input_tokens_per_request": DISTRIBUTION,
    "output_tokens_per_request": DISTRIBUTION,
    "cost_per_request": DISTRIBUTION,
    "request_rate": RATE,
    "spend_rate": RATE,
    "tier_mix": SHARE,
    "retry_rate": SHARE,
    "error_rate": SHARE,
    "cache_hit_rate": SHARE,
    "gpu_utilization": GPU,
}
METRICS: tuple[str, ...] = tuple(METRIC_KINDS)

ALLOCATION_LABELS = ("team", "product", "feature", "cost_center", "cohort", "category")
LLM_LABELS = (*ALLOCATION_LABELS, "model", "provider", "tier")
GPU_LABELS = (*ALLOCATION_LABELS, "cluster", "node", "gpu", "gpu_model")
SERIES_LABELS: tuple[str, ...] = tuple(dict.fromkeys((*LLM_LABELS, *GPU_LABELS)))
TAG_PREFIX = "tags."
TAG_NAME = re.compile(r"tags\.[A-Za-z_][A-Za-z0-9_\-]{0,63}")

LABELS_BY_KIND: dict[str, tuple[str, ...]] = {
    DISTRIBUTION: LLM_LABELS,
    RATE: LLM_LABELS,
    SHARE: LLM_LABELS,
    GPU: GPU_LABELS,
    USAGE: ALLOCATION_LABELS,
}

STATISTICS: tuple[str, ...] = ("mean", "p50", "p90", "p95", "p99", "rate", "share", "sum")
_SPREAD = ("mean", "p50", "p90", "p95", "p99")
STATISTICS_BY_KIND: dict[str, tuple[str, ...]] = {
    DISTRIBUTION: _SPREAD,
    RATE: ("rate", "sum"),
    SHARE: ("share",),
    GPU: _SPREAD,
    USAGE: (*_SPREAD, "rate", "sum"),
}

ANOMALY_MODELS: tuple[str, ...] = ("level_shift", "proportion_shift", "rate_shift", "idle", "drift")
MODELS_BY_KIND: dict[str, tuple[str, ...]] = {
    DISTRIBUTION: ("level_shift", "drift"),
    RATE: ("rate_shift", "level_shift", "drift"),
    SHARE: ("proportion_shift", "drift"),
    GPU: ("idle", "level_shift", "drift"),
    USAGE: ("level_shift", "rate_shift", "drift"),
}
BUDGET_METRICS = "spend_rate or usage:<name> (a usage metric counted in dollars)"

SEVERITIES: tuple[str, ...] = ("critical", "warning", "info", "auto")
"""``auto`` (the default when a rule sets none) lets the excess $/hour decide."""


def metric_kind(metric: str) -> str:
    """The kind of a valid metric name.

    >>> metric_kind("tier_mix"), metric_kind("usage:vector_db_usd")
    ('share', 'usage')
    """
    return USAGE if metric.startswith(USAGE_PREFIX) else METRIC_KINDS[metric]


def is_series_label(name: str) -> bool:
    """Whether ``name`` is a label a series can carry (and so a matcher can test).

    >>> is_series_label("feature"), is_series_label("tags.env"), is_series_label("severity")
    (True, True, False)
    """
    return name in SERIES_LABELS or TAG_NAME.fullmatch(name) is not None


def labels_of_metric(metric: str) -> tuple[str, ...]:
    """The fixed labels a series of ``metric`` can carry (``tags.<name>`` besides).

    >>> labels_of_metric("gpu_utilization")[-2:]
    ('gpu', 'gpu_model')
    """
    return LABELS_BY_KIND[metric_kind(metric)]


def closest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    """The one near miss worth suggesting, if any.

    >>> closest("input_token_per_request", METRICS)
    'input_tokens_per_request'
    >>> closest("zzz", METRICS) is None
    True
    """
    found = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return found[0] if found else None
