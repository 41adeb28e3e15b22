"""A model's shift, in words and dollars: the record an on-call engineer reads.

Each metric is priced the way its change shows on the bill: extra tokens at
the model's token price, extra retries and failures at the normal cost of a
request, lost cache hits at the gap between the input and cache-read prices,
a traffic surge at the normal cost per request, premium-tier traffic at the
gap between the tiers' costs per request. The rate of requests and spend
"now" comes from the series' recent profile.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from detector.anomaly import describe_ratio, money, vs_normal, where
from detector.drivers import COST, IN, REQ, describe_drivers
from detector.llm_series import FeatureSeries, ModelSeries
from detector.models.drift import Creep
from detector.models.level_shift import Shift
from detector.models.proportion import ShareShift
from detector.models.seasonal_rate import RateShift
from detector.pricing import PriceTable

MICRO = 1e6  # cost per request is modelled in micro-dollars (see the engine)
TITLES = {
    "input_tokens_per_request": "Input tokens per request",
    "output_tokens_per_request": "Output tokens per request",
    "cost_per_request": "Cost per request",
    "retry_rate": "The share of retried requests",
    "error_rate": "The share of failed requests",
    "cache_hit_rate": "The prompt-cache hit share",
    "tier_mix": "The share of requests sent to {model} ({tier} tier)",
    "request_rate": "Requests per minute",
    "spend_rate": "Spend per hour",
}


@dataclass(frozen=True, slots=True)
class Finding:
    """What a record says: the numbers, the dollars and the sentence."""

    onset_ts: float
    observed: float
    baseline: float
    ratio: float
    excess_per_hour: float
    projected_month: float | None
    summary: str


def unit_input_price(prices: PriceTable, s: ModelSeries) -> tuple[float, float, float]:
    """(input $/token at the series' cache share, output $/token, input − cache-read $/token); zeros if unpriced."""
    price = prices.model_price(s.key[-1] or "")
    if price is None:
        return 0.0, 0.0, 0.0
    cache_price = price.cache_read_per_token if price.cache_read_per_token is not None else price.input_per_token
    share = s.cached_sum / s.input_sum if s.input_sum else 0.0
    unit = (1 - share) * price.input_per_token + share * cache_price
    return unit, price.output_per_token, price.input_per_token - cache_price


def requests_per_hour(s: ModelSeries | FeatureSeries) -> float:
    if isinstance(s, FeatureSeries):
        return sum(requests_per_hour(m) for m in s.members.values())
    return 60 * s.recent.per_minute(REQ)


def cost_per_request(s: ModelSeries | FeatureSeries) -> float:
    """Normal $ per request: the baseline profile, else the recent one."""
    members = list(s.members.values()) if isinstance(s, FeatureSeries) else [s]
    n = sum(m.baseline.per_minute(REQ) for m in members)
    if n > 0:
        return sum(m.baseline.per_minute(COST) for m in members) / n
    n = sum(m.recent.per_minute(REQ) for m in members)
    return sum(m.recent.per_minute(COST) for m in members) / n if n > 0 else 0.0


def projected_month(month_cost: float, spend_per_hour: float, ts: float) -> float | None:
    """Month-end spend: spent so far this month, plus the current rate to the month's end."""
    if month_cost <= 0 and spend_per_hour <= 0:
        return None
    now = datetime.fromtimestamp(ts, UTC)
    days = calendar.monthrange(now.year, now.month)[1]
    end = datetime(now.year, now.month, days, 23, 59, 59, tzinfo=UTC).timestamp()
    return month_cost + spend_per_hour * max(0.0, end - ts) / 3600


Found = Shift | ShareShift | RateShift | Creep


def excess_per_hour(metric: str, shift: Found, s: ModelSeries | FeatureSeries,
                    prices: PriceTable, tier: str | None = None) -> float:
    """$/hour above what the baseline would cost, for the metric's own kind of change."""
    if isinstance(shift, RateShift):
        per_minute = shift.observed_per_minute - shift.expected_per_minute
        return 60 * per_minute if metric == "spend_rate" else 60 * per_minute * cost_per_request(s)
    if isinstance(shift, Shift | Creep):
        assert isinstance(s, ModelSeries)
        delta = (shift.observed_mean - shift.baseline_mean if isinstance(shift, Shift)
                 else shift.observed_median - shift.baseline_median)
        if metric == "cost_per_request":
            return delta / MICRO * requests_per_hour(s)
        unit_in, unit_out, _ = unit_input_price(prices, s)
        return delta * (unit_in if metric == "input_tokens_per_request" else unit_out) * requests_per_hour(s)
    delta = shift.observed_share - shift.baseline_share
    if metric == "cache_hit_rate":
        assert isinstance(s, ModelSeries)
        _, _, gap = unit_input_price(prices, s)
        return -delta * 60 * s.recent.per_minute(IN) * gap
    if metric == "tier_mix":
        assert isinstance(s, FeatureSeries)
        return delta * requests_per_hour(s) * _tier_premium(s, tier)
    return delta * requests_per_hour(s) * cost_per_request(s)


def _tier_premium(f: FeatureSeries, model: str | None) -> float:
    """How much more a request on ``model`` costs than one elsewhere in the feature (baseline)."""
    inside = [m for name, m in f.members.items() if name == model]
    outside = [m for name, m in f.members.items() if name != model]
    return _mean_cost(inside) - _mean_cost(outside)


def _mean_cost(members: list[ModelSeries]) -> float:
    n = sum(m.baseline.per_minute(REQ) + m.recent.per_minute(REQ) for m in members)
    c = sum(m.baseline.per_minute(COST) + m.recent.per_minute(COST) for m in members)
    return c / n if n > 0 else 0.0


def numbers(shift: Found, metric: str) -> tuple[float, float]:
    """(observed, baseline) in the metric's unit (tokens, $, share, per minute, $ per hour)."""
    if isinstance(shift, Shift | Creep):
        scale = 1 / MICRO if metric == "cost_per_request" else 1.0
        return shift.observed_median * scale, shift.baseline_median * scale
    if isinstance(shift, ShareShift):
        return shift.observed_share, shift.baseline_share
    if metric == "spend_rate":
        return 60 * shift.observed_per_minute, 60 * shift.expected_per_minute
    return shift.observed_per_minute, shift.expected_per_minute


def fmt(metric: str, value: float) -> str:
    """A value in its metric's unit, as a person writes it."""
    if metric in ("retry_rate", "error_rate", "cache_hit_rate", "tier_mix"):
        return f"{value:.0%}" if value >= 0.01 else f"{value:.1%}"
    if metric == "spend_rate":
        return f"{money(value)}/h"
    if metric == "cost_per_request":
        return f"${value:.4f}" if value < 0.1 else money(value)
    if metric == "request_rate":
        return f"{value:,.1f}/min"
    return f"{value:,.0f}"


def finding(metric: str, shift: Found, labels: dict[str, str], excess: float,
            projected: float | None, drivers: dict[str, float] | None, priced: bool) -> Finding:
    """The record's numbers and its one sentence; the ratio is said once.

    >>> from detector.models.proportion import ShareShift
    >>> labels = {"team": "search", "feature": "answer"}
    >>> def said(share): return finding("retry_rate", ShareShift(1, 0.0, share, 0.02, 200, 8), labels,
    ...                                  2.0, None, None, True).summary.split(" since")[0]
    >>> said(0.04)
    'The share of retried requests for search/answer doubled: 2% → 4% (2.0×)'
    >>> said(0.05)
    'The share of retried requests for search/answer grew 2.5×: 2% → 5%'
    """
    observed, baseline = numbers(shift, metric)
    ratio = shift.ratio
    title = TITLES[metric].format(tier=labels.get("tier", "premium"), model=labels.get("model"))
    since = datetime.fromtimestamp(shift.onset_ts, UTC).strftime("%H:%M")
    median = "median " if isinstance(shift, Shift | Creep) else ""
    how = describe_ratio(ratio)
    if isinstance(shift, Creep):
        how = f"crept {'up' if ratio >= 1 else 'down'} by {shift.per_day - 1:+.0%} a day"
        since = datetime.fromtimestamp(shift.onset_ts, UTC).strftime("%a %H:%M")
    said = "" if how.startswith(("grew", "fell to")) else f" ({ratio:.1f}×)"  # not "grew 1.9×: … (1.9×)"
    text = (f"{title} for {where(labels)} {how}: {median}{fmt(metric, baseline)} → "
            f"{fmt(metric, observed)}{said} since {since} UTC; ")
    if priced:
        text += f"about {vs_normal(excess, '/h')}"
        if projected is not None:
            text += f", {money(projected)} by month end at this rate"
    else:
        text += f"{labels.get('model', 'this model')} has no price, so the cost is unknown"
    if drivers:
        text += f"; feature spend {describe_drivers(drivers)}"  # the whole feature's change: context, not this cost
    return Finding(shift.onset_ts, observed, baseline, ratio, excess, projected, text)
