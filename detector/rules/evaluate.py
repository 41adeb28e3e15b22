"""Threshold and budget rules over a stream of events, in event time.

Anomaly rules belong to the engine's online models; every rule with a
``threshold`` or a ``budget`` is evaluated here. Per event the work is one
dictionary lookup: the rules that apply to a series (precedence resolved by
:meth:`RuleSet.for_series`) are bound once per distinct label set and cached
as a tuple of (state, metric), which is empty, and so free, for the series
no threshold or budget rule selects. States are judged once per minute of
event time: when an event opens a new minute for its state, and for every
state in :meth:`RuleEvaluator.advance` (so a series that went quiet still
resolves, and a rate that dropped to zero still fires).

``tier_mix`` shares need a denominator the series itself does not hold: the
requests of every tier. A tier_mix threshold rule therefore also counts,
per group of its ``by`` labels without ``tier``, every request its scope
selects apart from its ``tier`` matchers; the share of a series is its
requests over that count.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Any

from detector.anomaly import Anomaly
from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.pricing import PriceTable
from detector.rules.budget import BudgetState
from detector.rules.catalog import TAG_PREFIX
from detector.rules.observe import LLM_METRICS, event_labels, metric_of_sample, point
from detector.rules.records import Loudness, resolved
from detector.rules.ruleset import Rule, RuleSet
from detector.rules.threshold import ThresholdState
from detector.rules.window_stats import WindowStats

log = logging.getLogger(__name__)
CACHE_LIMIT = 200_000
JUDGED = ("threshold", "budget")

DENOMINATOR = "requests of every tier"
State = ThresholdState | BudgetState
Binding = tuple[State | WindowStats, str]  # (state of one rule over one group, the metric the event feeds it),
# or (a tier_mix denominator, DENOMINATOR)


class RuleEvaluator:
    """Every threshold and budget rule of a :class:`RuleSet`, fed events in order.

    >>> from detector.rules.loader import load_data
    >>> rules = load_data({"groups": [{"name": "g", "rules": [{"id": "slow", "alert": "TooManyRequests",
    ...     "expr": {"metric": "request_rate", "by": ["team"],
    ...              "threshold": {"statistic": "rate", "window": "5m", "above": 20}}}]}]})
    >>> ev = RuleEvaluator(rules, PriceTable.packaged())
    >>> out = []
    >>> for second in range(0, 900, 2):  # 30 requests a minute
    ...     out += ev.observe(LlmRequest(ts=1.8e9 + second, model="gpt-4o", input_tokens=10,
    ...                                  output_tokens=1, team="a"), None)
    >>> [(a.rule, a.status, a.observed, a.labels) for a in out]
    [('slow', 'firing', 30.0, {'team': 'a'})]
    >>> [a.status for a in ev.advance(1.8e9 + 1200)]  # traffic stopped
    ['resolved']
    """

    def __init__(self, rules: RuleSet, prices: PriceTable, *, loudness: Loudness | None = None) -> None:
        self.prices = prices
        self.loudness = loudness or Loudness()
        self.states: dict[Hashable, State] = {}
        self.denominators: dict[Hashable, WindowStats] = {}
        self._cache: dict[Hashable, tuple[Binding, ...]] = {}
        self._advanced = -1
        self.fired = 0
        self.resolved = 0
        self.rules = rules
        self._configure(rules)

    # -- rules in force ------------------------------------------------------
    def _configure(self, rules: RuleSet) -> None:
        judged = [r for r in rules.rules if r.expr.kind in JUDGED]
        self._judged_ids = {(r.id, r.expr) for r in judged}
        self._llm_metrics = tuple(m for m in LLM_METRICS if any(r.expr.metric == m for r in judged))
        self._sample_metrics = frozenset(r.expr.metric for r in judged) - set(LLM_METRICS)
        self._tier_rules = tuple(r for r in judged if r.expr.metric == "tier_mix")
        names = {n for r in judged for n in (*r.expr.by, *(m.name for m in r.scope))}
        self._tags = tuple(sorted(n.removeprefix(TAG_PREFIX) for n in names if n.startswith(TAG_PREFIX)))
        self._cache.clear()

    def use(self, rules: RuleSet, now: float) -> list[Anomaly]:
        """Switch to reloaded rules; state is kept for every rule whose id and expr did not change.

        Alerts of rules that are gone (removed, or their expr changed) are resolved at ``now``.
        """
        self.rules = rules
        self._configure(rules)
        out = []
        for key in [k for k, s in self.states.items() if (s.rule.id, s.rule.expr) not in self._judged_ids]:
            state = self.states.pop(key)
            out += self._close(state, now)
        return out

    def _close(self, state: State, now: float) -> list[Anomaly]:
        alerts = [state.alert] if isinstance(state, ThresholdState) else [state.projected, state.spent]
        found = [resolved(a, state.rule, now, "the rule was changed or removed") for a in alerts if a is not None]
        self.resolved += len(found)
        return found

    # -- the stream ----------------------------------------------------------
    def observe(self, ev: Event, cost: float | None) -> list[Anomaly]:
        """Count one event (``cost``: its price, None when unpriced); records of alerts it settled."""
        kind = type(ev)
        if kind is LlmRequest:
            if not self._llm_metrics:
                return []
            key: Hashable = (ev.team, ev.product, ev.feature, ev.cost_center, ev.cohort, ev.category, ev.model,
                             ev.provider, ev.tier, self._tag_key(ev))
        else:
            metric = metric_of_sample(ev)
            if metric not in self._sample_metrics:
                return []
            key = (metric, *[getattr(ev, n, None) for n in _SAMPLE_KEY], self._tag_key(ev))
        bindings = self._cache.get(key)
        if bindings is None:
            bindings = self._bind(ev, key)
        if not bindings:
            return []
        return self._feed(ev, cost, bindings)

    def _tag_key(self, ev: Event) -> Hashable:
        tags = ev.tags
        if not self._tags or not tags:
            return None
        return tuple(tags.get(n) for n in self._tags)

    def _feed(self, ev: Event, cost: float | None, bindings: tuple[Binding, ...]) -> list[Anomaly]:
        out: list[Anomaly] = []
        ts = ev.ts
        minute = int(ts // 60)
        dollars = self._dollars(ev, cost)
        for state, metric in bindings:
            if metric is DENOMINATOR:
                assert isinstance(state, WindowStats)
                state.add(ts, 1.0)
                continue
            assert not isinstance(state, WindowStats)
            if minute > state.judged:
                out += self._judge(state, minute)
            if isinstance(state, BudgetState):
                if dollars is not None:
                    state.add(ts, dollars)
                continue
            p = point(metric, ev, cost, state.labels)
            if p is not None:
                state.add(ts, p, dollars, self._hourly(ev))
        return out

    def _dollars(self, ev: Event, cost: float | None) -> float | None:
        if type(ev) is UsageSample:
            return ev.value if ev.unit == "usd" else None
        return cost

    def _hourly(self, ev: Event) -> float | None:
        if type(ev) is not GpuSample:
            return None
        if ev.hourly_cost_usd is not None:
            return ev.hourly_cost_usd
        return self.prices.gpu_hourly(ev.gpu_model) if ev.gpu_model else None

    def advance(self, ts: float) -> list[Anomaly]:
        """Judge every state up to the minute of ``ts``; call it as event time passes (once a minute is enough)."""
        minute = int(ts // 60)
        if minute <= self._advanced:
            return []
        self._advanced = minute
        out: list[Anomaly] = []
        for state in self.states.values():
            if minute > state.judged:
                out += self._judge(state, minute)
        return out

    def _judge(self, state: State, minute: int) -> list[Anomaly]:
        state.judged = minute
        now = minute * 60.0
        if isinstance(state, BudgetState):
            found = state.evaluate(now, self.loudness)
        else:
            record = state.evaluate(now, self.loudness)
            found = [] if record is None else [record]
        for record in found:
            if record.status == "firing":
                self.fired += 1
            else:
                self.resolved += 1
        return found

    def active(self) -> list[Anomaly]:
        """The alerts firing now."""
        out: list[Anomaly] = []
        for state in self.states.values():
            alerts = [state.alert] if isinstance(state, ThresholdState) else [state.projected, state.spent]
            out += [a for a in alerts if a is not None]
        return out

    # -- binding a series to its rules ---------------------------------------
    def _bind(self, ev: Event, key: Hashable) -> tuple[Binding, ...]:
        if len(self._cache) >= CACHE_LIMIT:
            self._cache.clear()
        tier = None
        if type(ev) is LlmRequest:
            tier = ev.tier or self.prices.tier(ev.model)
        labels = event_labels(ev, tier, self._tags)
        sample_metric = metric_of_sample(ev)
        metrics = self._llm_metrics if sample_metric is None else (sample_metric,)
        bindings: list[Binding] = []
        for metric in metrics:
            for rule in self.rules.for_series(labels, metric):
                if rule.expr.kind in JUDGED:
                    bindings.append((self._state(rule, labels, ev.ts), metric))
        for rule in self._tier_rules if sample_metric is None else ():
            if all(m.matches(labels) for m in rule.scope if m.name != "tier"):  # the scope, tier aside
                bindings.insert(0, (self._denominator(rule, labels), DENOMINATOR))
        found = tuple(bindings)
        self._cache[key] = found
        return found

    def _state(self, rule: Rule, labels: dict[str, str], ts: float) -> State:
        group = {name: labels[name] for name in rule.expr.by if name in labels}
        key = (rule.id, rule.expr, tuple(group.get(name) for name in rule.expr.by))
        state = self.states.get(key)
        if state is None:
            state = ThresholdState(rule, group, ts) if rule.expr.threshold else BudgetState(rule, group)
            state.judged = int(ts // 60)
            self.states[key] = state
        state.rule = rule  # a reload may have changed its labels, for or annotations
        if isinstance(state, ThresholdState) and rule.expr.metric == "tier_mix":
            state.denominator = self._denominator(rule, labels)
        return state

    def _denominator(self, rule: Rule, labels: dict[str, str]) -> WindowStats:
        assert rule.expr.threshold is not None
        key = (rule.id, rule.expr, tuple(labels.get(n) for n in rule.expr.by if n != "tier"))
        window = self.denominators.get(key)
        if window is None:
            window = self.denominators[key] = WindowStats(rule.expr.threshold.window)
        return window

    def describe(self) -> dict[str, Any]:
        """Figures for a health endpoint: states kept, alerts firing, records so far."""
        return {"states": len(self.states), "firing": len(self.active()), "fired": self.fired,
                "resolved": self.resolved, "cached_series": len(self._cache)}


_SAMPLE_KEY = ("team", "product", "feature", "cost_center", "cohort", "category", "cluster", "node", "gpu",
               "gpu_model")
