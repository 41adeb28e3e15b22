"""One budget rule over one scope: warn on the month-end projection, and again at 100 % spent.

Two alerts, told apart by the label ``budget_stage``: ``projected`` fires
once the month-end projection (spent so far plus the last day's rate until
the month ends) has crossed the budget for the rule's ``for``, and resolves
when the projection falls back under it for ``keep_firing_for``;
``spent`` fires the moment the month's actual spend reaches the budget,
since money spent is not unspent. Both resolve when the month ends. A scope
seen for less than :data:`MIN_HISTORY_S` is not projected: one busy first
hour says little about a month.
"""

from __future__ import annotations

from detector.anomaly import Anomaly
from detector.rules.records import (
    Loudness,
    alert_labels,
    budget_summary,
    build_record,
    month_bounds,
    resolved,
)
from detector.rules.ruleset import Rule
from detector.rules.spend import HOUR, SpendTrack

MIN_HISTORY_S = 6 * HOUR
STAGE = "budget_stage"


class BudgetState:
    """Spend, projection and the two alerts of one (budget rule, scope).

    >>> from detector.rules.loader import load_data
    >>> rs = load_data({"groups": [{"name": "g", "rules": [{"id": "b", "alert": "Budget",
    ...     "expr": {"metric": "spend_rate", "by": ["team"], "budget": {"monthly_usd": 1000}}}]}]})
    >>> state, start = BudgetState(rs.rules[0], {"team": "a"}), 1_788_220_800.0  # 2026-09-01
    >>> fired = []
    >>> for hour in range(48):  # $2/h projects to about $1,440 by the end of September
    ...     state.add(start + hour * 3600, 2.0)
    ...     fired += [(hour, r.labels[STAGE]) for r in state.evaluate(start + hour * 3600 + 60, Loudness())]
    >>> fired
    [(6, 'projected')]
    """

    __slots__ = ("rule", "labels", "spend", "month", "pending_since", "last_breach", "projected", "spent", "judged")

    def __init__(self, rule: Rule, labels: dict[str, str]) -> None:
        self.rule = rule
        self.labels = labels
        self.spend = SpendTrack()
        self.month = ""
        self.pending_since: float | None = None
        self.last_breach = 0.0
        self.projected: Anomaly | None = None
        self.spent: Anomaly | None = None
        self.judged = -1

    def add(self, ts: float, dollars: float) -> None:
        self.spend.add(ts, dollars)

    def evaluate(self, now: float, loudness: Loudness) -> list[Anomaly]:
        """Judge the scope at ``now``: records for alerts that fire or resolve."""
        out: list[Anomaly] = []
        spend = self.spend
        spend.roll(now)
        if spend.month != self.month:
            out += self._resolve_all(now, "a new month began")
            self.month = spend.month
        if not spend.seen:
            return out
        budget = self.rule.expr.budget
        assert budget is not None
        projected = spend.projected_month(now)
        if now - spend.first_ts >= MIN_HISTORY_S and projected >= budget.monthly_usd:
            self.last_breach = now
            if self.pending_since is None:
                self.pending_since = now
            if self.projected is None and now - self.pending_since >= self.rule.for_s:
                self.projected = self._fire("projected", self.pending_since, now, projected, loudness)
                out.append(self.projected)
        elif self.projected is None:
            self.pending_since = None
        elif now - self.last_breach >= self.rule.keep_firing_for_s:
            out.append(resolved(self.projected, self.rule, now, "the projection is back under the budget"))
            self.projected = self.pending_since = None
        if self.spent is None and spend.month_to_date >= budget.monthly_usd:
            self.spent = self._fire("spent", now, now, projected, loudness)
            out.append(self.spent)
        return out

    def _resolve_all(self, now: float, why: str) -> list[Anomaly]:
        out = [resolved(alert, self.rule, now, why) for alert in (self.projected, self.spent) if alert is not None]
        self.projected = self.spent = self.pending_since = None
        return out

    def _fire(self, stage: str, started: float, now: float, projected: float, loudness: Loudness) -> Anomaly:
        rule, spend = self.rule, self.spend
        budget = rule.expr.budget
        assert budget is not None
        labels = {**alert_labels(rule, self.labels), STAGE: stage}
        month_hours = (spend.month_end - _month_start(spend)) / HOUR
        values = {
            "value": projected if stage == "projected" else spend.month_to_date,
            "baseline": budget.monthly_usd,
            "budget_usd": budget.monthly_usd,
            "spent_usd": spend.month_to_date,
            "projected_month_usd": projected,
            "excess_usd_per_hour": spend.day_rate(now) - budget.monthly_usd / month_hours,
        }
        summary = budget_summary(rule, labels, stage, spend.month_to_date, projected, budget.monthly_usd)
        return build_record(rule, labels, started=started, detected=now, values=values, loudness=loudness,
                            default_summary=summary)


def _month_start(spend: SpendTrack) -> float:
    return month_bounds(spend.month_end - 1)[1]
