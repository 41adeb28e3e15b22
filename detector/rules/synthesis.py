"""Events from a rule test's input series: what traffic would make the metric take each value.

Each value of a series becomes one interval of events: ``requests`` LLM
requests spread evenly over the interval, shaped so the metric reads that
value (a share of 0.25 makes a quarter of them fail, retry or hit the
cache; a spend rate of $12/h gives them costs adding up to $12/h), or one
GPU or usage sample. Labels of the series become the events' fields, so
the rules under test see the series exactly as they would in production.
Each input series makes its own requests: two series on one label set
add up in the rates.
"""

from __future__ import annotations

from collections.abc import Iterator

from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.rules.catalog import TAG_PREFIX, USAGE_PREFIX
from detector.rules.series_notation import Series

DEFAULT_MODEL = "gpt-4o"
INPUT_TOKENS, OUTPUT_TOKENS = 1000, 200
_LLM_FIELDS = ("team", "product", "feature", "cost_center", "cohort", "category", "model", "provider", "tier")
_GPU_FIELDS = ("team", "product", "feature", "cost_center", "cohort", "category", "cluster", "node", "gpu",
               "gpu_model")


def events_of(series: Series, values: list[float | None], *, start: float, interval: float,
              requests: int) -> Iterator[Event]:
    """The events of one series, in time order.

    >>> from detector.rules.series_notation import parse_series
    >>> evs = list(events_of(parse_series('error_rate{team="a"}'), [0.5], start=0.0, interval=60.0, requests=4))
    >>> [(e.ts, e.status) for e in evs]
    [(0.0, 'ok'), (15.0, 'error'), (30.0, 'ok'), (45.0, 'error')]
    """
    carry = 0.0
    for i, value in enumerate(values):
        if value is None:
            continue
        t0 = start + i * interval
        if series.metric == "gpu_utilization":
            yield _gpu(series, t0, value)
        elif series.metric.startswith(USAGE_PREFIX):
            yield _usage(series, t0, value)
        elif series.metric == "request_rate":
            exact = value * interval / 60 + carry
            count = int(exact)
            carry = exact - count
            yield from (_request(series, t0 + j * interval / count) for j in range(count))
        else:
            yield from _shaped(series, value, t0, interval, requests)


def _shaped(series: Series, value: float, t0: float, interval: float, requests: int) -> Iterator[LlmRequest]:
    metric = series.metric
    hits = _spread(value, requests) if metric in ("error_rate", "retry_rate", "tier_mix") else None
    for j in range(requests):
        ev = _request(series, t0 + j * interval / requests)
        if metric == "input_tokens_per_request":
            ev.input_tokens = max(0, round(value))
        elif metric == "output_tokens_per_request":
            ev.output_tokens = max(0, round(value))
        elif metric == "cost_per_request":
            ev.cost_usd = max(0.0, value)
        elif metric == "spend_rate":
            ev.cost_usd = max(0.0, value * interval / 3600 / requests)
        elif metric == "cache_hit_rate":
            ev.cached_input_tokens = round(min(1.0, max(0.0, value)) * ev.input_tokens)
        elif hits is not None and metric == "error_rate":
            ev.status = "error" if hits[j] else "ok"
        elif hits is not None and metric == "retry_rate":
            ev.attempt = 2 if hits[j] else 1
        elif hits is not None and not hits[j]:  # tier_mix: the rest of the requests go to another tier
            ev.tier = "other" if ev.tier != "other" else "another"
        yield ev


def _spread(share: float, n: int) -> list[bool]:
    """Which of ``n`` requests are hits so that ``share`` of them are, spread evenly."""
    share = min(1.0, max(0.0, share))
    return [int((j + 1) * share + 1e-9) > int(j * share + 1e-9) for j in range(n)]


def _fields(series: Series, names: tuple[str, ...]) -> dict[str, object]:
    fields: dict[str, object] = {k: v for k, v in series.labels.items() if k in names}
    tags = {k.removeprefix(TAG_PREFIX): v for k, v in series.labels.items() if k.startswith(TAG_PREFIX)}
    if tags:
        fields["tags"] = tags
    return fields


def _request(series: Series, ts: float) -> LlmRequest:
    fields = _fields(series, _LLM_FIELDS)
    fields.setdefault("model", DEFAULT_MODEL)
    return LlmRequest(ts=ts, input_tokens=INPUT_TOKENS, output_tokens=OUTPUT_TOKENS, **fields)  # type: ignore[arg-type]


def _gpu(series: Series, ts: float, value: float) -> GpuSample:
    fields = _fields(series, _GPU_FIELDS)
    fields.setdefault("node", "node-1")
    fields.setdefault("gpu", "0")
    return GpuSample(ts=ts, utilization=min(1.0, max(0.0, value)), **fields)  # type: ignore[arg-type]


def _usage(series: Series, ts: float, value: float) -> UsageSample:
    fields = _fields(series, _GPU_FIELDS[:6])
    metric = series.metric.removeprefix(USAGE_PREFIX)
    return UsageSample(ts=ts, metric=metric, value=value, unit="usd", **fields)  # type: ignore[arg-type]
