"""The last hour of a series, in one-minute buckets of event time.

Spend rate and request rate "now" are what the alert prices an incident
with; a ring of 60 buckets gives them in constant memory and constant time,
and is small enough to live in every series' state.
"""

from __future__ import annotations

from typing import Any


class HourWindow:
    """Requests and dollars in the last 60 minutes of event time.

    >>> w = HourWindow()
    >>> for minute in range(90):
    ...     w.add(minute * 60.0, cost=0.5)
    >>> w.requests(89 * 60.0), w.cost(89 * 60.0)
    (60, 30.0)
    """

    __slots__ = ("minute", "counts", "costs")

    def __init__(self) -> None:
        self.minute = -1
        self.counts = [0] * 60
        self.costs = [0.0] * 60

    def add(self, ts: float, cost: float, requests: int = 1) -> None:
        """Count ``requests`` costing ``cost`` in all at event time ``ts``."""
        m = int(ts // 60)
        if m > self.minute:
            self._advance(m)
        elif m <= self.minute - 60:
            return  # older than the window: too late to matter for "now"
        i = m % 60
        self.counts[i] += requests
        self.costs[i] += cost

    def _advance(self, m: int) -> None:
        gap = m - self.minute
        if gap >= 60:
            self.counts = [0] * 60
            self.costs = [0.0] * 60
        else:
            for j in range(self.minute + 1, m + 1):
                self.counts[j % 60] = 0
                self.costs[j % 60] = 0.0
        self.minute = m

    def _live(self, ts: float) -> range:
        """Bucket minutes that are within the hour ending at ``ts``."""
        m = int(ts // 60)
        return range(max(m - 59, self.minute - 59), min(m, self.minute) + 1)

    def requests(self, ts: float) -> int:
        return sum(self.counts[j % 60] for j in self._live(ts))

    def cost(self, ts: float) -> float:
        return sum(self.costs[j % 60] for j in self._live(ts))

    def to_state(self) -> dict[str, Any]:
        return {"minute": self.minute, "counts": list(self.counts), "costs": list(self.costs)}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HourWindow:
        w = cls()
        w.minute, w.counts, w.costs = state["minute"], list(state["counts"]), list(state["costs"])
        return w
