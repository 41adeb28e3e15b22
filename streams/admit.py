"""The agents' gate between what faust hands over and what they process (see :mod:`streams.ordering`)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import faust

from streams.ordering import InOrder, Verdict

RESEEK_EVERY_S = 1.0
START_WAIT_S = 30.0  # longest a partition's first message waits for faust to learn its committed offset
START_POLL_S = 0.05
log = logging.getLogger(__name__)


class Admitter:
    """What the agents take of what faust hands them: each partition in order, from its committed offset.

    The first message of a partition waits (up to ``START_WAIT_S``) until
    faust knows the partition's committed offset, which it learns when it
    seeks there after a rebalance: messages handed over before that seek can
    start anywhere (measured: at 96 when 62 was committed). A message is never
    dropped while it is the next one, so what faust acknowledges of a dropped
    one (it acknowledges every message of a batch) never closes a gap: it
    commits only past offsets acknowledged without one (faust 0.15 lets a
    single missing offset through, so a crash in the moment between an early
    message and the seek that brings back the one before it can still lose
    that one). Early and repeated messages are dropped, and an early one sends
    its partition back to the offset it skipped.
    """

    def __init__(self, app: faust.App, count: Callable[[str], None], topics: Iterable[str] = ()) -> None:
        self.app = app
        self.topics = frozenset(topics)  # whose partitions the timer watches for going silent
        self.count = count  # a dropped message or a silent partition, by why: repeat, early, silent
        self.order = InOrder(start_of=self._committed)
        self._seeking: dict[Any, asyncio.Future[None]] = {}

    async def take_many(self, events: Iterable[Any]) -> list[Any]:
        """The events of a batch to process, in order; the others are dropped, and come again where they belong.

        Awaits only for a partition whose start is not known yet, rather than
        making a coroutine of every message: a batch of one-event messages
        pays that per event.
        """
        taken = []
        knows = self.order.knows
        for event in events:
            message = event.message
            if not knows(message.tp):
                await self._wait_for_start(message.tp)
            if self._admit(message):
                taken.append(event)
        return taken

    def _admit(self, message: Any) -> bool:
        admission = self.order.admit(message.tp, message.offset)
        if admission.verdict is Verdict.TAKE:
            return True
        self.count(admission.verdict.value)
        if admission.seek_to is not None:
            self._seek_soon(message.tp, admission.seek_to)
        return False

    def watch(self) -> None:
        """Register on the app what keeps the gate going: the timer that seeks again, forgetting revoked partitions."""

        @self.app.timer(RESEEK_EVERY_S)
        async def reseek() -> None:
            await self.reseek()

        @self.app.on_partitions_revoked.connect
        async def forget_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
            self.forget(revoked)

    async def reseek(self) -> None:
        """Ask again for the partitions still waiting for an offset, and wake silent ones (run on a timer)."""
        for tp, offset in self.order.overdue():
            self._seek_soon(tp, offset)
        if self.app.rebalancing:
            return
        consumer = self.app.consumer
        mine = [tp for tp in consumer.assignment() if tp.topic in self.topics]
        for tp, offset in self.order.idle(mine, consumer.highwater):
            log.warning("%s: messages up to %s on the broker, none taken since offset %d; seeking there",
                        tp, consumer.highwater(tp), offset)
            self.count("silent")
            self._seek_soon(tp, offset)

    def _seek_soon(self, tp: Any, offset: int) -> None:
        """Seek in the background: the agent goes on with the other partitions meanwhile, one seek per partition."""
        if tp in self._seeking:
            return
        task = asyncio.ensure_future(self._seek(tp, offset))
        self._seeking[tp] = task
        task.add_done_callback(lambda _: self._seeking.pop(tp, None))

    def forget(self, tps: set[Any]) -> None:
        self.order.forget(tps)

    async def _wait_for_start(self, tp: Any) -> None:
        """Until faust knows where ``tp`` starts, or its rebalance is over (a partition never committed)."""
        deadline = time.monotonic() + START_WAIT_S
        while self._committed(tp) is None and self.app.rebalancing and time.monotonic() < deadline:
            await asyncio.sleep(START_POLL_S)

    async def _seek(self, tp: Any, offset: int) -> None:
        try:  # in the consumer's own thread, as faust seeks during recovery
            await self.app.consumer.seek_wait({tp: offset})
        except Exception:  # revoked meanwhile, or the broker is away: the timer asks again
            log.warning("seeking %s back to %d failed; trying again", tp, offset, exc_info=True)

    def _committed(self, tp: Any) -> int | None:
        """The partition's committed offset (the next to read), as faust last sought or committed it."""
        committed = getattr(self.app.consumer, "_committed_offset", None)  # faust keeps no public accessor
        return committed.get(tp) if committed is not None else None
