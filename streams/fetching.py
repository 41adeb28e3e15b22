"""The worker's consumer: how long the broker may hold a fetch, and how fetched messages reach the streams.

**Fetch wait.** faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, fixed.
aiokafka keeps one fetch in flight per broker, and leaves out of it the
partitions whose records the worker has not taken yet. A busy worker is
slower than its fetches, so the next fetch often asks only for partitions
with nothing new (the repartition topic, the changelogs, usage partitions
already read), the broker holds it for the whole wait, and the partitions
with work run dry behind it. Measured in paired runs (``bench/``): one
batched worker was busy 77–83 % of the time and read 54–60k events/s;
with 100 ms it is busy 100 % and reads 72–75k/s, and two workers went
from 103–107k to 121–127k events/s.

**Delivery.** faust hands each fetched message to the streams inside a
race with a rebalance (``Service.wait_first``): four tasks and an
``asyncio.wait`` per message, the larger part of faust's cost when a message
holds one event. :class:`_Consumer` races once per fetch instead (see
``_drain_messages``). With it and the agents' batches
(:mod:`streams.batches`) a single-event worker went from 9–10k to 16k
messages/s, and to 20–22k once a batch's state writes overlapped the next
batch (``bench/stream_throughput.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import faust
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as faust_aiokafka

YIELD_EVERY = 100  # messages delivered between yields to the event loop, as faust's loop does


class App(faust.App):
    """faust's App, whose consumer lets the broker hold a fetch at most ``fetch_wait_ms`` and races once per fetch."""

    def __init__(self, id: str, *, fetch_wait_ms: int, **options: Any) -> None:
        super().__init__(id, **options)
        self.fetch_wait_ms = fetch_wait_ms

    def _new_transport(self) -> Any:
        transport = super()._new_transport()
        if isinstance(transport, faust_aiokafka.Transport):
            transport.Consumer = _Consumer  # on this transport only: the producer's has its own
        return transport


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        """faust's loop handing fetched messages to the streams, racing each fetch, not each message, with a rebalance.

        faust's own loop awaits ``wait_first(callback(message),
        suspend_flow.wait())`` for every message: four tasks and an
        ``asyncio.wait`` a message, most of what a message of one event costs
        (``bench/stream_throughput.py``). Here one such race covers the
        messages of a fetch, delivered in order as faust delivers them. A
        rebalance that suspends the flow cancels the rest of the fetch, as
        it cancels the rest of each message's delivery in faust's loop, and
        the consumer then seeks back to the committed offsets. A commit that
        is due by count is made between fetches, outside the race.
        """
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set
        commit_every = self._commit_every
        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                self.diag.set_flag(CONSUMER_FETCHING)
                if commit_every is not None and self._n_acked >= commit_every:
                    self._n_acked = 0
                    await self.commit()
                fetched = self.getmany(timeout=1.0)
                await self.sleep(0)  # getmany may return at once, again and again: let the loop run
                if not self.should_stop:
                    await self.wait_first(self._deliver(fetched), self.suspend_flow.wait())
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    async def _deliver(self, fetched: AsyncIterator[Any]) -> None:
        """One fetch's messages to the streams, with faust's steps per message but no race per message."""
        callback = self.callback
        read_offset = self._read_offset
        acks_enabled_for = self.app.topics.acks_enabled_for
        since_yield = 0
        async for tp, message in fetched:
            since_yield += 1
            if since_yield > YIELD_EVERY:
                await asyncio.sleep(0)
                since_yield = 0
            offset = message.offset
            last = read_offset[tp]
            if last is not None and offset < last:
                continue  # read already: faust drops it the same way
            if last and offset - last > 1 and acks_enabled_for(message.topic):
                await self._add_gap(tp, last + 1, offset)  # offsets the broker skipped still count as done
            await callback(message)
            read_offset[tp] = offset


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when it starts its fetcher, which is after this; faust passes no setting through.
        consumer._fetch_max_wait_ms = self.app.fetch_wait_ms
        return consumer
