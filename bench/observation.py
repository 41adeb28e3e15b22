"""One pass over a stream of event lines: what spendwatch said, and what the scorer needs to judge it.

The lines are decoded and fed to the engine exactly as ``spendwatch replay``
does; the same decoded events fill the per-minute sums (the 3-sigma baseline
and the dollars leaked are computed from them) and, for each incident
window, the times, prompt sizes and outcomes of the requests of its target
series (affected requests, rate at onset, the CUSUM oracles).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bench.minutes import MinuteSums
from bench.scoring import GRACE_S, Alert, Window
from detector.config import Settings
from detector.detection_run import engine_for
from detector.events import Decoder, LlmRequest
from detector.pricing import PriceTable
from detector.replay import CHUNK_LINES

LOOKBACK_S = 3600.0  # requests before onset kept too: the rate at onset, and the oracle's baseline
FAILED, RETRY = 1, 2  # a request's flags: it did not succeed (error share); it is a retry (retry share)


@dataclass
class TargetRequests:
    """Requests of one incident's target series from an hour before onset to the end of its grace."""

    ts: list[float] = field(default_factory=list)
    input_tokens: list[int] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)  # FAILED | RETRY: what the share tests count

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(event times, prompt sizes, flags), in event-time order."""
        order = np.argsort(np.asarray(self.ts), kind="stable")
        return (np.asarray(self.ts, dtype=float)[order], np.asarray(self.input_tokens, dtype=float)[order],
                np.asarray(self.flags, dtype=np.int8)[order])


@dataclass
class Observation:
    """Everything one pass produced."""

    firings: list[Alert]
    sums: MinuteSums
    targets: dict[str, TargetRequests]
    events: int
    rejected: int


def observe(lines: Iterable[bytes], windows: Sequence[Window], start_s: float, minutes: int,
            settings: Settings | None = None, prices: PriceTable | None = None) -> Observation:
    """Replay ``lines`` through a fresh engine and collect the scorer's material.

    ``start_s`` and ``minutes`` give the span the per-minute sums cover.
    """
    prices = prices or PriceTable.packaged()
    settings = settings or Settings()
    engine, decoder = engine_for(settings, prices), Decoder(settings)  # the rules `spendwatch replay` runs
    sums = MinuteSums(prices, start_s, minutes)
    targets = {w.key: TargetRequests() for w in windows}
    hits: dict[tuple[str | None, ...], list[Window]] = {}
    firings: list[Alert] = []
    events = rejected = 0
    chunk: list[bytes] = []
    first = 1

    def run(chunk: list[bytes]) -> None:
        nonlocal events, rejected
        decoded, rejects = decoder.decode_lines(chunk, first_line=first)
        events += len(decoded)
        rejected += len(rejects)
        for record in engine.process_many(decoded):
            if record.status == "firing":
                firings.append(Alert.of(record))
        sums.add(decoded)
        _collect(decoded, windows, hits, targets)

    for line in lines:
        chunk.append(line)
        if len(chunk) >= CHUNK_LINES:
            run(chunk)
            first += len(chunk)
            chunk = []
    if chunk:
        run(chunk)
    return Observation(firings, sums, targets, events, rejected)


def _collect(events: Sequence[object], windows: Sequence[Window],
             hits: dict[tuple[str | None, ...], list[Window]], targets: dict[str, TargetRequests]) -> None:
    """Keep the requests of each window's target series that fall in its span of interest."""
    for ev in events:
        if type(ev) is not LlmRequest:
            continue
        key = (ev.team, ev.feature, ev.model)
        mine = hits.get(key)
        if mine is None:
            labels = {k: v for k, v in (("team", ev.team), ("feature", ev.feature), ("model", ev.model),
                                         ("product", ev.product), ("category", ev.category),
                                         ("provider", ev.provider)) if v is not None}
            mine = hits[key] = [w for w in windows if w.target.items() <= labels.items()]
        for w in mine:
            if w.start_s - LOOKBACK_S <= ev.ts <= w.end_s + GRACE_S:
                t = targets[w.key]
                t.ts.append(ev.ts)
                t.input_tokens.append(ev.input_tokens)
                t.flags.append((FAILED if ev.status != "ok" else 0) | (RETRY if ev.attempt > 1 else 0))
