"""Run one batch of keyed events through the engine, group by group, with state kept in a table.

This is the worker's processing step, kept synchronous and free of faust so
it can be tested with a plain dict for a table. A *group* is everything that
shares a partition key (``Engine.partition_key``): it lives on one worker at a
time, its state is one table value, and it is restored from the table before
its first event on this worker (after a restart or a rebalance).

A table value::

    {"v": 1, "state": <Engine.export_group(key)>, "applied": {"<route>": [<src offset>, <part>]}}

``applied`` makes redelivery harmless: after a crash, Kafka hands back the
messages since the last committed offset, and every segment at or before the
position already applied to the saved state is skipped instead of counted twice.
A route (:attr:`streams.codecs.Segment.route`) is a source partition of the
usage topic, ``"3"``, or ``"d3"`` for what was judged as read from it
without the repartition topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from detector.anomaly import Anomaly
from detector.events import Event
from streams.codecs import Segment

log = logging.getLogger(__name__)

STATE_VERSION = 1
PROCESSING_ERROR = "processing_error"
"""Dead-letter code of a valid event whose processing raised: a bug of ours, never the producer's."""
RESTORE_ERROR = "state_restore_error"
"""Dead-letter code of events whose key's saved state could not be restored; replay them once it is fixed."""
NOTHING = (-1, -1)


class GroupEngine(Protocol):
    """What the runner needs from :class:`detector.engine.Engine`."""

    def process_many(
        self, events: Iterable[Event], on_error: Callable[[Event, Exception], None] | None = None
    ) -> list[Anomaly]: ...
    def take_touched(self) -> set[str]: ...
    def partition_key(self, ev: Event) -> str: ...
    def export_group(self, key: str) -> dict[str, Any]: ...
    def import_group(self, key: str, state: dict[str, Any]) -> None: ...
    def has_group(self, key: str) -> bool: ...
    def drop_group(self, key: str) -> None: ...


class SavedStates(Protocol):
    """Where saved group states are read from: the faust table, or a dict in tests."""

    def get(self, key: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class Failure:
    """One event whose processing raised: it is dead-lettered, the batch goes on."""

    src_partition: int
    src_offset: int
    event: Event
    error: str
    code: str = PROCESSING_ERROR


@dataclass
class Outcome:
    """What one batch did: records to send, failures to dead-letter, table values to write."""

    anomalies: list[Anomaly] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    writes: dict[str, Any] = field(default_factory=dict)  # key → table value, as the runner's ``encode`` made it
    processed: int = 0
    skipped: int = 0
    restored: int = 0  # groups whose saved state was read back from the table


class GroupRunner:
    """Feeds keyed segments to one engine, restoring and saving each group's state.

    >>> from detector.pricing import PriceTable
    >>> from detector.engine import Engine
    >>> from detector.events import LlmRequest
    >>> runner = GroupRunner(Engine(PriceTable.packaged()), table={})
    >>> ev = LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=900, output_tokens=80, team="a")
    >>> out = runner.run([(runner.engine.partition_key(ev), 0, [Segment(0, 5, [ev])])])
    >>> out.processed, sorted(out.writes["llm:a/"]["applied"].items())
    (1, [('0', [5, 0])])
    """

    def __init__(self, engine: GroupEngine, table: SavedStates,
                 encode: Callable[[dict[str, Any]], Any] = lambda value: value) -> None:
        """``encode`` makes a table value of each group's state as it is exported (the worker: its JSON bytes).

        A batch may touch every group of a worker, and each value waits in
        :class:`Outcome` until the batch's records are on the broker: as
        dicts and lists they would take about three times their bytes.
        """
        self.engine = engine
        self.table = table
        self.encode = encode
        self._applied: dict[str, dict[str, tuple[int, int]]] = {}  # key → {route: (offset, part)}
        self._partition: dict[str, int] = {}  # key → the repartition-topic partition it lives on

    @property
    def groups(self) -> int:
        """Groups this worker holds now."""
        return len(self._applied)

    def holds(self, key: str) -> bool:
        """Whether this worker holds the key's live state (its saved state would be older or the same)."""
        return key in self._applied

    def keys(self, limit: int = 100) -> list[str]:
        """The first ``limit`` partition keys this worker holds, sorted: for the health page."""
        return sorted(self._applied)[:limit]

    def run(self, batch: Iterable[tuple[str, int, list[Segment]]]) -> Outcome:
        """Process ``(key, partition, segments)`` in order; return what to send and what to save."""
        out = Outcome()
        changed: set[str] = set()
        for key, partition, segments in batch:
            try:
                applied = self._restore(key, partition, out)
            except Exception as exc:  # the saved state is unusable: its events wait in the dead-letter topic
                reason = f"state of {key!r} could not be restored ({type(exc).__name__}: {exc})"
                out.failures += [
                    Failure(seg.src_partition, seg.src_offset, ev, reason, code=RESTORE_ERROR)
                    for seg in segments for ev in seg.events
                ]
                continue
            fresh = []
            for segment in segments:
                src = segment.route
                if segment.position <= applied.get(src, NOTHING):
                    out.skipped += len(segment.events)
                    continue
                fresh.append(segment)
                applied[src] = segment.position
            if fresh:
                self._process(fresh, out)
                changed.add(key)
        changed |= self.engine.take_touched()
        for key in changed:
            if key in self._applied:
                applied = {p: list(at) for p, at in self._applied[key].items()}
                out.writes[key] = self.encode(
                    {"v": STATE_VERSION, "state": self.engine.export_group(key), "applied": applied})
        return out

    def revoke(self, partitions: set[int]) -> int:
        """Forget the groups of partitions this worker no longer owns; return how many."""
        gone = [key for key, p in self._partition.items() if p in partitions]
        for key in gone:
            if self.engine.has_group(key):
                self.engine.drop_group(key)
            del self._applied[key], self._partition[key]
        return len(gone)

    def _restore(self, key: str, partition: int, out: Outcome) -> dict[str, tuple[int, int]]:
        applied = self._applied.get(key)
        if applied is not None:
            return applied
        saved = self.table.get(key)
        applied = {}
        if saved is not None:
            _check_saved(key, saved)
            self.engine.import_group(key, saved["state"])
            out.restored += 1
            applied = {str(p): (int(at[0]), int(at[1])) for p, at in saved["applied"].items()}
            log.info("state of %s restored, applied up to (source partition: offset, part) %s", key, applied)
        self._applied[key] = applied
        self._partition[key] = partition
        return applied

    def _process(self, segments: list[Segment], out: Outcome) -> None:
        """A key's segments in one call; an event that raises is dead-lettered and the others are kept.

        One call, not one per segment: a batch of single-event messages
        brings a key a segment per event, and each call cost about as much
        as detecting the event.
        """
        failed = len(out.failures)
        events = segments[0].events if len(segments) == 1 else [ev for seg in segments for ev in seg.events]

        def dead_letter(ev: Event, exc: Exception) -> None:  # one bad event must not stop the stream
            seg = next(seg for seg in segments if any(e is ev for e in seg.events))
            out.failures.append(Failure(seg.src_partition, seg.src_offset, ev, f"{type(exc).__name__}: {exc}"))

        out.anomalies += self.engine.process_many(events, on_error=dead_letter)
        out.processed += len(events) - (len(out.failures) - failed)


def _check_saved(key: str, saved: Any) -> None:
    if not isinstance(saved, dict) or saved.get("v") != STATE_VERSION or "state" not in saved:
        found = saved.get("v") if isinstance(saved, dict) else type(saved).__name__
        raise ValueError(
            f"state table value for key {key!r}: expected version {STATE_VERSION} with 'state' and 'applied', "
            f"found {found!r}; a table of another version needs a migration, not a restart"
        )

