"""The one writer of the history store: events and anomaly records in, rollups and lifecycles out.

``spendwatch replay`` and ``demo`` call it beside detection; in the stream
worker a single writer consumes the rollup and anomaly topics, so several
detection workers never add the same hour twice.
"""

from __future__ import annotations

from collections.abc import Iterable

from detector.anomaly import Anomaly
from detector.events import Event, GpuSample, LlmRequest, UsageSample
from detector.history.rollup import HourlyRollup
from detector.history.store import HistoryStore
from detector.pricing import PriceTable

FLUSH_ROWS = 20_000  # pending rows that trigger a flush on their own: bounds memory, not correctness


class HistoryWriter:
    """Feeds one :class:`HistoryStore`; call :meth:`flush` at the end (and whenever offsets are committed).

    On start it reloads the request ids the store recorded in the last
    ``window_s`` of event time, so events redelivered after a restart are
    still counted once. ``durable_ids=False`` keeps them in memory only: for a
    one-off run into a fresh store (the demo), where there is no restart to
    survive and writing a day of ids costs more than the rollups.

    >>> store = HistoryStore.open("sqlite://")
    >>> writer = HistoryWriter(store, PriceTable.packaged())
    >>> ev = LlmRequest(ts=1.8e9, model="gpt-4o-mini", input_tokens=1000, output_tokens=100, team="a", request_id="r")
    >>> writer.add_event(ev), writer.add_event(ev)
    (True, False)
    >>> writer.flush()
    >>> round(sum(row.cost_usd for row in store.rollups(0, 2e9)), 6)
    0.00021
    """

    def __init__(
        self, store: HistoryStore, prices: PriceTable, *, idle_below: float = 0.10, window_s: float = 86400.0,
        durable_ids: bool = True,
    ) -> None:
        self.store = store
        self.prices = prices
        self.durable_ids = durable_ids
        self.rollup = HourlyRollup(idle_below=idle_below, window_s=window_s)
        latest = store.latest_seen() if durable_ids else None
        if latest is not None:
            self.rollup.remember(store.seen_since(latest - window_s))

    def add_event(self, ev: Event, cost: float | None = None) -> bool:
        """Book one decoded event; ``cost`` of a request when the caller has priced it already.

        Returns False for a request already counted (a redelivery).
        """
        if type(ev) is LlmRequest:
            if cost is None:
                cost = self.prices.cost(ev)
            tier = ev.tier or self.prices.tier(ev.model)
            booked = self.rollup.add_request(ev, cost, tier)
        elif type(ev) is GpuSample:
            hourly = ev.hourly_cost_usd
            if hourly is None and ev.gpu_model:
                hourly = self.prices.gpu_hourly(ev.gpu_model)
            self.rollup.add_gpu(ev, hourly)
            booked = True
        elif type(ev) is UsageSample:
            self.rollup.add_usage(ev)
            booked = True
        else:
            raise TypeError(f"expected LlmRequest, GpuSample or UsageSample, got {type(ev).__name__}")
        if self.rollup.pending_rows >= FLUSH_ROWS:
            self.flush()
        return booked

    def add_events(self, events: Iterable[Event]) -> None:
        """Book a batch of decoded events (a replay's chunk), each priced here."""
        for ev in events:
            self.add_event(ev)

    def add_anomaly(self, a: Anomaly) -> None:
        """Record an anomaly's firing or resolved record (upserted by id)."""
        self.store.upsert_anomaly(a)

    def flush(self) -> None:
        """Write the pending rollups and request ids, in one transaction."""
        rows, seen = self.rollup.drain()
        if not self.durable_ids:
            seen = []
        if rows or seen:
            newest = max((ts for _, ts in seen), default=None)
            forget = None if newest is None else newest - self.rollup.window_s
            self.store.add_rollups(rows, seen, forget_before=forget)
