"""Month-end spend against the monthly budgets that teams write as rules (``expr.budget``).

A budget rule's scope (its group labels and matchers) selects rollup rows by
their labels, and its ``by`` labels split it: ``by: [team]`` gives every
matched team its own line. Month-end is projected the way a person would:
spent so far this month, plus the last week's daily average for every day
left in the month.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from detector.history.rollup import RollupRow
from detector.rules import RuleSet

DAY_S = 86400


@dataclass(frozen=True, slots=True)
class BudgetLine:
    """One budget and where the month is heading; ``scope`` names it for people (``team=search``)."""

    rule_id: str
    scope: str
    monthly_usd: float
    spent_usd: float
    projected_usd: float

    @property
    def share(self) -> float:
        """Projected month-end spend as a share of the budget (1.0 = exactly on budget)."""
        return self.projected_usd / self.monthly_usd


def row_labels(row: RollupRow) -> dict[str, str]:
    """The labels a rule's matchers see on a rollup row (absent ones left out)."""
    labels = {"team": row.team, "feature": row.feature, "model": row.model, "category": row.category,
              "tier": row.tier}
    return {k: v for k, v in labels.items() if v}


def budget_lines(rules: RuleSet, month_rows: list[RollupRow], week_rows: list[RollupRow],
                 week_end: float) -> list[BudgetLine]:
    """Every budget rule's line(s) for the month holding the week's last day.

    ``month_rows`` are the rows from the first of that month to the week's end;
    ``week_rows`` the week's, for the daily rate.
    """
    days_left = _days_left_in_month(week_end)
    lines = []
    for rule in rules.rules:
        if not rule.enabled or rule.expr.budget is None:
            continue
        by = rule.expr.by
        spent: dict[tuple[str, ...], float] = {}
        weekly: dict[tuple[str, ...], float] = {}
        for rows, into in ((month_rows, spent), (week_rows, weekly)):
            for row in rows:
                labels = row_labels(row)
                if rule.selects(labels):
                    key = tuple(labels.get(name, "") for name in by)
                    into[key] = into.get(key, 0.0) + row.cost_usd
        for key in sorted(spent):
            scope = ", ".join(f"{name}={value or '(none)'}" for name, value in zip(by, key, strict=True))
            projected = spent[key] + weekly.get(key, 0.0) / 7 * days_left
            lines.append(BudgetLine(rule.id, scope or rule.group, rule.expr.budget.monthly_usd, spent[key], projected))
    return sorted(lines, key=lambda b: -b.share)


def _days_left_in_month(ts: float) -> float:
    """Days from ``ts`` to the end of its calendar month (UTC); 0 when ``ts`` is the month's end."""
    now = datetime.fromtimestamp(ts, UTC)
    if now.day == 1 and now.hour == 0 and now.minute == 0 and now.second == 0:
        return 0.0  # a week ending at midnight on the 1st closes the previous month
    days = calendar.monthrange(now.year, now.month)[1]
    end = datetime(now.year, now.month, days, tzinfo=UTC).timestamp() + DAY_S
    return (end - ts) / DAY_S
