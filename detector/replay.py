"""Detection over a finite stream of raw lines: the loop `replay` and `demo` share.

The caller owns the I/O (opening files, printing, progress bars) and passes
callbacks; this module only decodes in chunks, runs the engine in event time
and counts what happened, so the same loop is testable without a terminal.
"""

from __future__ import annotations

import gc
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from detector.anomaly import Anomaly
from detector.engine import Engine
from detector.events import Decoder, Event, Reject
from detector.ledger import SpendLedger

CHUNK_LINES = 8192
GC_GEN0_THRESHOLD = 50_000


def tune_gc_for_streaming() -> None:
    """Make the garbage collector cheap for a long pass over events.

    Every decoded event is a new container object, so at the default
    threshold (700) the collector runs every few hundred events and walks
    everything young; events die within their chunk, so those runs find
    nothing. Freezing what start-up built and collecting the young
    generation every 50,000 allocations instead costs a few MB and buys
    about 10 % of replay throughput. Process-wide, so only commands that
    stream (replay, demo, the worker) call it.
    """
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


@dataclass
class ReplaySummary:
    """What one replay saw: the figures its closing summary prints."""

    lines: int = 0
    events: int = 0
    rejects: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    fired: int = 0
    resolved: int = 0
    series: int = 0
    ledger: SpendLedger = field(default_factory=SpendLedger)

    @property
    def rejected(self) -> int:
        return sum(self.rejects.values())


def replay_lines(
    lines: Iterable[bytes],
    engine: Engine,
    decoder: Decoder,
    *,
    on_anomaly: Callable[[Anomaly], None] = lambda a: None,
    on_reject: Callable[[Reject], None] = lambda r: None,
    on_chunk: Callable[[int], None] = lambda n: None,
    on_events: Callable[[list[Event]], None] | None = None,
) -> ReplaySummary:
    """Decode and detect over ``lines``; report each record and reject as it happens.

    ``on_chunk`` receives the number of lines just consumed (for a progress bar);
    ``on_events`` each chunk's decoded events, after detection (for the history store).
    """
    summary = ReplaySummary(ledger=engine.ledger)
    chunk: list[bytes] = []
    first = 1
    for line in lines:
        chunk.append(line)
        if len(chunk) >= CHUNK_LINES:
            _run_chunk(chunk, first, engine, decoder, summary, on_anomaly, on_reject, on_events)
            on_chunk(len(chunk))
            first += len(chunk)
            chunk = []
    if chunk:
        _run_chunk(chunk, first, engine, decoder, summary, on_anomaly, on_reject, on_events)
        on_chunk(len(chunk))
    summary.ledger = engine.ledger  # read last: closes every series' open minute
    summary.duplicates = decoder.duplicates
    summary.fired, summary.resolved = engine.fired, engine.resolved
    summary.series = engine.series_count
    return summary


def _run_chunk(
    chunk: list[bytes],
    first: int,
    engine: Engine,
    decoder: Decoder,
    summary: ReplaySummary,
    on_anomaly: Callable[[Anomaly], None],
    on_reject: Callable[[Reject], None],
    on_events: Callable[[list[Event]], None] | None,
) -> None:
    events, rejects = decoder.decode_lines(chunk, first_line=first)
    summary.lines += len(chunk)
    summary.events += len(events)
    for reject in rejects:
        summary.rejects[reject.code] += 1
        on_reject(reject)
    for record in engine.process_many(events):
        on_anomaly(record)
    if on_events is not None:
        on_events(events)
