"""What the engine keeps per LLM series, and per feature above them.

A :class:`ModelSeries` is one (team, feature, model): the distributions of
tokens and dollars per request and the shares of retries, errors and cache
hits. A :class:`FeatureSeries` is one (team, feature) with all its models:
request and spend rates against the clock, and the tier mix (traffic moving
between a cheap and a premium model keeps the feature's volume flat, so only
the feature sees it; each pricier model's share is kept in its own series).
An incident is kept per feature, which is what lets one cause page once.
Both keep their models packed into their own array
(:mod:`detector.packed_monitors`): no object per model.

Everything a minute brings is summed here and handed to the models when the
minute closes; the per-request distributions get the minute's requests then
too, and a busy series' every ten requests, so they can judge its minute
before it ends (see ``LogLevelShift.peek``). Recent and baseline *profiles* (exponentially weighted
per-minute sums) price an alert and split a spend change into its drivers;
the baseline profile stands still while the feature has an incident, so it
stays "normal".
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from detector.anomaly import Anomaly
from detector.ledger import SpendLedger
from detector.monitor import Monitor, monitor_state
from detector.packed_monitors import EMPTY, PackedMonitor, monitors_of, pack

PROFILE_FIELDS = ("requests", "cost", "input", "output", "cached", "retries")
RECENT_HALF_LIFE = 5.0  # minutes: "now" for pricing and drivers
BASELINE_HALF_LIFE = 1440.0  # minutes: "normal"
_R = 0.5 ** (1 / RECENT_HALF_LIFE)
_B = 0.5 ** (1 / BASELINE_HALF_LIFE)
_MINUTE, _WEIGHT, _SUMS = 0, 1, 2  # where a profile keeps what, from its start
PROFILE_SIZE = _SUMS + len(PROFILE_FIELDS)
_NEW_PROFILE = (-1.0, 0.0, *(0.0 for _ in PROFILE_FIELDS))


def _add(a: array[float], start: int, decay: float, minute: int, values: tuple[float, ...]) -> None:
    """Fold a minute's sums into the profile at ``start`` of ``a``, silent minutes since the last as zeros."""
    last = a[start]
    gap = minute - last if last >= 0 else 1
    keep = decay ** max(gap, 1)
    fresh = 1 - decay
    a[start + _WEIGHT] = a[start + _WEIGHT] * keep + fresh
    for i, v in enumerate(values, start + _SUMS):
        a[i] = a[i] * keep + v * fresh
    a[start] = minute


class Profile:
    """Exponentially weighted per-minute sums; silent minutes count as zero.

    ``weight`` corrects the start-up bias, so a young profile reads as the
    average of the minutes it has seen. The numbers (minute, weight, then
    the sums of :data:`PROFILE_FIELDS`) live in an array of doubles from
    ``start`` on: a series keeps both its profiles in its own array, and
    hands out a :class:`Profile` over it to whoever reads them.

    >>> p = Profile(0.5)
    >>> for minute in range(10):
    ...     p.add(minute, (2.0, 0.1, 100.0, 10.0, 0.0, 0.0))
    >>> round(p.per_minute(0), 6), round(p.mean(2, 0), 6)
    (2.0, 50.0)
    """

    __slots__ = ("a", "decay", "start")

    def __init__(self, decay: float, a: array[float] | None = None, start: int = 0) -> None:
        self.decay = decay
        self.a = array("d", _NEW_PROFILE) if a is None else a
        self.start = start

    @property
    def minute(self) -> int:
        return int(self.a[self.start + _MINUTE])

    @property
    def weight(self) -> float:
        return self.a[self.start + _WEIGHT]

    def add(self, minute: int, values: tuple[float, ...]) -> None:
        _add(self.a, self.start, self.decay, minute, values)

    def per_minute(self, i: int) -> float:
        """Field ``i`` per minute."""
        a, start = self.a, self.start
        return a[start + _SUMS + i] / a[start + _WEIGHT] if a[start + _WEIGHT] > 0 else 0.0

    def mean(self, i: int, per: int) -> float:
        """Field ``i`` per unit of field ``per`` (e.g. input tokens per request)."""
        sums = self.start + _SUMS
        a = self.a
        return a[sums + i] / a[sums + per] if a[sums + per] > 0 else 0.0

    def to_state(self) -> list[Any]:
        a, start = self.a, self.start
        return [int(a[start]), *a[start + _WEIGHT : start + PROFILE_SIZE]]

    def restore(self, state: list[Any]) -> None:
        if len(state) != PROFILE_SIZE:
            raise ValueError(f"Profile state: expected {PROFILE_SIZE} numbers, got {len(state)}")
        self.a[self.start : self.start + PROFILE_SIZE] = array("d", [float(v) for v in state])


def month_of(ts: float) -> str:
    """The calendar month (UTC) holding ``ts``, as a series names the month its dollars are booked in.

    >>> month_of(1_795_000_000.0)
    '2026-11'
    """
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m")


class Months:
    """The calendar month (UTC) of event times, worked out once a month rather than at every minute's booking.

    >>> months = Months()
    >>> months.of(1_795_000_000.0), months.of(1_795_000_060.0), months.end - months.start
    ('2026-11', '2026-11', 2592000.0)
    """

    __slots__ = ("end", "name", "start")

    def __init__(self) -> None:
        self.name, self.start, self.end = "", math.inf, -math.inf

    def of(self, ts: float) -> str:
        if not self.start <= ts < self.end:
            now = datetime.fromtimestamp(ts, UTC)
            start = datetime(now.year, now.month, 1, tzinfo=UTC)
            end = datetime(now.year + now.month // 12, now.month % 12 + 1, 1, tzinfo=UTC)
            self.name, self.start, self.end = month_of(ts), start.timestamp(), end.timestamp()
        return self.name


# A series' cold numbers, after its two profiles, in its one array of doubles (a series is kept per
# (team, feature, model), thousands of times over, and a float object costs 24 bytes, an array 80).
_RECENT, _BASELINE = 0, PROFILE_SIZE
FIRST_TS, BUF_TS, INPUT_SUM, CACHED_SUM, MONTH_COST, BOOKED_N, BOOKED_COST, BOOKED_UNPRICED = range(
    2 * PROFILE_SIZE, 2 * PROFILE_SIZE + 8)
_SIZE = BOOKED_UNPRICED + 1


class ModelSeries:
    """One (team, feature, model): what a minute brought, and the models judging it.

    The open minute's counts, touched by every request, are slots; what
    changes once a minute (both profiles, all-time sums, the month's
    dollars, what the ledger already has) lives in one array ``a``, and
    its models' numbers after it.
    """

    __slots__ = (
        "a",
        "buf",
        "cached",
        "category",
        "cost",
        "errors",
        "feature",
        "input",
        "key",
        "layout",
        "minute",
        "month",
        "n",
        "output",
        "retries",
        "tier",
        "unpriced",
        "x",
    )

    def __init__(self, key: tuple[str | None, ...], tier: str | None, ts: float, category: str,
                 feature: FeatureSeries) -> None:
        self.key = key
        self.feature = feature  # the feature it belongs to: found once here rather than per request by key
        self.tier = tier
        self.minute = int(ts // 60)
        self.category = category
        self.n = self.unpriced = self.retries = self.errors = 0
        self.cost = 0.0
        # The open minute's (input tokens, output tokens, micro-dollars or NaN) per request for the
        # per-request models (their first time is a[BUF_TS]); an empty tuple between minutes.
        self.buf: array[float] | tuple[()] = ()
        self.input = self.output = self.cached = 0
        self.month = ""
        a = self.a = array("d", [0.0] * _SIZE)
        a[_RECENT], a[_BASELINE] = -1.0, -1.0
        a[FIRST_TS] = a[BUF_TS] = ts
        # Its monitors' numbers follow its own in ``a``; their runs and shifts are in ``x`` (packed_monitors).
        self.layout = EMPTY
        self.x: list[Any] = []

    def set_monitors(self, per_request: Sequence[Monitor], per_minute: Sequence[Monitor],
                     tier_mix: Sequence[Monitor] = ()) -> None:
        """Take the monitors its rules ask for (new models, their state included), packed into its array."""
        pack(self, (per_request, per_minute, tier_mix))

    @property
    def per_request(self) -> tuple[PackedMonitor, ...]:
        """Input, output and cost per request (and their slow creep): fed each request."""
        return monitors_of(self, 0, self.layout.ends[0])

    @property
    def tier_mix(self) -> tuple[PackedMonitor, ...]:
        """Its share of its feature's requests, if its tier is a pricier one: fed by the feature each minute."""
        ends = self.layout.ends
        return monitors_of(self, ends[1], ends[2])

    @property
    def first_ts(self) -> float:
        """Event time of the series' first request."""
        return self.a[FIRST_TS]

    @property
    def input_sum(self) -> int:
        """All-time input tokens, for the cache share that prices them."""
        return int(self.a[INPUT_SUM])

    @property
    def cached_sum(self) -> int:
        """All-time cached input tokens."""
        return int(self.a[CACHED_SUM])

    @property
    def month_cost(self) -> float:
        """Dollars booked in ``month``."""
        return self.a[MONTH_COST]

    @property
    def recent(self) -> Profile:
        """The last ~5 minutes: "now", for pricing and drivers."""
        return Profile(_R, self.a, _RECENT)

    @property
    def baseline(self) -> Profile:
        """About a day, standing still while the feature has an incident: "normal"."""
        return Profile(_B, self.a, _BASELINE)

    def add_minute(self, minute: int, values: tuple[float, ...], baseline: bool) -> None:
        """Fold a closed minute into the recent profile, and into the baseline unless it stands still."""
        a = self.a
        _add(a, _RECENT, _R, minute, values)
        if baseline:
            _add(a, _BASELINE, _B, minute, values)
        a[INPUT_SUM] += self.input
        a[CACHED_SUM] += self.cached

    def month_to_date(self, month: str) -> float:
        """Dollars spent in ``month`` (``YYYY-MM``) so far, the open minute's included.

        Whatever part of the open minute is booked already (a worker books it
        when it saves its state, replay when the minute closes) is counted
        once either way, so a figure priced mid-minute is the same in both.
        """
        a = self.a
        return (a[MONTH_COST] if self.month == month else 0.0) + self.cost - a[BOOKED_COST]

    def book(self, ledger: SpendLedger, months: Months) -> None:
        """Book what the open minute holds beyond what is booked already: into its month, and into ``ledger``.

        Replay books a minute when it closes, a worker also when it saves its
        state mid-minute; the booked numbers make the two add up the same.
        """
        a = self.a
        n0 = int(a[BOOKED_N])
        if self.n == n0:
            return
        cost0, unpriced0 = a[BOOKED_COST], int(a[BOOKED_UNPRICED])
        month = months.of(self.minute * 60.0)
        if self.month != month:
            self.month, a[MONTH_COST] = month, 0.0
        a[MONTH_COST] += self.cost - cost0
        team, _, model = self.key
        ledger.add_requests(self.category, team, model or "", self.n - n0, self.cost - cost0,
                            self.unpriced - unpriced0)
        a[BOOKED_N], a[BOOKED_COST], a[BOOKED_UNPRICED] = self.n, self.cost, self.unpriced

    def minute_values(self) -> tuple[float, ...]:
        return (self.n, self.cost, self.input, self.output, self.cached, self.retries)

    def clear_minute(self) -> None:
        self.n = self.unpriced = self.retries = self.errors = 0
        self.cost = 0.0
        a = self.a
        a[BOOKED_N] = a[BOOKED_COST] = a[BOOKED_UNPRICED] = 0.0
        self.input = self.output = self.cached = 0

    def monitors(self) -> tuple[PackedMonitor, ...]:
        """Its own monitors (its share of the feature's requests, the feature's, apart)."""
        return monitors_of(self, 0, self.layout.ends[1])

    def to_state(self) -> dict[str, Any]:
        state: dict[str, Any] = {name: getattr(self, name) for name in SERIES_FIELDS}
        a = self.a
        state["key"] = list(self.key)
        state["booked"] = [int(a[BOOKED_N]), a[BOOKED_COST], int(a[BOOKED_UNPRICED])]
        state["recent"] = self.recent.to_state()
        state["baseline"] = self.baseline.to_state()
        state["monitors"] = [monitor_state(m) for m in self.monitors()]
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """Take the sums and profiles of a saved series (monitors are restored by the caller)."""
        for name in SERIES_FIELDS:
            if name not in _PACKED_FIELDS:
                setattr(self, name, state[name])
        a = self.a
        for name, index in _PACKED_FIELDS.items():
            a[index] = float(state[name])
        a[BOOKED_N], a[BOOKED_COST], a[BOOKED_UNPRICED] = (float(v) for v in state["booked"])
        self.recent.restore(state["recent"])
        self.baseline.restore(state["baseline"])


SERIES_FIELDS = ("tier", "first_ts", "minute", "category", "n", "cost", "unpriced", "input", "output", "cached",
                 "retries", "errors", "input_sum", "cached_sum", "month", "month_cost")
_PACKED_FIELDS = {"first_ts": FIRST_TS, "input_sum": INPUT_SUM, "cached_sum": CACHED_SUM, "month_cost": MONTH_COST}


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

    __slots__ = ("a", "cost", "incident", "key", "last_resolved", "layout", "members", "minute", "n", "tiers", "x")

    def __init__(self, key: tuple[str | None, str | None], minute: int) -> None:
        self.key = key
        self.members: dict[str | None, ModelSeries] = {}
        self.minute = minute
        self.n = 0
        self.cost = 0.0
        self.tiers: dict[str, int] = {}
        self.a = array("d")  # its rate monitors' numbers; their runs in ``x`` (packed_monitors)
        self.x: list[Any] = []
        self.layout = EMPTY
        self.incident: Incident | None = None
        self.last_resolved = 0.0  # event time its last incident ended: a slow test's late echo of it is no news

    def set_rates(self, rates: Sequence[Monitor]) -> None:
        """Take the rate monitors its rules ask for (new models, their state included), packed into its array."""
        pack(self, (rates,))

    @property
    def rates(self) -> tuple[PackedMonitor, ...]:
        """Its request and spend rates against the clock."""
        return monitors_of(self)

    @property
    def tier_mix(self) -> dict[str, tuple[PackedMonitor, ...]]:
        """Each pricier member's share of the feature's requests, by model: kept in the member's array."""
        return {model: s.tier_mix for model, s in self.members.items() if model is not None and s.tier_mix}

    def forget(self) -> None:
        """Let go of its series and incident once the engine drops the feature.

        Each series points back at its feature, so without this a dropped
        feature and its series would wait for Python's cyclic collector
        instead of being freed at once.
        """
        self.members.clear()
        self.incident = None
