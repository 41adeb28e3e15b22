"""When a model's shift becomes a page: fire, merge, hold, resolve — one incident per feature.

The first monitor of a (team, feature) to fire opens the feature's incident;
monitors that fire while it lasts are merged into it and named in its
``related``; a derived metric (cost per request, spend rate) waits a few
minutes for a cause to explain it; a spend-rate change worth pennies, a move
to a cheaper model and a slow test's late echo of an incident do not page.
Records are priced (:mod:`detector.findings`) and, where the change is
settled, split into drivers (:mod:`detector.drivers`).
"""

from __future__ import annotations

import math
from datetime import datetime

from detector.anomaly import (
    Anomaly,
    anomaly_id,
    duration_words,
    rfc3339,
    severity_for,
    vs_normal,
    where,
)
from detector.config import Settings
from detector.drivers import CAUSE_OF, decompose, describe_drivers
from detector.findings import TITLES, excess_per_hour, finding, projected_month
from detector.llm_series import FeatureSeries, Incident, ModelSeries, month_of
from detector.models.level_shift import SHIFTED
from detector.models.seasonal_rate import SeasonalRate
from detector.monitor import CREEP_RULE, DERIVED, Monitor
from detector.pricing import PriceTable
from detector.series import labels_of

DERIVED_HOLD_S = 180.0
ECHO_S = 24 * 3600.0  # a slow-creep alarm this soon after an incident of its feature is that incident's echo
NEW_CAUSE_S = 3600.0  # a cause this long after a derived metric's incident began pages as its own
NEWS_AFTER_CAUSE_S = 6 * 3600.0  # a move of another metric this long after a cause's incident began is news
SETTLED_S = 600.0  # a firing record splits its dollars into drivers only if the change is this old
SPEND_FLOOR_USD_PER_HOUR = 0.10  # a rate change worth less than this is pennies, not a page
FLOORED = frozenset({"spend_rate"})  # pages for dollars only; a request surge pages (as info) even on cheap models
SAVINGS_ARE_QUIET = frozenset({"tier_mix", "input_tokens_per_request", "cost_per_request"})
"""Metrics whose move toward cheaper is nothing to page about: traffic moving to a cheaper model, shorter
prompts, cheaper requests. (Answers that got shorter still page: a model that stopped answering is spend
without value.)"""
EXPLAINED = frozenset({"spend_rate", "request_rate", "cost_per_request", "tier_mix"})
"""Metrics whose record carries the spend split into drivers (the others name their own cause)."""


class Incidents:
    """The alert side of the engine: turns monitors' phases into anomaly records, and counts them."""

    def __init__(self, prices: PriceTable, settings: Settings) -> None:
        self.prices = prices
        self.settings = settings
        self.fired = self.resolved = self.merged = 0

    def check(self, mon: Monitor, s: ModelSeries | None, f: FeatureSeries, ts: float, out: list[Anomaly],
               tier: str | None = None) -> None:
        """Turn a monitor's phase into alert transitions: fire, merge, hold, resolve, re-baseline."""
        model = mon.model
        inc = f.incident
        if model.phase == SHIFTED:
            if not mon.paged:
                self._on_shift(mon, s, f, ts, out, tier)
            elif inc is not None and inc.monitor == mon and ts - getattr(model, "shifted_at", mon.held_since or ts) \
                    >= self.settings.rebaseline_after_hours * 3600:
                model.rebaseline(ts)
                mon.paged = False
                out.append(self._resolve(f, ts, accepted=True))
            return
        mon.held_since = 0.0
        if mon.paged:
            mon.paged = False
            if inc is not None and inc.monitor == mon:
                out.append(self._resolve(f, ts, accepted=False))

    def _on_shift(self, mon: Monitor, s: ModelSeries | None, f: FeatureSeries, ts: float,
                  out: list[Anomaly], tier: str | None) -> None:
        inc = f.incident
        if inc is not None and not _new_cause(mon, inc):
            mon.paged = True
            name = mon.rule_id if s is None else f"{mon.rule_id} on {s.key[-1]}"
            if name not in inc.related:
                inc.related.append(name)
            self.merged += 1
            return
        if mon.rule_id == CREEP_RULE and f.last_resolved and ts - f.last_resolved < ECHO_S:
            mon.paged = True  # the slow test still sees the incident that just ended
            return
        if self._saves_money(mon, f, tier):
            mon.paged = True  # held as paged, so the same shift stays quiet while it lasts
            return
        if mon.metric in FLOORED and abs(self._excess_now(mon, f, tier)) < SPEND_FLOOR_USD_PER_HOUR:
            return  # a doubling of pennies: rates page for dollars
        if mon.metric in DERIVED:
            if not mon.held_since:
                mon.held_since = ts
            if ts - mon.held_since < DERIVED_HOLD_S:
                return
        mon.paged = True
        if f.incident is not None:  # a new cause, long after the open incident began: it takes over
            out.append(self._resolve(f, ts, accepted=False, superseded_by=mon))
        out.append(self._fire(mon, s, f, ts, tier))

    def _saves_money(self, mon: Monitor, f: FeatureSeries, tier: str | None) -> bool:
        """A move toward cheaper: traffic to a cheaper model, shorter prompts, cheaper requests."""
        if mon.metric == "tier_mix":
            return self._excess_now(mon, f, tier) <= 0
        if mon.metric in SAVINGS_ARE_QUIET:  # by direction: a model without a price still pages when it grows
            shift = mon.model.shift()
            return shift is not None and shift.direction < 0
        return False

    def _excess_now(self, mon: Monitor, f: FeatureSeries, tier: str | None) -> float:
        shift = mon.model.shift()
        return 0.0 if shift is None else excess_per_hour(mon.metric, shift, f, self.prices, tier)

    def _fire(self, mon: Monitor, s: ModelSeries | None, f: FeatureSeries, ts: float, tier: str | None) -> Anomaly:
        shift = mon.model.shift()
        assert shift is not None
        if s is not None:
            labels = labels_of(s.key)
            priced = self.prices.model_price(s.key[-1] or "") is not None
        else:
            labels = labels_of(f.key, ("team", "feature"))
            member = f.members.get(tier) if tier is not None else None
            if member is not None:
                labels |= {"model": tier, "tier": member.tier or ""}
            priced = any(self.prices.model_price(m.key[-1] or "") for m in f.members.values())
        target = s if s is not None else f
        excess = excess_per_hour(mon.metric, shift, target, self.prices, tier)
        month = month_of(ts)
        month_cost = sum(m.month_to_date(month) for m in f.members.values()) if s is None else s.month_to_date(month)
        spend_per_hour = sum(60 * m.recent.per_minute(1) for m in f.members.values()) if s is None \
            else 60 * s.recent.per_minute(1)
        projected = projected_month(month_cost, spend_per_hour, ts)
        drivers = None
        if mon.metric in EXPLAINED and ts - shift.onset_ts >= SETTLED_S:  # the recent profile has caught up
            drivers = decompose(f.members.values(), self.prices, expected_requests=self.expected_requests(f, ts),
                                keep=CAUSE_OF.get(mon.metric)) or None
        found = finding(mon.metric, shift, labels, excess, projected, drivers, priced)
        started = rfc3339(found.onset_ts)
        record = Anomaly(
            id=anomaly_id(mon.rule_id, labels, started), rule=mon.rule_id, metric=mon.metric, labels=labels,
            severity=self._severity(mon, excess), status="firing", started_at=started,
            detected_at=rfc3339(ts), resolved_at=None, observed=_round(found.observed),
            baseline=_round(found.baseline), ratio=round(found.ratio, 3) if math.isfinite(found.ratio) else 0.0,
            excess_cost_usd_per_hour=round(excess, 4),
            projected_month_usd=None if projected is None else round(projected, 2),
            summary=found.summary, runbook=self._runbook(mon, labels), drivers=drivers,
        )
        f.incident = Incident(record, mon, s)
        self.fired += 1
        return record

    def _resolve(self, f: FeatureSeries, ts: float, *, accepted: bool, superseded_by: Monitor | None = None) -> Anomaly:
        inc = f.incident
        assert inc is not None
        alert = inc.record
        lasted = ts - datetime.fromisoformat(alert.started_at).timestamp()
        if superseded_by is not None:
            how = (f"still {alert.ratio:.1f}× after {duration_words(lasted)}, when a later change of "
                   f"{superseded_by.metric.replace('_', ' ')} began and is paged as its own incident")
        elif accepted:
            how = f"still {alert.ratio:.1f}× after {duration_words(lasted)}; accepted as the new normal"
        else:
            how = f"back to normal after {duration_words(lasted)}"
        title = TITLES[alert.metric].format(tier=alert.labels.get("tier", "premium"), model=alert.labels.get("model"))
        summary = f"{title} for {where(alert.labels)} {how}"
        drivers, measured = alert.drivers, None
        cause = CAUSE_OF.get(alert.metric)
        if inc.minutes:
            expected = inc.expected / inc.minutes if inc.expected else None
            split = decompose(f.members.values(), self.prices, expected_requests=expected,
                              recent=inc.per_minute(), keep=cause)
            if split:
                drivers = split
                measured = split.get(cause, 0.0) if cause else None  # what its own cause cost, while it lasted
        per_hour = measured if measured is not None else alert.excess_cost_usd_per_hour
        if per_hour:
            summary += f"; about {vs_normal(per_hour * lasted / 3600, spent=True)} in all"
        if drivers:
            summary += f"; feature spend while it lasted {describe_drivers(drivers)}"
        if inc.related:
            summary += f"; it also moved {', '.join(inc.related)}"
        f.incident = None
        f.last_resolved = ts
        self.resolved += 1
        total = round(measured * lasted / 3600, 4) if measured is not None else None
        return alert.resolve(rfc3339(ts), summary, related=list(inc.related) or None, drivers=drivers,
                             excess_total_usd=total)

    @staticmethod
    def expected_requests(f: FeatureSeries, ts: float) -> float | None:
        """Requests per minute the clock expects of the feature now (seasonal), if its rate model knows."""
        for mon in f.rates:
            if mon.metric == "request_rate" and mon.kind is SeasonalRate:
                return mon.model.expected(ts)
        return None

    def _severity(self, mon: Monitor, excess: float) -> str:
        if mon.rule is not None and mon.rule.severity != "auto":
            return mon.rule.severity
        return severity_for(excess, self.settings.critical_usd_per_hour, self.settings.warning_usd_per_hour)

    @staticmethod
    def _runbook(mon: Monitor, labels: dict[str, str]) -> str | None:
        if mon.rule is None or "runbook" not in mon.rule.annotations:
            return None
        return mon.rule.annotate(labels, {}).get("runbook")



def _new_cause(mon: Monitor, inc: Incident) -> bool:
    """Whether a shift is a cause of its own rather than part of the feature's open incident.

    An incident opened by a derived metric (cost per request, spend rate)
    is one whose cause no model found in the minutes it waited for one. A
    cause that shows up within the hour is that cause, and is named in it;
    one that begins hours later is news, and merged into an incident opened
    that long before, the on-call engineer would never hear of it (measured:
    a prompt doubling swallowed by a cost-per-request alert nine hours old).
    An incident opened by a cause keeps what moves while it lasts: its
    effects can surface late (a retry storm's empty answers, an hour in).
    Not half a day late, though: a cause's model can hold its shift for
    hours after the change is over (a slow series at night brings little
    evidence that it is), and a metric of another kind that moves six hours
    after the incident began is a change of its own (measured: a fivefold
    traffic runaway on o3 swallowed by an answer-length alert fifteen hours
    old). The cause's own metric moving again stays part of it (a slow
    creep's prompts, days in, crossing the level test's threshold).
    """
    if mon.metric in DERIVED:
        return False
    shift = mon.model.shift()
    if shift is None:
        return False
    after = shift.onset_ts - datetime.fromisoformat(inc.record.started_at).timestamp()
    if inc.record.metric in DERIVED:
        return after > NEW_CAUSE_S
    return mon.metric != inc.record.metric and after > NEWS_AFTER_CAUSE_S


def _round(v: float) -> float:
    return round(v, 6) if abs(v) < 1 else round(v, 2)
