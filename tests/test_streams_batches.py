"""Batches straight from an agent's channel (streams/batches.py), and the consumer that races once per fetch.

The stream here is a stand-in with faust's real channel queue: enough for
what take_batches reads and calls. The worker's and the sink's agents read
with it against the real broker in test_streams_kafka.py and
test_streams_sink.py (same records as replay, nothing lost, restarts).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.app import new_app
from streams.batches import take_batches
from streams.fetching import _Consumer
from streams.settings import StreamSettings

TOPIC = "spendwatch.usage"


@dataclass(eq=False)
class Message:
    offset: int
    generation_id: int = 1
    topic: str = TOPIC
    tracked: bool = False
    acked: bool = False

    @property
    def tp(self) -> tuple[str, int]:
        return (self.topic, 0)


@dataclass(eq=False)
class Event:
    message: Message

    @property
    def value(self) -> int:
        return self.message.offset

    def ack(self) -> bool:
        self.message.acked = True
        return True


@dataclass
class Flow:
    active: bool = True

    def is_active(self) -> bool:
        return self.active


@dataclass
class App:
    consumer_generation_id: int = 1
    flow_control: Flow = field(default_factory=Flow)
    unacked: set[Any] = field(default_factory=set)

    @property
    def topics(self) -> Any:
        return type("Topics", (), {"acking_topics": {TOPIC}})()

    @property
    def consumer(self) -> Any:
        return type("Consumer", (), {"unacked": self.unacked})()


class Stream:
    """What take_batches uses of a faust stream, with faust's channel queue and sensors that count."""

    def __init__(self) -> None:
        self.app = App()
        self.channel = type("Channel", (), {})()
        flow = FlowControlEvent()
        flow.resume()
        self.channel.queue = ThrowableQueue(flow_control=flow)
        self.should_stop = False
        self.seen: list[tuple[str, int]] = []
        self._on_message_in = lambda tp, offset, message: self.seen.append(("message in", offset))
        self._on_stream_event_in = lambda tp, offset, stream, event: {"in": offset}
        self._on_message_out = lambda tp, offset, message: self.seen.append(("message out", offset))
        self._on_stream_event_out = lambda tp, offset, stream, event, state: self.seen.append(("event out", offset))

    async def maybe_start(self) -> None:
        return None

    def put(self, *events: Event) -> None:
        for event in events:
            self.channel.queue.put_nowait(event)


def events(*offsets: int, generation: int = 1) -> list[Event]:
    return [Event(Message(offset, generation)) for offset in offsets]


async def first_batches(stream: Stream, count: int, max_: int = 3, within: float = 0.05) -> list[list[int]]:
    out = []
    async for batch in take_batches(stream, max_, within):  # type: ignore[arg-type]
        out.append([e.value for e in batch])
        if len(out) == count:
            break
    return out


def test_a_batch_holds_what_waits_up_to_max() -> None:
    stream = Stream()
    stream.put(*events(0, 1, 2, 3, 4))
    assert asyncio.run(first_batches(stream, 2)) == [[0, 1, 2], [3, 4]]


def test_a_batch_waits_within_for_more_then_goes() -> None:
    async def run() -> list[list[int]]:
        stream = Stream()
        stream.put(*events(0))

        async def later() -> None:
            await asyncio.sleep(0.02)
            stream.put(*events(1))
            await asyncio.sleep(0.3)
            stream.put(*events(2))

        feeder = asyncio.create_task(later())
        batches = await first_batches(stream, 2, max_=10, within=0.15)
        await feeder
        return batches

    assert asyncio.run(run()) == [[0, 1], [2]]


def test_a_batch_is_acknowledged_once_the_caller_comes_back_for_the_next() -> None:
    async def run() -> None:
        stream = Stream()
        taken = events(0, 1)
        stream.put(*taken, *events(2))
        async for batch in take_batches(stream, 2, 0.05):  # type: ignore[arg-type]
            if batch[0].value == 0:
                assert not any(e.message.acked for e in taken)  # still being processed
                assert {e.message for e in taken} <= stream.app.unacked
            else:
                assert all(e.message.acked for e in taken)
                break
        assert ("message in", 0) in stream.seen and ("message out", 0) in stream.seen

    asyncio.run(run())


def test_a_batch_whose_processing_raised_is_not_acknowledged() -> None:
    async def run() -> list[Event]:
        stream = Stream()
        taken = events(0, 1)
        stream.put(*taken)
        with pytest.raises(RuntimeError):
            async for _ in take_batches(stream, 5, 0.01):  # type: ignore[arg-type]
                raise RuntimeError("the broker refused a send")
        return taken

    assert not any(e.message.acked for e in asyncio.run(run()))  # its offsets stay uncommitted: redelivered


def test_messages_of_an_earlier_rebalance_are_acknowledged_not_taken() -> None:
    async def run() -> tuple[list[list[int]], list[Event]]:
        stream = Stream()
        stream.app.consumer_generation_id = 2
        stale = events(0, 1, generation=1)
        stream.put(*stale, *events(2, 3, generation=2))
        batches = await first_batches(stream, 1, max_=10, within=0.01)
        return batches, stale

    batches, stale = asyncio.run(run())
    assert batches == [[2, 3]]
    assert all(e.message.acked for e in stale) and not any(e.message.tracked for e in stale)


def test_the_consumer_has_what_its_fetch_race_reads_from_faust() -> None:
    """faust's loop is replaced, and its private parts read: an upgrade of faust that moves them fails here."""
    consumer = new_app("batches", StreamSettings(broker="kafka://127.0.0.1:9", consumer_group="batches")).consumer
    try:
        assert isinstance(consumer, _Consumer)
        assert consumer._read_offset[("t", 0)] is None  # read offsets default to None per partition
        for name in ("_commit_every", "_n_acked", "suspend_flow", "diag", "callback", "_add_gap", "getmany",
                     "wait_first", "commit", "consumer_stopped_errors", "_stopped"):
            assert hasattr(consumer, name), name
    finally:
        consumer._thread.thread_loop.close()  # the loop of its thread, which is never started here


def test_a_held_batch_is_acknowledged_once_its_sends_are_done_while_the_next_is_processed() -> None:
    async def run() -> None:
        stream = Stream()
        first, second = events(0, 1), events(2)
        stream.put(*first, *second)
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()  # a state write in flight
        batches = take_batches(stream, 2, 0.01)  # type: ignore[arg-type]
        async for batch in batches:
            if batch[0].value == 0:
                batches.hold([sent])
                continue
            assert not any(e.message.acked for e in first)  # the next batch is in hand; the first still waits
            sent.set_result(None)
            for _ in range(10):  # the acknowledging task runs once the send's future is done
                await asyncio.sleep(0)
            assert all(e.message.acked for e in first)
            break

    asyncio.run(run())


def test_a_held_batch_whose_send_failed_is_never_acknowledged_and_the_agent_hears_of_it() -> None:
    async def run() -> list[Event]:
        stream = Stream()
        first = events(0, 1)
        stream.put(*first, *events(2))
        failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        failed.set_exception(ConnectionError("the broker refused the changelog write"))
        batches = take_batches(stream, 2, 0.01)  # type: ignore[arg-type]
        with pytest.raises(ConnectionError):
            async for batch in batches:
                if batch[0].value == 0:
                    batches.hold([failed])
        return first

    assert not any(e.message.acked for e in asyncio.run(run()))
