"""Hourly spend rollups, accumulated one decoded event at a time.

One row per hour × kind × category × team × feature × model × tier × unit
(:data:`detector.history.schema.DIMENSIONS`) holds what the digest and the
FOCUS export need: requests, tokens, retries, errors, dollars, GPU-hours and
the dollars of GPUs paid for and left idle. Rows live in memory until
:meth:`HourlyRollup.drain` hands them to the store, which adds them to what
it holds, so flushing often or rarely gives the same totals.

Counting once: a redelivered request (same ``request_id`` and ``attempt``)
is dropped while its id is remembered (``window_s`` of event time), and the
ids seen since the last drain go to the store with the rows, in the same
transaction, so a restarted writer can reload them and still count once.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, fields

from detector.events import GpuSample, LlmRequest, UsageSample
from detector.ledger import GPU_GAP_CAP_S

HOUR_S = 3600

RollupKey = tuple[int, str, str, str, str, str, str, str]
"""(hour_start, kind, category, team, feature, model, tier, unit), as in schema.DIMENSIONS."""


@dataclass(slots=True)
class RollupRow:
    """One hour of one combination of labels: the dimensions, then what was counted.

    ``gpu_busy_hours`` is utilisation × GPU-hours, so average utilisation is
    ``gpu_busy_hours / gpu_hours`` over any set of rows; ``quantity`` is the
    summed value of usage samples in their ``unit``; ``unpriced`` counts the
    events that had no price (never booked as $0).

    >>> row = RollupRow(0, "llm", "hosted_inference", "search", "", "gpt-4o", "premium", "tokens")
    >>> row.requests, row.key()[:2]
    (0, (0, 'llm'))
    """

    hour_start: int
    kind: str
    category: str
    team: str
    feature: str
    model: str
    tier: str
    unit: str
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0
    retries: int = 0
    errors: int = 0
    unpriced: int = 0
    cost_usd: float = 0.0
    gpu_hours: float = 0.0
    gpu_busy_hours: float = 0.0
    idle_gpu_usd: float = 0.0
    quantity: float = 0.0

    def key(self) -> RollupKey:
        return (self.hour_start, self.kind, self.category, self.team, self.feature, self.model, self.tier,
                self.unit)

    def measures(self) -> dict[str, float]:
        """The counted fields by name, as the store adds them."""
        return {f.name: getattr(self, f.name) for f in fields(self)[8:]}


def request_key(ev: LlmRequest) -> str | None:
    """What makes a request the same request: its id, and its attempt when it is a retry.

    >>> request_key(LlmRequest(ts=0, model="m", input_tokens=1, output_tokens=1, request_id="r1", attempt=2))
    'r1#2'
    """
    if ev.request_id is None:
        return None
    return ev.request_id if ev.attempt == 1 else f"{ev.request_id}#{ev.attempt}"


class HourlyRollup:
    """Accumulates events into hourly rows, counting each request once.

    >>> rollup = HourlyRollup(idle_below=0.1)
    >>> ev = LlmRequest(ts=7200.5, model="gpt-4o", input_tokens=900, output_tokens=80, team="a", request_id="r1")
    >>> rollup.add_request(ev, 0.25, "premium"), rollup.add_request(ev, 0.25, "premium")
    (True, False)
    >>> rows, seen = rollup.drain()
    >>> rows[0].hour_start, rows[0].requests, rows[0].cost_usd, seen, rollup.duplicates
    (7200, 1, 0.25, [('r1', 7200.5)], 1)
    """

    def __init__(self, *, idle_below: float = 0.10, window_s: float = 86400.0) -> None:
        self.idle_below = idle_below
        self.window_s = window_s
        self.duplicates = 0
        self._rows: dict[RollupKey, RollupRow] = {}
        self._seen: dict[str, float] = {}
        self._order: deque[tuple[str, float]] = deque()
        self._new_seen: list[tuple[str, float]] = []
        self._gpu_last: dict[tuple[str | None, str, str], float] = {}

    def remember(self, seen: Iterable[tuple[str, float]]) -> None:
        """Load request ids a previous writer already counted (from the store)."""
        for key, ts in sorted(seen, key=lambda item: item[1]):
            if key not in self._seen:
                self._seen[key] = ts
                self._order.append((key, ts))

    def add_request(self, ev: LlmRequest, cost: float | None, tier: str | None) -> bool:
        """Book one request (``cost`` None: unpriced); False when it was already counted.

        Written out rather than split into helpers: it runs once per request.
        """
        rid = ev.request_id
        if rid is not None:
            key = rid if ev.attempt == 1 else f"{rid}#{ev.attempt}"  # as request_key(ev)
            if key in self._seen:
                self.duplicates += 1
                return False
            ts = ev.ts
            self._seen[key] = ts
            self._order.append((key, ts))
            self._new_seen.append((key, ts))
            if self._order[0][1] < ts - self.window_s:
                self._forget_before(ts - self.window_s)
        hour = int(ev.ts // HOUR_S) * HOUR_S
        row_key = (hour, "llm", ev.category, ev.team or "", ev.feature or "", ev.model, tier or "", "tokens")
        row = self._rows.get(row_key)
        if row is None:
            row = self._rows[row_key] = RollupRow(*row_key)
        row.requests += 1
        row.input_tokens += ev.input_tokens
        row.output_tokens += ev.output_tokens
        row.cached_input_tokens += ev.cached_input_tokens
        if ev.attempt > 1:
            row.retries += 1
        if ev.status != "ok":
            row.errors += 1
        if cost is None:
            row.unpriced += 1
        else:
            row.cost_usd += cost
        return True

    def add_gpu(self, ev: GpuSample, hourly_usd: float | None) -> None:
        """Bill a GPU for the time since its previous sample (capped, as the spend ledger does).

        The unused share of a sample below ``idle_below`` utilisation is idle
        money: a GPU at 3 % still did 3 % of its work, so 97 % of its cost
        for that interval is booked as idle.
        """
        gpu = (ev.cluster, ev.node, ev.gpu)
        last = self._gpu_last.get(gpu)
        self._gpu_last[gpu] = ev.ts if last is None else max(last, ev.ts)
        if last is None or ev.ts <= last:
            return
        hours = min(ev.ts - last, GPU_GAP_CAP_S) / HOUR_S
        row = self._row(ev.ts, "gpu", ev.category, ev.team, ev.feature, ev.gpu_model, "", "gpu_hours")
        row.gpu_hours += hours
        row.gpu_busy_hours += hours * ev.utilization
        if hourly_usd is None:
            row.unpriced += 1
            return
        row.cost_usd += hours * hourly_usd
        if ev.utilization < self.idle_below:
            row.idle_gpu_usd += hours * hourly_usd * (1.0 - ev.utilization)

    def add_usage(self, ev: UsageSample) -> None:
        """Book a spend line; only values in ``usd`` are dollars, others are quantities."""
        row = self._row(ev.ts, "usage", ev.category, ev.team, ev.feature, ev.metric, "", ev.unit)
        row.quantity += ev.value
        if ev.unit.lower() == "usd":
            row.cost_usd += ev.value

    def drain(self) -> tuple[list[RollupRow], list[tuple[str, float]]]:
        """The rows and newly seen request ids since the last drain; both start over empty."""
        rows, seen = list(self._rows.values()), self._new_seen
        self._rows, self._new_seen = {}, []
        return rows, seen

    @property
    def pending_rows(self) -> int:
        return len(self._rows)

    def _row(self, ts: float, kind: str, category: str, team: str | None, feature: str | None,
             model: str | None, tier: str, unit: str) -> RollupRow:
        hour = int(ts // HOUR_S) * HOUR_S
        key = (hour, kind, category, team or "", feature or "", model or "", tier, unit)
        row = self._rows.get(key)
        if row is None:
            row = self._rows[key] = RollupRow(*key)
        return row

    def _forget_before(self, horizon: float) -> None:
        order, seen = self._order, self._seen
        while order and order[0][1] < horizon:
            key, ts = order.popleft()
            if seen.get(key) == ts:
                del seen[key]
