"""A statistic over a sliding window of event time, in bounded memory.

A threshold rule asks for "the p95 over the last 15 minutes" of a series;
keeping every value would make memory grow with traffic. Values are summed
into buckets instead (one minute wide, wider for long windows so a window
never holds more than :data:`MAX_BUCKETS`), each bucket holding a count, a
sum, a weighted numerator for shares and, only when a quantile is asked for,
a log-scale histogram with :data:`RELATIVE_ERROR` precision (the idea of
DDSketch). A bucket is dropped once it leaves the window, so the state is
bounded by the window, never by the traffic.
"""

from __future__ import annotations

import math
from collections import deque

MAX_BUCKETS = 120
RELATIVE_ERROR = 0.01
_GAMMA = (1 + RELATIVE_ERROR) / (1 - RELATIVE_ERROR)
_LOG_GAMMA = math.log(_GAMMA)
QUANTILES: dict[str, float] = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}


def bucket_width(window_s: float) -> float:
    """Seconds per bucket: a minute, or wider so the window fits in MAX_BUCKETS.

    >>> bucket_width(600), bucket_width(86400)
    (60.0, 720.0)
    """
    minutes = max(1, math.ceil(window_s / 60 / MAX_BUCKETS))
    return 60.0 * minutes


class _Bucket:
    __slots__ = ("start", "count", "total", "hits", "hist")

    def __init__(self, start: float, quantiles: bool) -> None:
        self.start = start
        self.count = 0.0
        self.total = 0.0
        self.hits = 0.0
        self.hist: dict[int, float] | None = {} if quantiles else None


class WindowStats:
    """Count, sum, share and quantiles of the values seen in the last ``window_s`` seconds.

    >>> w = WindowStats(600, quantiles=True)
    >>> for i in range(100):
    ...     w.add(60.0 * (i // 10), float(i + 1), hit=i % 4 == 0)
    >>> now = 600.0
    >>> w.count(now), w.mean(now), w.share(now), round(w.quantile(now, 0.5))
    (100.0, 50.5, 0.25, 50)
    >>> w.count(1200.0)  # ten minutes later the window is empty
    0.0
    """

    __slots__ = ("window_s", "width", "quantiles", "buckets")

    def __init__(self, window_s: float, *, quantiles: bool = False) -> None:
        self.window_s = window_s
        self.width = bucket_width(window_s)
        self.quantiles = quantiles
        self.buckets: deque[_Bucket] = deque()

    def add(self, ts: float, value: float, *, weight: float = 1.0, hit: float | bool = 0.0) -> None:
        """Count ``weight`` observations of ``value`` at ``ts``; ``hit`` is the numerator of a share."""
        start = ts - ts % self.width
        buckets = self.buckets
        if buckets and buckets[-1].start == start:
            bucket = buckets[-1]
        elif not buckets or buckets[-1].start < start:
            bucket = _Bucket(start, self.quantiles)
            buckets.append(bucket)
            self._expire(start)
        else:
            bucket = self._older(start)
            if bucket is None:
                return  # before the window: too late to count
        bucket.count += weight
        bucket.total += value * weight
        bucket.hits += float(hit) * weight if isinstance(hit, bool) else hit
        if bucket.hist is not None:
            key = _key(value)
            bucket.hist[key] = bucket.hist.get(key, 0.0) + weight

    def _older(self, start: float) -> _Bucket | None:
        """The bucket of a late value, made if still inside the window."""
        for i, bucket in enumerate(self.buckets):
            if bucket.start == start:
                return bucket
            if bucket.start > start:
                if start <= self.buckets[-1].start - self.window_s:
                    return None
                made = _Bucket(start, self.quantiles)
                self.buckets.insert(i, made)
                return made
        return None

    def _expire(self, now: float) -> None:
        cutoff = now - self.window_s
        while self.buckets and self.buckets[0].start + self.width <= cutoff:
            self.buckets.popleft()

    def _live(self, now: float) -> list[_Bucket]:
        """Buckets that close by ``now`` and end inside the window ending at ``now``."""
        self._expire(now)
        low = now - self.window_s
        return [b for b in self.buckets if b.start >= low and b.start + self.width <= now]

    def count(self, now: float) -> float:
        return sum((b.count for b in self._live(now)), 0.0)

    def total(self, now: float) -> float:
        return sum((b.total for b in self._live(now)), 0.0)

    def mean(self, now: float) -> float | None:
        live = self._live(now)
        count = sum(b.count for b in live)
        return sum(b.total for b in live) / count if count else None

    def share(self, now: float) -> float | None:
        live = self._live(now)
        count = sum(b.count for b in live)
        return sum(b.hits for b in live) / count if count else None

    def quantile(self, now: float, q: float) -> float | None:
        """The ``q`` quantile within 1 % relative error; None without values."""
        merged: dict[int, float] = {}
        for bucket in self._live(now):
            for key, weight in (bucket.hist or {}).items():
                merged[key] = merged.get(key, 0.0) + weight
        total = sum(merged.values())
        if not total:
            return None
        rank, seen = q * (total - 1), 0.0
        for key in sorted(merged):
            seen += merged[key]
            if seen > rank:
                return _value(key)
        return _value(max(merged))

    @property
    def empty(self) -> bool:
        return not self.buckets


def _key(value: float) -> int:
    """Histogram bin of a value: 0 holds zero and below, k > 0 a band of ±1 %."""
    if value <= 0:
        return 0
    return math.ceil(math.log(value) / _LOG_GAMMA) + 1_000_000  # offset keeps values below 1 positive


def _value(key: int) -> float:
    if key == 0:
        return 0.0
    k = key - 1_000_000
    return 2 * _GAMMA**k / (_GAMMA + 1)
