"""Backtesting: what each rule would have done over past events, so it can be tuned before it pages anyone.

Events are replayed through all of detection in event time (the same
:class:`~detector.rules.detection.Detection` as the live stream), and each
record is booked against its rule: how often it fired, when, the excess
dollars it saw while firing (excess $/hour × how long it fired) and the
dollars that leaked before detection (excess $/hour × detection delay).
The verdict is a hint in words, not a judgement: a rule that fires daily
is noise to someone.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from detector.anomaly import Anomaly
from detector.events import Decoder
from detector.rules.detection import Detection
from detector.rules.ruleset import RuleSet

CHUNK_LINES = 8192
FIRST_TIMES = 5


@dataclass
class RuleTally:
    """One rule's record over the replay."""

    rule: str
    alert: str
    kind: str
    fired: int = 0
    first_times: list[str] = field(default_factory=list)
    excess_usd: float = 0.0
    leaked_usd: float = 0.0
    open: dict[str, tuple[Anomaly, float]] = field(default_factory=dict)

    def to_dict(self, days: float) -> dict[str, object]:
        return {"rule": self.rule, "alert": self.alert, "kind": self.kind, "fired": self.fired,
                "first_times": self.first_times, "excess_usd": round(self.excess_usd, 2),
                "leaked_usd": round(self.leaked_usd, 2), "verdict": verdict(self, days)}


@dataclass
class Backtest:
    """The tallies of every rule, and what the replay covered."""

    tallies: dict[str, RuleTally]
    events: int = 0
    rejected: int = 0
    first_ts: float | None = None
    last_ts: float | None = None

    @property
    def days(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return max(0.0, self.last_ts - self.first_ts) / 86400

    def to_dict(self) -> dict[str, object]:
        return {"events": self.events, "rejected": self.rejected, "days": round(self.days, 3),
                "rules": [t.to_dict(self.days) for t in self.tallies.values()]}


def verdict(tally: RuleTally, days: float) -> str:
    """A line a rule's owner can act on.

    >>> verdict(RuleTally("r", "R", "threshold", fired=9), 7.0)
    'fired 9× in 7 days: more than daily; consider raising its threshold or a longer for'
    >>> verdict(RuleTally("r", "R", "budget"), 7.0)
    'never fired in 7 days'
    """
    span = f"{days:.0f} day{'s' if round(days) != 1 else ''}" if days >= 1 else f"{days * 24:.0f} hours"
    if tally.fired == 0:
        return f"never fired in {span}"
    head = f"fired {tally.fired}× in {span}"
    if days and tally.fired / max(days, 1.0) > 1:
        knob = {"threshold": "its threshold or a longer for", "budget": "the budget",
                "anomaly": "ratio_above (or delta_above)"}.get(tally.kind, "its bounds")
        return f"{head}: more than daily; consider raising {knob}"
    if tally.leaked_usd > tally.excess_usd > 0:
        return f"{head}: most of the excess leaked before detection; consider a shorter for or window"
    return f"{head}: rare enough to page on"


def run_backtest(
    rules: RuleSet,
    lines: Iterable[bytes],
    detection: Detection,
    decoder: Decoder,
    *,
    on_chunk: Callable[[int], None] = lambda n: None,
) -> Backtest:
    """Replay ``lines`` through ``detection`` and tally every rule of ``rules``."""
    result = Backtest({r.id: RuleTally(r.id, r.alert, r.expr.kind) for r in rules.rules if r.enabled})
    chunk: list[bytes] = []
    first = 1
    for line in lines:
        chunk.append(line)
        if len(chunk) >= CHUNK_LINES:
            _chunk(chunk, first, detection, decoder, result)
            on_chunk(len(chunk))
            first, chunk = first + len(chunk), []
    if chunk:
        _chunk(chunk, first, detection, decoder, result)
        on_chunk(len(chunk))
    if result.last_ts is not None:
        for record in detection.advance(result.last_ts + 60):
            _book(result, record, result.last_ts + 60)
        for tally in result.tallies.values():  # still firing at the end: count it up to the last event
            for alert, since in tally.open.values():
                tally.excess_usd += alert.excess_cost_usd_per_hour * max(0.0, result.last_ts - since) / 3600
    return result


def _chunk(chunk: list[bytes], first: int, detection: Detection, decoder: Decoder, result: Backtest) -> None:
    events, rejects = decoder.decode_lines(chunk, first_line=first)
    result.events += len(events)
    result.rejected += len(rejects)
    for ev in events:
        if result.first_ts is None:
            result.first_ts = ev.ts
        result.last_ts = ev.ts if result.last_ts is None else max(result.last_ts, ev.ts)
        for record in detection.process(ev):
            _book(result, record, ev.ts)


def _book(result: Backtest, record: Anomaly, at: float) -> None:
    tally = result.tallies.get(record.rule)
    if tally is None:
        tally = result.tallies[record.rule] = RuleTally(record.rule, record.rule, "anomaly")
    if record.status == "firing":
        tally.fired += 1
        if len(tally.first_times) < FIRST_TIMES:
            tally.first_times.append(record.detected_at)
        delay = max(0.0, _parse_ts(record.detected_at) - _parse_ts(record.started_at))
        tally.leaked_usd += record.excess_cost_usd_per_hour * delay / 3600
        tally.open[record.id] = (record, at)
        return
    opened = tally.open.pop(record.id, None)
    if opened is not None:
        alert, since = opened
        tally.excess_usd += alert.excess_cost_usd_per_hour * max(0.0, at - since) / 3600


def _parse_ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
