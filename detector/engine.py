"""Event → series → models → anomaly records; pure and in event time.

The engine is the one place detection happens: ``spendwatch replay``, the
demo, the tests and the stream worker all feed it events in order and collect
the records it returns. It reads no clock: "now" is the timestamp of the
event being processed, so a replay gives exactly the alerts the live stream
gave.

Per (team, feature, model) it watches tokens and dollars per request (request
by request) and the retry, error and cache-hit shares (minute by minute); per
(team, feature) the request and spend rates against the clock and the tier
mix. One cause pages once: the first monitor of a feature to fire opens the
feature's incident, later firings in that feature while it is open are
merged into it (and named in its ``related``), and a derived metric (cost per
request, spend rate) waits a few minutes for a cause to explain it before it
pages on its own.

State for the stream worker is exported and imported per *partition key*
(a feature's, or a team's when a rule adds up a whole team; see
:func:`detector.engine_state.group_key`), which is what the stream
repartitions by.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import unquote

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine_state import (
    export_features,
    feature_of_group,
    group_key,
    groups_by_feature,
    import_features,
    llm_group,
)
from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.findings import MICRO
from detector.incidents import Incidents
from detector.ledger import SpendLedger
from detector.llm_series import BUF_TS, FeatureSeries, ModelSeries, Months
from detector.models.level_shift import SHIFTED
from detector.models.packed import load, put
from detector.monitor import Monitor, monitors_for
from detector.packed_monitors import PackedMonitor
from detector.pricing import PriceTable
from detector.rules.evaluate import RuleEvaluator
from detector.rules.records import Loudness
from detector.rules.ruleset import RuleSet
from detector.samples import SampleBook
from detector.series import labels_of

INPUT, OUTPUT = "input_tokens_per_request", "output_tokens_per_request"
PER_REQUEST = frozenset({INPUT, OUTPUT, "cost_per_request"})  # models that see each request, not each minute
MODEL_METRICS = ("input_tokens_per_request", "output_tokens_per_request", "cost_per_request",
                 "retry_rate", "error_rate", "cache_hit_rate")
FEATURE_METRICS = ("request_rate", "spend_rate")
WATCHED_TIERS = ("premium", "standard")  # traffic moving *to* models of these tiers costs money
EVICT_SHARE = 0.1  # of max_series, evicted at once when full, so eviction is rare
PEEK_EVERY = 10  # a series' open minute is judged early every this many requests (busy series only)
NAN = math.nan  # the cost of an unpriced request in a series' buffer


class Engine:
    """Online detection over a stream of decoded events.

    >>> engine = Engine(PriceTable.packaged())
    >>> engine.process(LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=900, output_tokens=80, team="a"))
    []
    >>> engine.series_count, round(engine.ledger.total(), 6)
    (1, 0.00305)
    """

    def __init__(self, prices: PriceTable, settings: Settings | None = None, rules: RuleSet | None = None) -> None:
        self.prices = prices
        self.settings = settings or Settings()
        self.rules = rules
        self._ledger = SpendLedger()
        self.series: dict[tuple[str | None, ...], ModelSeries] = {}
        self.features: dict[tuple[str | None, str | None], FeatureSeries] = {}
        self.watermark = -math.inf
        self._months = Months()
        self._touched: set[str] = set()  # partition keys of samples whose state changed
        self._touched_features: set[tuple[str | None, str | None]] = set()
        self.by_feature = groups_by_feature(rules)
        self.samples = SampleBook(prices)
        self.incidents = Incidents(prices, self.settings)
        self.evicted = 0
        self.evaluator = self._evaluator(rules)

    def _evaluator(self, rules: RuleSet | None) -> RuleEvaluator | None:
        """Thresholds and budgets are judged beside the models, when the rules have any."""
        if rules is None or not any(r.expr.anomaly is None for r in rules.rules):
            return None
        loudness = Loudness(self.settings.critical_usd_per_hour, self.settings.warning_usd_per_hour)
        return RuleEvaluator(rules, self.prices, loudness=loudness)

    # -- public -----------------------------------------------------------------
    @property
    def fired(self) -> int:
        return self.incidents.fired

    @property
    def resolved(self) -> int:
        return self.incidents.resolved

    @property
    def merged(self) -> int:
        return self.incidents.merged

    @property
    def series_count(self) -> int:
        return len(self.series)

    @property
    def ledger(self) -> SpendLedger:
        """Spend so far, every open minute included."""
        for s in self.series.values():
            s.book(self._ledger, self._months)
        return self._ledger

    def process(self, ev: Event) -> list[Anomaly]:
        """Feed one event; return the records (firing or resolved) it caused."""
        return self.process_many((ev,))

    def process_many(
        self, events: Iterable[Event], on_error: Callable[[Event, Exception], None] | None = None
    ) -> list[Anomaly]:
        """Feed events in order; return the records they caused, in order.

        One loop for the batch, because this is the hot path: per request
        only sums grow and the per-request models see one value each; the
        rest happens when a minute closes. An event that raises stops the
        batch, unless ``on_error`` takes it (the stream worker dead-letters
        it and goes on with the next).
        """
        out: list[Anomaly] = []
        series, cost_of, touched, evaluator = self.series, self.prices.cost, self._touched_features, self.evaluator
        watermark = self.watermark
        for ev in events:
            try:
                ts = ev.ts
                if ts > watermark:
                    watermark = ts
                if type(ev) is not LlmRequest:
                    self._sample(ev, out)
                    if evaluator is not None:
                        out += evaluator.advance(ts)
                        out += evaluator.observe(ev, None)
                    continue
                key = (ev.team, ev.feature, ev.model)
                s = series.get(key)
                if s is None:
                    s = self._new_series(key, ev)
                f = s.feature
                touched.add(f.key)
                minute = int(ts // 60)
                if minute > s.minute or ev.category != s.category:
                    self._close_minute(s, f, out, ts if minute > s.minute else None)
                    s.minute = minute
                    s.category = ev.category
                if minute > f.minute:
                    self._close_feature_minute(f, out)
                    f.minute = minute
                cost = cost_of(ev)
                s.n += 1
                f.n += 1
                if cost is None:
                    s.unpriced += 1
                else:
                    s.cost += cost
                    f.cost += cost
                tokens = ev.input_tokens
                s.input += tokens
                s.output += ev.output_tokens
                cached = ev.cached_input_tokens
                s.cached += cached
                if ev.attempt > 1:
                    s.retries += 1
                if ev.status != "ok":
                    s.errors += 1
                if s.tier in WATCHED_TIERS:
                    model_name = ev.model
                    f.tiers[model_name] = f.tiers.get(model_name, 0) + 1
                # The per-request models get the minute's values when it closes, or every PEEK_EVERY requests.
                buf = s.buf
                if not buf:
                    s.a[BUF_TS] = ts
                    buf = s.buf = array("d")
                buf.extend((tokens, ev.output_tokens, NAN if cost is None else cost * MICRO))
                if s.n % PEEK_EVERY == 0:
                    self._peek(s, f, out, ts)
                if evaluator is not None:
                    out += evaluator.advance(ts)
                    out += evaluator.observe(ev, cost)
            except Exception as exc:  # the caller decides: dead-letter the event, or stop
                if on_error is None:
                    self.watermark = watermark
                    raise
                on_error(ev, exc)
        self.watermark = watermark
        return out

    def advance(self, ts: float) -> list[Anomaly]:
        """Let event time pass without events: quiet threshold series resolve, dropped rates fire."""
        return self.evaluator.advance(ts) if self.evaluator is not None else []

    def use_rules(self, rules: RuleSet, now: float) -> list[Anomaly]:
        """Take new rules (hot reload): every series keeps what it learned under rule ids that stay."""
        self.rules = rules
        self.by_feature = groups_by_feature(rules)
        for fkey in list(self.features):
            key = llm_group(fkey[0], fkey[1], by_feature=True)
            self.import_group(key, self.export_group(key))
        if self.evaluator is None:
            self.evaluator = self._evaluator(rules)
            return []
        return self.evaluator.use(rules, now)

    # -- state, for the stream worker ------------------------------------------
    def partition_key(self, ev: Event) -> str:
        """The key a stream must repartition by under the rules in force: series judged together share it.

        >>> engine = Engine(PriceTable.packaged())
        >>> engine.partition_key(LlmRequest(ts=0, model="m", input_tokens=1, output_tokens=1, team="search"))
        'llm:search/'
        """
        return group_key(ev, self.by_feature)

    def take_touched(self) -> set[str]:
        """Partition keys whose state changed since the last call."""
        touched, self._touched = self._touched, set()
        by_feature = self.by_feature
        touched.update(llm_group(team, feature, by_feature) for team, feature in self._touched_features)
        self._touched_features = set()
        return touched

    def has_group(self, key: str) -> bool:
        return any(True for _ in self._features_of(key)) or key in self.samples

    def export_group(self, key: str) -> dict[str, Any]:
        """JSON-safe state of every series under a partition key (no pickle)."""
        for f in self._features_of(key):
            for s in f.members.values():
                s.book(self._ledger, self._months)
                self._feed_requests(s, f, [], None)  # the open minute's values travel in the models' sums
        samples = self.samples.export(key)
        return {"version": 1, "features": export_features(list(self._features_of(key))), "samples": samples}

    def import_group(self, key: str, state: dict[str, Any]) -> None:
        """Restore a partition key's series (after a restart or a rebalance), replacing what is here."""
        self.drop_group(key)
        for f in import_features(state["features"], self._new_monitors):
            self.features[f.key] = f
            for s in f.members.values():
                self.series[s.key] = s
        self.samples.restore(key, state.get("samples", {}))

    def drop_group(self, key: str) -> None:
        """Forget a partition key's series (its partition moved to another worker)."""
        for f in list(self._features_of(key)):
            for s in f.members.values():
                self.series.pop(s.key, None)
            del self.features[f.key]
            f.forget()
        self.samples.drop(key)

    def _features_of(self, key: str) -> Iterable[FeatureSeries]:
        """The features under a partition key: one (or none) for a feature's key, all a team's for a team's."""
        if not key.startswith("llm:"):
            return ()
        names = feature_of_group(key)
        if names is not None:  # a name and None share a key, as "" does in the team's key
            team, feature = names
            found = [self.features.get((t, f)) for t in {team, team or None} for f in {feature, feature or None}]
            return [f for f in found if f is not None]
        team = unquote(key[4:]) or None
        return (f for k, f in list(self.features.items()) if (k[0] or None) == team)

    # -- series -------------------------------------------------------------------
    def _new_series(self, key: tuple[str | None, ...], ev: LlmRequest) -> ModelSeries:
        if len(self.series) >= self.settings.max_series:
            self._evict()
        fkey = key[:2]
        f = self.features.get(fkey)
        if f is None:
            f = self.features[fkey] = FeatureSeries(fkey, int(ev.ts // 60))
            self._new_feature_monitors(f)
        s = ModelSeries(key, ev.tier or self.prices.tier(ev.model), ev.ts, ev.category, f)
        self._new_monitors(s)
        f.members[key[-1]] = s
        self.series[key] = s
        return s

    def _new_monitors(self, s: ModelSeries | FeatureSeries) -> None:
        """Give a series the monitors its rules (or the defaults) ask for."""
        if isinstance(s, FeatureSeries):
            self._new_feature_monitors(s)
            return
        monitors = monitors_for(self.rules, labels_of(s.key), MODEL_METRICS, self.settings)
        s.set_monitors([mon for mon in monitors if mon.metric in PER_REQUEST],
                       [mon for mon in monitors if mon.metric not in PER_REQUEST], self._share_monitors(s))

    def _new_feature_monitors(self, f: FeatureSeries) -> None:
        labels = labels_of(f.key, ("team", "feature"))
        f.set_rates(monitors_for(self.rules, labels, FEATURE_METRICS, self.settings))

    def _share_monitors(self, s: ModelSeries) -> tuple[Monitor, ...]:
        """A pricier model's share of its feature's requests: how a router's change shows when volume is flat."""
        if s.tier in WATCHED_TIERS and s.key[-1] is not None:
            labels = {**labels_of(s.key), "tier": s.tier}
            return monitors_for(self.rules, labels, ("tier_mix",), self.settings)
        return ()

    def _evict(self) -> None:
        """Drop the least recently seen tenth of the series: bounded memory, counted, never an OOM."""
        n = max(1, int(self.settings.max_series * EVICT_SHARE))
        for s in sorted(self.series.values(), key=lambda s: s.minute)[:n]:
            s.book(self._ledger, self._months)  # its spend stays in the ledger; only its models are forgotten
            f = self.features[s.key[:2]]
            del f.members[s.key[-1]]
            del self.series[s.key]
            if not f.members:
                del self.features[f.key]
                f.forget()
            self._touched_features.add(f.key)  # its group's saved state (a worker's table) must lose it too
            self.evicted += 1

    # -- minutes ------------------------------------------------------------------
    def _close_minute(self, s: ModelSeries, f: FeatureSeries, out: list[Anomaly], now: float | None) -> None:
        """Judge the series' minute that ended: its shares, its profiles, its spend, and (at ``now``,
        the first event of a later minute) its per-request distributions."""
        if now is not None:
            self._feed_requests(s, f, out, now)
        if not s.n:
            return
        s.book(self._ledger, self._months)
        minute, ts = s.minute, s.minute * 60.0
        values = s.minute_values()
        s.add_minute(minute, values, baseline=f.incident is None)
        if f.incident is not None:
            f.incident.add_minute(s.key[-1], values)
        # The monitors are packed into the series (packed_monitors): each model is loaded, run and put back.
        specs, ends = s.layout.specs, s.layout.ends
        for i in range(ends[0], ends[1]):
            spec = specs[i]
            metric = spec.watch.metric
            model = load(s, spec)
            if metric == "retry_rate":
                model.update(s.retries, ts, s.n)
            elif metric == "error_rate":
                model.update(s.errors, ts, s.n)
            elif s.input:  # one trial per request, the minute's token-weighted share of hits
                model.update(round(s.n * s.cached / s.input), ts, s.n)
            model.close(ts + 60)
            if not put(s, spec, model):  # not settled: in a shift, paged, or held
                self.incidents.check(PackedMonitor(s, i), s, f, ts + 60, out)
        s.clear_minute()

    def _feed_requests(self, s: ModelSeries, f: FeatureSeries, out: list[Anomaly], now: float | None,
                       peek: float | None = None) -> None:
        """Hand the buffered minute to the per-request models; with ``now``, judge it; with ``peek``, let
        them judge it early at that time if its evidence is already enough (see LogLevelShift.peek)."""
        buf, buf_ts = s.buf, s.a[BUF_TS]
        inputs, outputs, costs = buf[0::3], buf[1::3], buf[2::3]
        if s.unpriced:  # an unpriced request has no cost to judge
            costs = [c for c in costs if not math.isnan(c)]
        peeked: list[int] = []
        specs = s.layout.specs  # level-shift and slow-creep tests, packed as in _close_minute
        for i in range(s.layout.ends[0]):
            spec = specs[i]
            metric = spec.watch.metric
            values = inputs if metric == INPUT else outputs if metric == OUTPUT else costs
            model = load(s, spec)
            was, judged = model.phase, False
            model.update_many(values, buf_ts)
            if now is not None:
                model.close(now)
                judged = was == SHIFTED or model.phase == SHIFTED
            elif peek is not None and model.peek(peek):
                peeked.append(i)
            put(s, spec, model)
            if now is not None and judged:
                self.incidents.check(PackedMonitor(s, i), s, f, now, out)
        s.buf = ()
        for i in peeked:  # once every model has the minute's requests, as a minute's close judges them
            self.incidents.check(PackedMonitor(s, i), s, f, peek or 0.0, out)

    def _peek(self, s: ModelSeries, f: FeatureSeries, out: list[Anomaly], ts: float) -> None:
        """Let a busy series' per-request models judge the open minute early (see LogLevelShift.peek).

        Counted from the minute's requests (``s.n``), not from the buffer, so
        a worker that exported its state mid-minute peeks where replay does.
        """
        self._feed_requests(s, f, out, None, peek=ts)

    def _close_feature_minute(self, f: FeatureSeries, out: list[Anomaly]) -> None:
        """Judge the feature's minute that ended: its rates and its tier mix."""
        if not f.n:
            return
        ts = f.minute * 60.0
        if f.incident is not None:
            f.incident.minutes += 1
            f.incident.expected += self.incidents.expected_requests(f, ts) or 0.0
        # Seasonal rate tests, then each pricier member's share of the requests: packed into the feature's array
        # and the member's (packed_monitors), each loaded, run and put back.
        specs = f.layout.specs
        for i in range(len(specs)):
            spec = specs[i]
            rate = load(f, spec)
            rate.update(f.n if spec.watch.metric == "request_rate" else f.cost, ts)
            rate.advance(ts + 60)
            if not put(f, spec, rate):
                self.incidents.check(PackedMonitor(f, i), None, f, ts + 60, out)
        for model, s in f.members.items():
            specs, ends = s.layout.specs, s.layout.ends
            if model is None or ends[1] == ends[2]:
                continue
            hits = f.tiers.get(model, 0)
            for i in range(ends[1], ends[2]):
                spec = specs[i]
                share = load(s, spec)
                share.update(hits, ts, f.n)
                share.close(ts + 60)
                if not put(s, spec, share):
                    self.incidents.check(PackedMonitor(s, i), None, f, ts + 60, out, model)
        f.n, f.cost = 0, 0.0
        f.tiers.clear()

    def _sample(self, ev: GpuSample | UsageSample, out: list[Anomaly]) -> None:
        """GPU and usage samples: priced into the ledger, and judged by their series' model."""
        key, series = self.samples.observe(ev, self._ledger, self.rules)
        self._touched.add(key)
        record = self.samples.judge(key, series, ev.ts, self.settings)
        if record is not None:
            if record.status == "firing":
                self.incidents.fired += 1
            else:
                self.incidents.resolved += 1
            out.append(record)
