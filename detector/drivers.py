"""Where a feature's extra dollars come from: volume, prompts, answers, tier mix, retries, cache.

A spend change is the sum of what moved. For each model of the feature the
recent profile (last ~5 minutes), or its average minute over an incident,
is set against the baseline profile (normal) and the clock's expected volume, and the change in dollars per hour is split in a fixed order so
the parts add up: retries first (extra attempts are extra requests), then
volume at normal cost per request, then the model mix at normal per-model
costs, then per model the tokens per request and the cache share at that
model's prices. What is left (a price change, rounding) is ``other``.

This is what tells the on-call engineer where to look: "+$41/h: +$30 longer
prompts, +$8 more requests, +$3 retries".
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from detector.anomaly import cause_part, money
from detector.llm_series import PROFILE_FIELDS, ModelSeries
from detector.pricing import PriceTable

REQ, COST, IN, OUT, CACHED, RETRY = range(6)
CAUSE_OF = {  # the driver an alert on a metric is about: always named in its split, however small
    "input_tokens_per_request": "input_tokens",
    "output_tokens_per_request": "output_tokens",
    "retry_rate": "retries",
    "cache_hit_rate": "cache",
    "tier_mix": "tier_mix",
    "request_rate": "volume",
}


def decompose(members: Iterable[ModelSeries], prices: PriceTable, *, expected_requests: float | None = None,
              recent: Mapping[str, Sequence[float]] | None = None, keep: str | None = None) -> dict[str, float]:
    """$/hour of the change, by driver; empty when the feature has no baseline yet.

    ``expected_requests`` is the feature's normal requests per minute for this
    time of the week (the seasonal rate model's, when it has one); without it
    the baseline's average minute stands in. ``recent`` replaces the members'
    recent profiles with their average minute over an incident. ``keep``
    names a driver shown however small: the one the alert is about (a
    prompt-length alert on a model that is a small part of its feature's
    spend still says what its longer prompts cost).

    >>> from detector.llm_series import PROFILE_FIELDS, FeatureSeries, ModelSeries
    >>> s = ModelSeries(("a", "f", "gpt-4o"), "premium", 0.0, "hosted_inference", FeatureSeries(("a", "f"), 0))
    >>> for minute in range(60):
    ...     s.baseline.add(minute, (10, 0.35, 100_000, 10_000, 0, 0))
    ...     s.recent.add(minute, (10, 0.60, 200_000, 10_000, 0, 0))
    >>> {k: round(v, 2) for k, v in decompose([s], PriceTable.packaged()).items()}
    {'input_tokens': 15.0}
    """
    pairs = [(s, _now(s, recent)) for s in members if s.baseline.weight > 0]
    pairs = [(s, now) for s, now in pairs if now is not None]
    base_n = sum(s.baseline.per_minute(REQ) for s, _ in pairs)
    n1 = sum(now[REQ] for _, now in pairs)
    if base_n <= 0 or n1 <= 0:
        return {}
    n0 = expected_requests if expected_requests else base_n
    c0 = sum(s.baseline.per_minute(COST) for s, _ in pairs) / base_n
    total = 60 * (sum(now[COST] for _, now in pairs) - c0 * n0)
    r0 = sum(s.baseline.per_minute(RETRY) for s, _ in pairs) / base_n
    r1 = sum(now[RETRY] for _, now in pairs) / n1
    parts = {"retries": 60 * (r1 - r0) * n1 * c0, "volume": 60 * (n1 * (1 - (r1 - r0)) - n0) * c0}
    mix = tokens_in = tokens_out = cache = 0.0
    for s, now in pairs:
        base, n = s.baseline, now[REQ]
        mix += (n / n1 - base.per_minute(REQ) / base_n) * n1 * base.mean(COST, REQ)
        price = prices.model_price(s.key[-1] or "")
        if price is None or n <= 0:
            continue
        in0, in1 = base.mean(IN, REQ), now[IN] / n
        k0 = base.mean(CACHED, IN)
        k1 = now[CACHED] / now[IN] if now[IN] > 0 else k0
        cache_price = price.cache_read_per_token if price.cache_read_per_token is not None else price.input_per_token
        tokens_in += n * (in1 - in0) * ((1 - k0) * price.input_per_token + k0 * cache_price)
        cache += n * in1 * (k0 - k1) * (price.input_per_token - cache_price)
        tokens_out += n * (now[OUT] / n - base.mean(OUT, REQ)) * price.output_per_token
    parts |= {"tier_mix": 60 * mix, "input_tokens": 60 * tokens_in, "output_tokens": 60 * tokens_out,
              "cache": 60 * cache}
    parts["other"] = total - sum(parts.values())
    return significant(parts, total, keep)


def _now(s: ModelSeries, recent: Mapping[str, Sequence[float]] | None) -> Sequence[float] | None:
    """A member's average minute now: from ``recent`` when given, else its recent profile."""
    if recent is not None:
        return recent.get(s.key[-1] or "", (0.0,) * len(PROFILE_FIELDS))
    if s.recent.weight <= 0:
        return None
    return tuple(s.recent.per_minute(i) for i in range(len(PROFILE_FIELDS)))


def significant(parts: dict[str, float], total: float, keep: str | None = None) -> dict[str, float]:
    """The drivers worth naming: at least 10 % of the change (or of the largest part), and ``keep``; biggest first.

    >>> significant({"volume": 10.0, "input_tokens": 0.4, "cache": 0.3}, 10.7, keep="input_tokens")
    {'volume': 10.0, 'input_tokens': 0.4}
    """
    scale = max(abs(total), max((abs(v) for v in parts.values()), default=0.0))
    if scale <= 0:
        return {}
    kept = {k: round(v, 4) for k, v in parts.items() if abs(v) >= 0.1 * scale or (k == keep and round(v, 4))}
    return dict(sorted(kept.items(), key=lambda kv: -abs(kv[1])))


def describe_drivers(drivers: dict[str, float]) -> str:
    """``+$41/h: +$30/h longer prompts, +$8/h more requests``.

    >>> describe_drivers({"input_tokens": 30.2, "volume": 8.1, "retries": 3.0})
    '+$41/h: +$30/h longer prompts, +$8.10/h more requests, +$3.00/h retries'
    """
    if not drivers:
        return ""
    total = sum(drivers.values())
    sign = "+" if total >= 0 else ""
    parts = [cause_part(k, v) for k, v in drivers.items()]
    return f"{sign}{money(total)}/h: " + ", ".join(parts)
