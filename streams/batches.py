"""Batches of events straight from an agent's channel: faust's bookkeeping per message, without its iteration.

faust's ``Stream.take_events`` fills its buffer through the stream's
iterator, which per message yields to the event loop (``sleep(0)``) and
awaits a processor; with one event per message that is a large part of what
a message costs. :class:`Batches` takes the events waiting in the
stream's channel queue as a list, with the same steps per message as the
iterator (the message is tracked as unacknowledged, the sensors see it in
and out, a message of an earlier rebalance generation or read while the
flow is suspended is skipped and acknowledged). It acknowledges a batch's
events once the caller comes back for the next batch, or once the sends
the caller holds it on are done; never for a batch whose processing
raised, which ``take_events`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterable
from typing import Any

import faust


class Batches:
    """An agent's stream as lists of up to ``max_`` events: what is waiting, or what arrives within ``within`` s.

    A batch is acknowledged once the agent comes back for the next one, or,
    if the agent holds it (:meth:`hold`) on sends still in flight, once
    those are done: meanwhile the next batch is taken and processed, so the
    wait for the broker overlaps the work. At most one batch waits so: the
    next is acknowledged only after it.
    """

    def __init__(self, stream: faust.StreamT, max_: int, within: float) -> None:
        self.stream = stream
        self.max = max_
        self.within = within
        self._held: list[Awaitable[Any]] = []

    def hold(self, pending: Iterable[Awaitable[Any]]) -> None:
        """Acknowledge the batch in hand only once ``pending`` is done (e.g. its state writes are on the broker)."""
        self._held.extend(pending)

    def __aiter__(self) -> AsyncIterator[list[faust.EventT]]:
        return self._batches()

    async def _batches(self) -> AsyncIterator[list[faust.EventT]]:
        stream = self.stream
        await stream.maybe_start()
        app = stream.app
        waiting: asyncio.Future[None] | None = None  # the last batch, acknowledged once its sends are done
        while not stream.should_stop:
            got = await self._take(stream.channel.queue)  # type: ignore[attr-defined]
            events, states, skipped = _admit(stream, app, got)
            _ack(stream, skipped, [None] * len(skipped))  # not for us to process, and not to hold back commits
            if not events:
                continue
            yield events  # the agent's batch: returns here only when it is done with it
            held, self._held = self._held, []
            if waiting is not None:
                await waiting  # raises if its sends failed: then neither batch is ever acknowledged
            if held:
                waiting = asyncio.ensure_future(_ack_when_done(stream, held, events, states))
            else:
                waiting = None
                _ack(stream, events, states)

    async def _take(self, queue: Any) -> list[Any]:
        got = [await queue.get()]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.within
        while len(got) < self.max:
            if not queue.empty():
                got.append(queue.get_nowait())
                continue
            left = deadline - loop.time()
            if left <= 0:
                break
            try:
                got.append(await asyncio.wait_for(queue.get(), left))
            except TimeoutError:
                break
        return got


def take_batches(stream: faust.StreamT, max_: int, within: float) -> Batches:
    """:class:`Batches` of ``stream``, each acknowledged when the agent comes back for the next."""
    return Batches(stream, max_, within)


async def _ack_when_done(stream: Any, pending: list[Awaitable[Any]], events: list[Any], states: list[Any]) -> None:
    await asyncio.gather(*pending)
    _ack(stream, events, states)


def _admit(stream: Any, app: Any, got: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """The events to process, tracked as faust's stream iterator tracks them, their sensor states; those it skips."""
    generation, active = app.consumer_generation_id, app.flow_control.is_active()
    acking, unacked = app.topics.acking_topics, app.consumer.unacked
    on_message_in, on_event_in = stream._on_message_in, stream._on_stream_event_in
    events, states, skipped = [], [], []
    for event in got:
        message = event.message
        if not active or message.generation_id != generation:
            skipped.append(event)  # of a rebalance since: its partition may be another worker's now
            continue
        if message.topic in acking and not message.tracked:
            message.tracked = True
            unacked.add(message)
            on_message_in(message.tp, message.offset, message)
        states.append(on_event_in(message.tp, message.offset, stream, event))
        events.append(event)
    return events, states, skipped


def _ack(stream: Any, events: list[Any], states: list[Any]) -> None:
    """Acknowledge ``events`` as faust's stream does: their offsets may be committed once every stream is done."""
    on_event_out, on_message_out = stream._on_stream_event_out, stream._on_message_out
    for event, state in zip(events, states, strict=True):
        last = event.ack()
        message = event.message
        on_event_out(message.tp, message.offset, stream, event, state)
        if last:
            on_message_out(message.tp, message.offset, message)
