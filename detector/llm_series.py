"""What the engine keeps per LLM series, and per feature above them.

A :class:`ModelSeries` is one (team, feature, model): the distributions of
tokens and dollars per request and the shares of retries, errors and cache
hits. A :class:`FeatureSeries` is one (team, feature) with all its models:
request and spend rates against the clock, and the tier mix (traffic moving
between a cheap and a premium model keeps the feature's volume flat, so only
the feature sees it). An incident is kept per feature, which is what lets
one cause page once.

Everything a minute brings is summed here and handed to the models when the
minute closes, except the per-request distributions, which the models see
request by request. Recent and baseline *profiles* (exponentially weighted
per-minute sums) price an alert and split a spend change into its drivers;
the baseline profile stands still while the feature has an incident, so it
stays "normal".
"""

from __future__ import annotations

from array import array
from typing import Any

from detector.anomaly import Anomaly
from detector.monitor import Monitor

PROFILE_FIELDS = ("requests", "cost", "input", "output", "cached", "retries")
RECENT_HALF_LIFE = 5.0  # minutes: "now" for pricing and drivers
BASELINE_HALF_LIFE = 1440.0  # minutes: "normal"
_R = 0.5 ** (1 / RECENT_HALF_LIFE)
_B = 0.5 ** (1 / BASELINE_HALF_LIFE)
_MINUTE, _WEIGHT, _SUMS = 0, 1, 2  # where a Profile keeps what


class Profile:
    """Exponentially weighted per-minute sums; silent minutes count as zero.

    ``weight`` corrects the start-up bias, so a young profile reads as the
    average of the minutes it has seen. Kept in one array of doubles
    (minute, weight, then the sums of :data:`PROFILE_FIELDS`) and updated in
    place: a series holds two, thousands of series are live.

    >>> p = Profile(0.5)
    >>> for minute in range(10):
    ...     p.add(minute, (2.0, 0.1, 100.0, 10.0, 0.0, 0.0))
    >>> round(p.per_minute(0), 6), round(p.mean(2, 0), 6)
    (2.0, 50.0)
    """

    __slots__ = ("a", "decay")

    def __init__(self, decay: float) -> None:
        self.decay = decay
        self.a = array("d", (-1.0, 0.0, *(0.0 for _ in PROFILE_FIELDS)))

    @property
    def minute(self) -> int:
        return int(self.a[_MINUTE])

    @property
    def weight(self) -> float:
        return self.a[_WEIGHT]

    def add(self, minute: int, values: tuple[float, ...]) -> None:
        a = self.a
        last = a[_MINUTE]
        gap = minute - last if last >= 0 else 1
        keep = self.decay ** max(gap, 1)
        fresh = 1 - self.decay
        a[_WEIGHT] = a[_WEIGHT] * keep + fresh
        for i, v in enumerate(values, _SUMS):
            a[i] = a[i] * keep + v * fresh
        a[_MINUTE] = minute

    def per_minute(self, i: int) -> float:
        """Field ``i`` per minute."""
        a = self.a
        return a[_SUMS + i] / a[_WEIGHT] if a[_WEIGHT] > 0 else 0.0

    def mean(self, i: int, per: int) -> float:
        """Field ``i`` per unit of field ``per`` (e.g. input tokens per request)."""
        a = self.a
        return a[_SUMS + i] / a[_SUMS + per] if a[_SUMS + per] > 0 else 0.0

    def to_state(self) -> list[Any]:
        return [self.minute, *self.a[_WEIGHT:]]

    def restore(self, state: list[Any]) -> None:
        if len(state) != len(self.a):
            raise ValueError(f"Profile state: expected {len(self.a)} numbers, got {len(state)}")
        self.a = array("d", [float(v) for v in state])


class ModelSeries:
    """One (team, feature, model): what a minute brought, and the models judging it."""

    __slots__ = (
        "baseline",
        "booked",
        "buf_cost",
        "buf_in",
        "buf_out",
        "buf_ts",
        "cached",
        "cached_sum",
        "category",
        "cost",
        "errors",
        "first_ts",
        "input",
        "input_sum",
        "key",
        "minute",
        "month",
        "month_cost",
        "n",
        "output",
        "per_minute",
        "per_request",
        "recent",
        "retries",
        "tier",
        "unpriced",
    )

    def __init__(self, key: tuple[str | None, ...], tier: str | None, ts: float, category: str) -> None:
        self.key = key
        self.tier = tier
        self.first_ts = ts
        self.minute = int(ts // 60)
        self.category = category
        self.n = self.unpriced = self.retries = self.errors = 0
        self.cost = 0.0
        self.booked = (0, 0.0, 0)  # requests, dollars, unpriced of the open minute already in the ledger
        self.buf_in: list[int] = []  # the open minute's values for the per-request models, and its first time
        self.buf_out: list[int] = []
        self.buf_cost: list[float] = []
        self.buf_ts = ts
        self.input = self.output = self.cached = 0
        self.input_sum = self.cached_sum = 0  # all-time, for the cache share that prices input tokens
        self.month, self.month_cost = "", 0.0
        self.recent, self.baseline = Profile(_R), Profile(_B)
        self.per_request: list[Monitor] = []  # input, output, cost per request: fed each request
        self.per_minute: list[Monitor] = []  # retry, error, cache-hit shares: fed each minute

    def minute_values(self) -> tuple[float, ...]:
        return (self.n, self.cost, self.input, self.output, self.cached, self.retries)

    def clear_minute(self) -> None:
        self.n = self.unpriced = self.retries = self.errors = 0
        self.cost = 0.0
        self.booked = (0, 0.0, 0)
        self.input = self.output = self.cached = 0

    def monitors(self) -> list[Monitor]:
        return self.per_request + self.per_minute

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in SERIES_FIELDS}
        state["key"] = list(self.key)
        state["booked"] = list(self.booked)
        state["recent"] = self.recent.to_state()
        state["baseline"] = self.baseline.to_state()
        state["monitors"] = [m.to_state() for m in self.monitors()]
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Take the sums and profiles of a saved series (monitors are restored by the caller)."""
        for name in SERIES_FIELDS:
            setattr(self, name, state[name])
        self.booked = (int(state["booked"][0]), float(state["booked"][1]), int(state["booked"][2]))
        self.recent.restore(state["recent"])
        self.baseline.restore(state["baseline"])


SERIES_FIELDS = ("tier", "first_ts", "minute", "category", "n", "cost", "unpriced", "input", "output", "cached",
                 "retries", "errors", "input_sum", "cached_sum", "month", "month_cost")


class Incident:
    """The one open alert of a feature: its record, the monitor that raised it, what merged into it."""

    __slots__ = ("expected", "minutes", "monitor", "record", "related", "series", "sums")

    def __init__(self, record: Anomaly, monitor: Monitor, series: ModelSeries | None) -> None:
        self.record = record
        self.monitor = monitor
        self.series = series
        self.related: list[str] = []
        # What each member did while it lasted, and the requests the clock expected:
        # the resolved record splits the whole incident's dollars into drivers from these.
        self.sums: dict[str, list[float]] = {}
        self.expected = 0.0
        self.minutes = 0

    def add_minute(self, model: str | None, values: tuple[float, ...]) -> None:
        sums = self.sums.setdefault(model or "", [0.0] * len(values))
        for i, v in enumerate(values):
            sums[i] += v

    def per_minute(self) -> dict[str, tuple[float, ...]]:
        """Each member's average minute over the incident so far."""
        minutes = max(self.minutes, 1)
        return {model: tuple(v / minutes for v in sums) for model, sums in self.sums.items()}

    def to_state(self) -> dict[str, Any]:
        # Copies: the table holds this value until it is serialised, and the incident goes on changing.
        return {"sums": {k: list(v) for k, v in self.sums.items()}, "expected": self.expected,
                "minutes": self.minutes, "related": list(self.related)}

    def restore(self, state: dict[str, Any]) -> None:
        self.related = list(state["related"])
        self.sums = {k: [float(x) for x in v] for k, v in state["sums"].items()}
        self.expected, self.minutes = float(state["expected"]), int(state["minutes"])


class FeatureSeries:
    """One (team, feature): its models' series, rates against the clock, tier mix, and its incident."""

    __slots__ = ("cost", "incident", "key", "last_resolved", "members", "minute", "n", "rates", "tier_mix", "tiers")

    def __init__(self, key: tuple[str | None, str | None], minute: int) -> None:
        self.key = key
        self.members: dict[str | None, ModelSeries] = {}
        self.minute = minute
        self.n = 0
        self.cost = 0.0
        self.tiers: dict[str, int] = {}
        self.rates: list[Monitor] = []  # request_rate and spend_rate
        self.tier_mix: dict[str, list[Monitor]] = {}
        self.incident: Incident | None = None
        self.last_resolved = 0.0  # event time its last incident ended: a slow test's late echo of it is no news
