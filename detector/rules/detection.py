"""All of detection over one stream: the engine's anomaly rules and the evaluator's thresholds and budgets.

``spendwatch rules test`` and ``rules backtest`` need every kind of rule
judged the way the live stream judges it; this joins the two halves so
each command feeds one object, in event time, and gets one list of records.
"""

from __future__ import annotations

from collections.abc import Iterable

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.events import Event
from detector.pricing import PriceTable
from detector.rules.ruleset import RuleSet


class Detection:
    """Every kind of rule over one stream, in event time: the engine judges all of them.

    >>> from detector.events import LlmRequest
    >>> from detector.rules.loader import load_data
    >>> rules = load_data({"groups": [{"name": "g", "rules": [{"id": "b", "alert": "Budget",
    ...     "expr": {"metric": "spend_rate", "budget": {"monthly_usd": 1}}}]}]})
    >>> d = Detection(rules, PriceTable.packaged())
    >>> found = d.process_many(LlmRequest(ts=1.8e9 + 60 * i, model="m", input_tokens=1, output_tokens=1,
    ...                                   cost_usd=0.5) for i in range(5))
    >>> [(a.rule, a.labels["budget_stage"]) for a in found]
    [('b', 'spent')]
    """

    def __init__(self, rules: RuleSet, prices: PriceTable, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        self.prices = prices
        self.engine = Engine(prices, self.settings, rules=rules)

    def process(self, ev: Event) -> list[Anomaly]:
        return self.engine.process(ev)

    def process_many(self, events: Iterable[Event]) -> list[Anomaly]:
        return self.engine.process_many(events)

    def advance(self, ts: float) -> list[Anomaly]:
        """Let event time pass without events (quiet series resolve, dropped rates fire)."""
        return self.engine.advance(ts)
