"""Each partition's messages once and in offset order, whatever the consumer hands over around a seek.

Detection is only replay's if every group sees its events once and in
order. faust (0.15, measured against the test broker under load) does not
always hand a stream its messages that way around a restart or a seek: a
partition's later messages, fetched before the consumer seeks back to the
committed offset, can arrive first (96, 97, then 62 … 95), one message can
be passed over (54 after 52), and any can come twice. Taken as they come, the
first kind applies a group's later events before its earlier ones (which
are then skipped as already applied) and the second loses events outright.

:class:`InOrder` keeps, per topic partition, the next offset it expects
(the committed offset when the consumer knows it, else the first one seen):
that offset is taken, one below it is a repeat to drop, one above it is
early and is dropped too, and the caller seeks the partition back to the
expected offset so the broker sends it again. A topic may have offsets that
hold no message (transaction markers, compaction): an expected offset that
has not come after ``patience_s`` of early ones is given up and the early
message taken.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from enum import Enum

log = logging.getLogger(__name__)

PATIENCE_S = 10.0  # how long an early message may wait for the offset before it before that offset is given up
SEEK_AGAIN_S = 2.0  # a seek that brought nothing yet is asked for again after this long
IDLE_S = 5.0  # a partition with messages on the broker but none taken for this long is sought to its next offset


class Verdict(Enum):
    TAKE = "take"
    REPEAT = "repeat"
    EARLY = "early"


@dataclass(frozen=True, slots=True)
class Admission:
    """What to do with one message; ``seek_to``: where to send the partition back to, when it is time to."""

    verdict: Verdict
    seek_to: int | None = None


TAKEN = Admission(Verdict.TAKE)
"""The common verdict, made once: one is asked for every message the worker reads."""


@dataclass(slots=True)
class _Waiting:
    expected: int
    since: float
    sought_at: float


class InOrder:
    """Admits each (partition, offset) once, in order.

    >>> order = InOrder(start_of=lambda tp: 62, clock=lambda: 0.0)
    >>> [order.admit("p", o).verdict.value for o in (96, 97)]
    ['early', 'early']
    >>> order.admit("p", 96).seek_to is None  # already asked for
    True
    >>> [order.admit("p", o).verdict.value for o in (62, 63, 62, 64)]
    ['take', 'take', 'repeat', 'take']
    """

    def __init__(
        self,
        start_of: Callable[[Hashable], int | None],
        *,
        patience_s: float = PATIENCE_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._start_of = start_of
        self._patience_s = patience_s
        self._clock = clock
        self._next: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, _Waiting] = {}
        self._active: dict[Hashable, float] = {}  # when each partition last took a message (or was sought)

    def knows(self, tp: Hashable) -> bool:
        """Has ``tp`` a next offset yet (else the next :meth:`admit` asks ``start_of``)?"""
        return tp in self._next

    def admit(self, tp: Hashable, offset: int) -> Admission:
        expected = self._next.get(tp)
        if expected is None:
            start = self._start_of(tp)
            expected = offset if start is None else start
        if offset == expected:
            return self._take(tp, offset)
        if offset < expected:
            self._next[tp] = expected
            return Admission(Verdict.REPEAT)
        return self._early(tp, offset, expected)

    def overdue(self) -> list[tuple[Hashable, int]]:
        """(partition, offset) of seeks that brought nothing for ``SEEK_AGAIN_S``, to ask for again.

        A partition whose later messages were all handed over early (and
        dropped) sends nothing more to be admitted: only a timer asking this
        keeps it from waiting forever.

        >>> clock = [0.0]
        >>> order = InOrder(start_of=lambda tp: 5, clock=lambda: clock[0])
        >>> order.admit("p", 9).seek_to, order.overdue()
        (5, [])
        >>> clock[0] = SEEK_AGAIN_S
        >>> order.overdue(), order.overdue()
        ([('p', 5)], [])
        """
        now = self._clock()
        due = []
        for tp, waiting in self._waiting.items():
            if now - waiting.sought_at >= SEEK_AGAIN_S:
                waiting.sought_at = now
                due.append((tp, waiting.expected))
        return due

    def idle(self, tps: Iterable[Hashable], end_of: Callable[[Hashable], int | None]) -> list[tuple[Hashable, int]]:
        """(partition, next offset) of ``tps`` that have messages on the broker but took none for ``IDLE_S``.

        faust drops a fetched message below the offset it believes it has
        read, and that belief can run ahead of what it handed over around a
        seek: the partition then goes silent with messages waiting. Nothing
        arrives to show it, so a timer asks this with the partitions'
        end offsets, and the caller seeks them to where they stopped.

        >>> clock = [0.0]
        >>> order = InOrder(start_of=lambda tp: 62, clock=lambda: clock[0])
        >>> order.admit("p", 62).verdict.value, order.idle(["p", "q"], lambda tp: 98)
        ('take', [])
        >>> clock[0] = IDLE_S
        >>> order.idle(["p", "q"], lambda tp: 98), order.idle(["p"], lambda tp: 98)
        ([('p', 63), ('q', 62)], [])
        """
        now = self._clock()
        due = []
        for tp in tps:
            if tp in self._waiting:
                continue  # overdue() asks for it
            start = self._next.get(tp)
            if start is None:
                start = self._start_of(tp)
                if start is None:
                    continue
            end = end_of(tp)
            since = self._active.setdefault(tp, now)
            if end is not None and end > start and now - since >= IDLE_S:
                self._active[tp] = now
                due.append((tp, start))
        return due

    def forget(self, tps: Iterable[Hashable]) -> None:
        """Partitions this worker no longer reads (revoked): their next offset comes from the consumer again."""
        for tp in tps:
            self._next.pop(tp, None)
            self._waiting.pop(tp, None)
            self._active.pop(tp, None)

    def _take(self, tp: Hashable, offset: int) -> Admission:
        self._next[tp] = offset + 1
        self._waiting.pop(tp, None)
        self._active[tp] = self._clock()
        return TAKEN

    def _early(self, tp: Hashable, offset: int, expected: int) -> Admission:
        now = self._clock()
        self._next[tp] = expected
        waiting = self._waiting.get(tp)
        if waiting is None or waiting.expected != expected:
            self._waiting[tp] = _Waiting(expected, now, now)
            log.warning("%s: offset %d came before %d; seeking back to %d", tp, offset, expected, expected)
            return Admission(Verdict.EARLY, seek_to=expected)
        if now - waiting.since >= self._patience_s:
            log.warning("%s: offsets %d to %d never came in %.0f s; taking %d (a gap in the topic)",
                        tp, expected, offset - 1, now - waiting.since, offset)
            return self._take(tp, offset)
        if now - waiting.sought_at >= SEEK_AGAIN_S:
            waiting.sought_at = now
            return Admission(Verdict.EARLY, seek_to=expected)
        return Admission(Verdict.EARLY)
