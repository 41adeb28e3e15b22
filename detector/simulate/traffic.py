"""One feature's LLM requests for the whole span, as numpy columns, incidents included.

Arrivals are Poisson counts per minute at the seasonal rate, spread uniformly
inside the minute. Every random number a request could need is drawn up front,
whether or not an incident uses it, so an incident changes its window and
nothing else: a run with and without it is identical outside the window. A
traffic runaway adds requests from a stream of its own for the same reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from detector.events import STATUSES
from detector.simulate.catalog import Catalog
from detector.simulate.effects import Effects, shifts
from detector.simulate.incidents import Incident
from detector.simulate.seasonality import request_rate
from detector.simulate.timeline import MINUTE_MS, Timeline
from detector.simulate.world import Feature, rng_for, tag_of

OK, ERROR, TIMEOUT, RATE_LIMITED, CANCELLED = (
    STATUSES.index(s) for s in ("ok", "error", "timeout", "rate_limited", "cancelled")
)
CLIENT_TIMEOUT_MS = 60_000
CACHE_MISS_SHARE = 0.05  # requests that find the cache cold
CACHE_JITTER = 0.05  # sigma of the cached share around the feature's fraction
MAX_OUTPUT_TOKENS = 32_768
BACKOFF_MS = (200.0, 2000.0)  # a retry follows its failed attempt after this long


@dataclass(slots=True)
class Requests:
    """LLM requests as columns; ``series`` and ``prefix`` are :class:`Catalog` ids.

    The request id of a row is ``catalog.prefixes[prefix] + str(seq)``.

    >>> empty = Requests.concat([])
    >>> len(empty), len(Requests.concat([empty, empty]).take(slice(0, 5)))
    (0, 0)
    """

    ts_ms: np.ndarray
    series: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    cached_input_tokens: np.ndarray
    attempt: np.ndarray
    status: np.ndarray
    latency_ms: np.ndarray
    prefix: np.ndarray
    seq: np.ndarray

    def __len__(self) -> int:
        return len(self.ts_ms)

    def take(self, rows: np.ndarray | slice) -> Requests:
        return Requests(*(getattr(self, f.name)[rows] for f in fields(self)))

    @classmethod
    def concat(cls, parts: Sequence[Requests]) -> Requests:
        if not parts:
            return cls(*(np.zeros(0, dtype=np.int64) for _ in fields(cls)))
        return cls(*(np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)))


@dataclass(slots=True)
class _Draws:
    """Every random number of one stream of first attempts, drawn before any is used."""

    ts_ms: np.ndarray
    normal: np.ndarray  # rows: input, output, retry output, cache share, latency, retry latency
    uniform: np.ndarray  # rows: route, cache miss, retry, error, failure kind, partial output, backoff

    def take(self, rows: np.ndarray) -> _Draws:
        return _Draws(self.ts_ms[rows], self.normal[:, rows], self.uniform[:, rows])


@dataclass(frozen=True, slots=True)
class _Run:
    """What every stream of one feature shares."""

    feature: Feature
    timeline: Timeline
    incidents: Sequence[Incident]
    catalog: Catalog


def feature_requests(
    feature: Feature, timeline: Timeline, seed: int, incidents: Sequence[Incident], catalog: Catalog
) -> Requests:
    """All requests of ``feature`` over ``timeline``, first attempts and retries, unsorted.

    >>> from detector.simulate.timeline import DEFAULT_START
    >>> f = Feature("t", "f", "gpt-4o-mini", 10, 500, 0.5, 50)
    >>> reqs = feature_requests(f, Timeline(DEFAULT_START, 1), 7, (), Catalog())
    >>> 3000 < len(reqs) < 8000, bool((reqs.cached_input_tokens == 0).all())
    (True, True)
    """
    run = _Run(feature, timeline, incidents, catalog)
    prefix = f"r{seed}-{tag_of(feature.key)}-"
    rate = request_rate(feature, timeline, rng_for(seed, feature.key, 0))
    parts = [_stream(run, _draw(rng_for(seed, feature.key, 1), rate, timeline), prefix, None)]
    for i, inc in enumerate(incidents):
        if inc.kind == "traffic_runaway" and any(inc.matches(feature.labels(m)) for m in feature.models):
            extra = rate * (inc.magnitude - 1.0) * _minutes_within(inc, timeline)
            draws = _draw(rng_for(seed, feature.key, 100 + i), extra, timeline)
            parts.append(_stream(run, draws, f"{prefix}x{i}-", inc))
    return Requests.concat(parts)


def _draw(rng: np.random.Generator, rate: np.ndarray, timeline: Timeline) -> _Draws:
    counts = rng.poisson(rate)
    n = int(counts.sum())
    ts_ms = np.repeat(timeline.minute_ms(), counts) + rng.integers(0, MINUTE_MS, n)
    ts_ms.sort()
    return _Draws(ts_ms, rng.standard_normal((6, n)), rng.random((7, n)))


def _minutes_within(inc: Incident, timeline: Timeline) -> np.ndarray:
    start, end = inc.window_ms(timeline.end_ms)
    minute = timeline.minute_ms()
    return ((minute >= start) & (minute < end)).astype(float)


def _stream(run: _Run, draws: _Draws, prefix: str, runaway: Incident | None) -> Requests:
    """First attempts of one stream of draws, and the retries of those that failed."""
    feature, catalog = run.feature, run.catalog
    series = _route(run, draws)
    if runaway is not None:  # the extra traffic reaches only the series the runaway targets
        keep = catalog.matching(runaway.target)[series]
        draws, series = draws.take(keep), series[keep]
    effects = Effects(run.timeline, run.incidents, catalog, draws.ts_ms, series)
    z_in, z_out, _, z_cache, z_lat, _ = draws.normal
    _, u_miss, u_retry, u_error, u_kind, u_partial, _ = draws.uniform

    input_tokens = _tokens(feature.input_median, feature.input_sigma, z_in, effects.input_factor())
    cached = _cached(feature, input_tokens, z_cache, u_miss, effects)
    retried = u_retry < effects.share("retry_storm", feature.retry_rate)
    failed = ~retried & (u_error < effects.share("error_spike", feature.error_rate))
    status = _status(retried, failed, u_kind, effects.window("error_spike"))
    output_tokens = _output(feature, z_out, effects)
    output_tokens = np.select([status == OK, (status == TIMEOUT) | (status == CANCELLED)],
                              [output_tokens, np.floor(output_tokens * u_partial).astype(np.int64)], 0)
    latency = _latency(catalog, series, status, input_tokens, output_tokens, z_lat)
    n = len(series)
    first = Requests(draws.ts_ms, series, input_tokens, output_tokens, cached, np.ones(n, dtype=np.int64),
                     status, latency, np.full(n, catalog.prefix_id(prefix)), np.arange(n))
    retries = _retries(run, draws, first, effects, np.flatnonzero(retried), catalog.prefix_id(prefix + "a2-"))
    return Requests.concat([first, retries])


def _retries(run: _Run, draws: _Draws, first: Requests, effects: Effects, rows: np.ndarray,
             prefix: int) -> Requests:
    """Second attempts of the failed ``rows``: same prompt, a fresh answer, after a backoff."""
    z_lat, u_backoff = draws.normal[5, rows], draws.uniform[6, rows]
    low, high = BACKOFF_MS
    ts_ms = first.ts_ms[rows] + first.latency_ms[rows] + np.rint(low + (high - low) * u_backoff).astype(np.int64)
    output_tokens = _output(run.feature, draws.normal[2], effects)[rows]
    status = np.full(len(rows), OK)
    series, input_tokens = first.series[rows], first.input_tokens[rows]
    retries = Requests(ts_ms, series, input_tokens, output_tokens, first.cached_input_tokens[rows],
                       np.full(len(rows), 2), status,
                       _latency(run.catalog, series, status, input_tokens, output_tokens, z_lat),
                       np.full(len(rows), prefix), first.seq[rows])
    return retries.take(ts_ms < run.timeline.end_ms)


def _route(run: _Run, draws: _Draws) -> np.ndarray:
    """Series id of each request: the primary model, or the premium one for a small (or shifted) share."""
    feature, catalog = run.feature, run.catalog
    u_route = draws.uniform[0]
    primary = catalog.series_id(feature, feature.model)
    series = np.full(len(u_route), primary)
    if feature.fallback is not None:
        series[u_route < feature.fallback_share] = catalog.series_id(feature, feature.fallback)
    for inc in run.incidents:
        if inc.kind != "tier_shift" or not shifts(inc, feature):
            continue
        start, end = inc.window_ms(run.timeline.end_ms)
        inside = (draws.ts_ms >= start) & (draws.ts_ms < end)
        premium = catalog.series_id(feature, inc.target.get("model") or feature.fallback or feature.model)
        series[inside] = np.where(u_route[inside] < inc.magnitude, premium, primary)
    return series


def _tokens(median: float, sigma: float, z: np.ndarray, factor: np.ndarray) -> np.ndarray:
    raw = np.exp(np.log(median) + sigma * z) * factor
    return np.maximum(1, np.rint(raw)).astype(np.int64)


def _output(feature: Feature, z: np.ndarray, effects: Effects) -> np.ndarray:
    if not feature.emits_output:
        return np.zeros(len(z), dtype=np.int64)
    tokens = _tokens(feature.output_median, feature.output_sigma, z, effects.factor("output_explosion"))
    return np.minimum(tokens, MAX_OUTPUT_TOKENS)


def _cached(feature: Feature, input_tokens: np.ndarray, z: np.ndarray, u_miss: np.ndarray,
            effects: Effects) -> np.ndarray:
    if feature.cache_fraction == 0.0:
        return np.zeros(len(z), dtype=np.int64)
    share = np.clip(feature.cache_fraction + CACHE_JITTER * z, 0.0, 0.95)
    share[u_miss < CACHE_MISS_SHARE] = 0.0
    share *= effects.remaining("cache_break")
    return np.floor(input_tokens * share).astype(np.int64)


def _status(retried: np.ndarray, failed: np.ndarray, u_kind: np.ndarray, spike: np.ndarray) -> np.ndarray:
    """A retried request's first attempt was throttled, failed or timed out; other failures vary less."""
    status = np.full(len(retried), OK, dtype=np.int64)
    status[retried] = np.select([u_kind < 0.45, u_kind < 0.8], [RATE_LIMITED, ERROR], TIMEOUT)[retried]
    status[failed] = np.select([u_kind < 0.7, u_kind < 0.9], [ERROR, TIMEOUT], CANCELLED)[failed]
    status[failed & spike] = ERROR  # an outage or a bad deploy fails outright
    return status


def _latency(catalog: Catalog, series: np.ndarray, status: np.ndarray, input_tokens: np.ndarray,
             output_tokens: np.ndarray, z: np.ndarray) -> np.ndarray:
    ttft, per_token = catalog.profile()
    served = ttft[series] * np.exp(0.35 * z) + output_tokens * per_token[series] + 0.02 * input_tokens
    latency = np.select(
        [status == ERROR, status == RATE_LIMITED, status == TIMEOUT],
        [250.0 * np.exp(0.5 * z), 40.0 * np.exp(0.4 * z), np.full(len(z), float(CLIENT_TIMEOUT_MS))],
        served,
    )
    return np.rint(latency).astype(np.int64)
