"""What the weekly digest says, computed from the history store: numbers only, no rendering.

A FinOps lead reads it top-down: where the money went this week and how that
changed from last week (by cost category and team), what went wrong and
what it cost (anomalies ranked by dollars), what moved (features, models),
what a request costs, tier mix and prompt caching, GPUs paid for and idle,
month-end against budgets, and a short list of what to look at first.
Dollars come from the hourly rollups, so they add up to the events' costs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from detector.anomaly import where
from detector.digest.budgets import BudgetLine, budget_lines
from detector.digest.weeks import parse_week
from detector.events import CATEGORIES
from detector.history.rollup import RollupRow
from detector.history.store import HistoryStore, StoredAnomaly
from detector.rules import RuleSet

DAY_S = 86400
MOVERS = 5


@dataclass(frozen=True, slots=True)
class Change:
    """A figure this week against last week.

    >>> Change("search", 120.0, 100.0).pct
    20.0
    """

    name: str
    now: float
    before: float

    @property
    def delta(self) -> float:
        return self.now - self.before

    @property
    def pct(self) -> float | None:
        """Percent change; None when there was nothing last week to compare with."""
        return None if not self.before else 100.0 * self.delta / self.before


@dataclass(frozen=True, slots=True)
class AnomalyLine:
    """One anomaly of the week, priced: ``excess_usd`` above normal in all, ``leaked_usd`` of it before detection."""

    stored: StoredAnomaly
    excess_usd: float
    leaked_usd: float

    @property
    def id(self) -> str:
        return self.stored.record.id

    @property
    def team(self) -> str:
        return self.stored.team

    @property
    def detect_s(self) -> float:
        return self.stored.detected_ts - self.stored.started_ts

    @property
    def resolve_s(self) -> float | None:
        resolved = self.stored.resolved_ts
        return None if resolved is None else resolved - self.stored.detected_ts


@dataclass(frozen=True, slots=True)
class UnitCost:
    """Cost per request and per 1,000 tokens of one feature (``team/feature``), now and before."""

    feature: str
    per_request: Change
    per_1k_tokens: Change


@dataclass(frozen=True, slots=True)
class GpuLine:
    """Paid GPU time of one GPU model: hours, average utilisation and idle dollars, now and before."""

    gpu_model: str
    hours: Change
    utilisation: Change
    idle_usd: Change
    cost: Change


@dataclass(frozen=True)
class Digest:
    """Everything the weekly digest shows, for one ISO week (``empty`` when the store holds nothing for it)."""

    week: str
    start: float
    end: float
    total: Change
    by_category: list[Change]
    by_team: list[Change]
    anomalies: list[AnomalyLine]
    feature_movers: list[Change]
    model_movers: list[Change]
    unit_costs: list[UnitCost]
    tier_requests: list[Change]  # share of requests per tier
    tier_spend: list[Change]  # share of spend per tier
    cache_hit: Change
    gpus: list[GpuLine]
    budgets: list[BudgetLine]
    look_first: list[str]
    daily_by_category: dict[float, dict[str, float]] = field(default_factory=dict)
    daily_tier_share: dict[float, dict[str, float]] = field(default_factory=dict)
    daily_cache_hit: dict[float, float] = field(default_factory=dict)
    unpriced_requests: int = 0

    @property
    def empty(self) -> bool:
        return self.total.now == 0 and not self.anomalies and not self.daily_by_category


def build_digest(store: HistoryStore, week: str, rules: RuleSet | None = None) -> Digest:
    """The digest of ``week`` (``2026-W47``), compared with the week before.

    >>> from detector.history import HistoryStore
    >>> build_digest(HistoryStore.open("sqlite://"), "2026-W47").empty
    True
    """
    start, end = parse_week(week)
    now_rows, before_rows = store.rollups(start, end), store.rollups(start - 7 * DAY_S, start)
    anomalies = rank_anomalies(store.anomalies(start, end), end)
    month_rows = store.rollups(_month_start(end - 1), end)
    budgets = budget_lines(rules, month_rows, now_rows, end) if rules is not None else []
    llm_now = [r for r in now_rows if r.kind == "llm"]
    llm_before = [r for r in before_rows if r.kind == "llm"]
    digest = Digest(
        week=week,
        start=start,
        end=end,
        total=Change("total", _sum(now_rows, "cost_usd"), _sum(before_rows, "cost_usd")),
        by_category=_changes(now_rows, before_rows, lambda r: r.category, names=CATEGORIES),
        by_team=_changes(now_rows, before_rows, lambda r: r.team or "(untagged)"),
        anomalies=anomalies,
        feature_movers=_movers(llm_now, llm_before, _feature),
        model_movers=_movers(llm_now, llm_before, lambda r: r.model),
        unit_costs=_unit_costs(llm_now, llm_before),
        tier_requests=_shares(llm_now, llm_before, "requests"),
        tier_spend=_shares(llm_now, llm_before, "cost_usd"),
        cache_hit=Change("cache hit", _cache_hit(llm_now), _cache_hit(llm_before)),
        gpus=_gpus(now_rows, before_rows),
        budgets=budgets,
        look_first=[],
        daily_by_category=_daily(now_rows, start),
        daily_tier_share=_daily_tier_share(llm_now, start),
        daily_cache_hit=_daily_cache_hit(llm_now, start),
        unpriced_requests=int(_sum(now_rows, "unpriced")),
    )
    digest.look_first.extend(look_first(digest))
    return digest


def rank_anomalies(stored: Iterable[StoredAnomaly], week_end: float) -> list[AnomalyLine]:
    """Anomalies priced and ranked by dollars, most first.

    A resolved anomaly whose cause was measured over its life counts that
    (``excess_total_usd``); the others, the excess $/h at detection over their
    span (to resolution or week end). What leaked before detection is at the
    detection rate, and never more than the whole.
    """
    lines = []
    for a in stored:
        rate = max(a.record.excess_cost_usd_per_hour, 0.0)
        until = a.resolved_ts if a.resolved_ts is not None else week_end
        whole = rate * max(until - a.started_ts, 0.0) / 3600
        if a.record.excess_total_usd is not None:
            whole = max(a.record.excess_total_usd, 0.0)
        leaked = min(rate * max(a.detected_ts - a.started_ts, 0.0) / 3600, whole)
        lines.append(AnomalyLine(a, whole, leaked))
    return sorted(lines, key=lambda line: (-line.excess_usd, line.stored.detected_ts, line.id))


def look_first(d: Digest) -> list[str]:
    """A handful of plain sentences, most expensive first: where a FinOps lead should start."""
    items: list[tuple[float, str]] = []
    for line in d.anomalies[:2]:
        r = line.stored.record
        items.append((line.excess_usd, f"{where(r.labels)}: {r.metric.replace('_', ' ')} anomaly cost "
                      f"${line.excess_usd:,.2f} above normal (${line.leaked_usd:,.2f} before detection); "
                      f"owner {line.team or 'unknown'}, {r.status}"))
    for b in d.budgets:
        if b.projected_usd > b.monthly_usd:
            items.append((b.projected_usd - b.monthly_usd, f"{b.scope} is on course for ${b.projected_usd:,.0f} "
                          f"this month against a ${b.monthly_usd:,.0f} budget"))
    for c in d.by_team:
        if c.pct is not None and c.pct >= 10 and c.delta >= 1:
            items.append((c.delta, f"team {c.name} spent ${c.now:,.2f}, up {c.pct:.0f}% from last week"))
    idle = sum(g.idle_usd.now for g in d.gpus)
    if idle >= 1:
        items.append((idle, f"${idle:,.2f} of paid GPU time sat idle this week"))
    if d.cache_hit.before and d.cache_hit.before - d.cache_hit.now >= 0.05:
        items.append((0.0, f"prompt cache hits fell from {d.cache_hit.before:.0%} to {d.cache_hit.now:.0%}"))
    for u in d.unit_costs:
        pct = u.per_request.pct
        if pct is not None and pct >= 20:
            items.append((0.0, f"{u.feature} costs {pct:.0f}% more per request than last week"))
    items.sort(key=lambda item: -item[0])
    return [text for _, text in items[:5]]


# -- aggregation helpers -----------------------------------------------------------


def _sum(rows: Iterable[RollupRow], measure: str) -> float:
    return sum(getattr(r, measure) for r in rows)


def _by(rows: Iterable[RollupRow], key: Callable[[RollupRow], str], measure: str = "cost_usd") -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for r in rows:
        out[key(r)] += getattr(r, measure)
    return out


def _changes(now: list[RollupRow], before: list[RollupRow], key: Callable[[RollupRow], str],
             names: Iterable[str] = ()) -> list[Change]:
    a, b = _by(now, key), _by(before, key)
    every = dict.fromkeys([*names, *sorted(a), *sorted(b)])
    return sorted((Change(n, a.get(n, 0.0), b.get(n, 0.0)) for n in every), key=lambda c: (-c.now, c.name))


def _movers(now: list[RollupRow], before: list[RollupRow], key: Callable[[RollupRow], str]) -> list[Change]:
    changes = _changes(now, before, key)
    return sorted(changes, key=lambda c: (-abs(c.delta), c.name))[:MOVERS]


def _feature(r: RollupRow) -> str:
    return f"{r.team or '(untagged)'}/{r.feature or '(none)'}"


def _unit_costs(now: list[RollupRow], before: list[RollupRow]) -> list[UnitCost]:
    def per(rows: list[RollupRow]) -> dict[str, tuple[float, int, int]]:
        out: dict[str, tuple[float, int, int]] = {}
        for r in rows:
            cost, requests, tokens = out.get(_feature(r), (0.0, 0, 0))
            out[_feature(r)] = (cost + r.cost_usd, requests + r.requests, tokens + r.input_tokens + r.output_tokens)
        return out

    a, b = per(now), per(before)
    lines = []
    for name in sorted(a, key=lambda n: -a[n][0]):
        (cost, req, tok), (cost0, req0, tok0) = a[name], b.get(name, (0.0, 0, 0))
        lines.append(UnitCost(name, Change(name, _ratio(cost, req), _ratio(cost0, req0)),
                              Change(name, _ratio(cost * 1000, tok), _ratio(cost0 * 1000, tok0))))
    return lines


def _ratio(top: float, bottom: float) -> float:
    return top / bottom if bottom else 0.0


def _shares(now: list[RollupRow], before: list[RollupRow], measure: str) -> list[Change]:
    a, b = _by(now, lambda r: r.tier or "(unknown)", measure), _by(before, lambda r: r.tier or "(unknown)", measure)
    ta, tb = sum(a.values()), sum(b.values())
    tiers = dict.fromkeys([*sorted(a), *sorted(b)])
    return [Change(t, _ratio(a.get(t, 0.0), ta), _ratio(b.get(t, 0.0), tb)) for t in tiers]


def _cache_hit(rows: list[RollupRow]) -> float:
    return _ratio(_sum(rows, "cached_input_tokens"), _sum(rows, "input_tokens"))


def _gpus(now: list[RollupRow], before: list[RollupRow]) -> list[GpuLine]:
    gpu_now = [r for r in now if r.kind == "gpu"]
    gpu_before = [r for r in before if r.kind == "gpu"]
    models = sorted({r.model for r in gpu_now} | {r.model for r in gpu_before})
    lines = []
    for m in models:
        a = [r for r in gpu_now if r.model == m]
        b = [r for r in gpu_before if r.model == m]

        def change(measure: str, rows_a: list[RollupRow] = a, rows_b: list[RollupRow] = b) -> Change:
            return Change(m, _sum(rows_a, measure), _sum(rows_b, measure))

        util = Change(m, _ratio(_sum(a, "gpu_busy_hours"), _sum(a, "gpu_hours")),
                      _ratio(_sum(b, "gpu_busy_hours"), _sum(b, "gpu_hours")))
        lines.append(GpuLine(m or "(unknown)", change("gpu_hours"), util, change("idle_gpu_usd"), change("cost_usd")))
    return lines


def _daily(rows: list[RollupRow], start: float) -> dict[float, dict[str, float]]:
    out: dict[float, dict[str, float]] = {}
    for r in rows:
        day = start + (r.hour_start - start) // DAY_S * DAY_S
        per = out.setdefault(day, dict.fromkeys(CATEGORIES, 0.0))
        per[r.category] = per.get(r.category, 0.0) + r.cost_usd
    return dict(sorted(out.items()))


def _daily_tier_share(rows: list[RollupRow], start: float) -> dict[float, dict[str, float]]:
    counts: dict[float, dict[str, float]] = {}
    for r in rows:
        day = start + (r.hour_start - start) // DAY_S * DAY_S
        per = counts.setdefault(day, {})
        per[r.tier or "(unknown)"] = per.get(r.tier or "(unknown)", 0.0) + r.requests
    return {day: {t: _ratio(n, sum(per.values())) for t, n in per.items()} for day, per in sorted(counts.items())}


def _daily_cache_hit(rows: list[RollupRow], start: float) -> dict[float, float]:
    days: dict[float, list[RollupRow]] = defaultdict(list)
    for r in rows:
        days[start + (r.hour_start - start) // DAY_S * DAY_S].append(r)
    return {day: _cache_hit(part) for day, part in sorted(days.items())}


def _month_start(ts: float) -> float:
    now = datetime.fromtimestamp(ts, UTC)
    return datetime(now.year, now.month, 1, tzinfo=UTC).timestamp()
