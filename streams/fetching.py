"""The consumer's fetch wait: how long the broker may hold a fetch that finds no new data.

faust builds its aiokafka consumer with ``fetch_max_wait_ms=1500``, fixed.
aiokafka keeps one fetch in flight per broker, and leaves out of it the
partitions whose records the worker has not taken yet. A busy worker is
slower than its fetches, so the next fetch often asks only for partitions
with nothing new (the repartition topic, the changelogs, usage partitions
already read), the broker holds it for the whole wait, and the partitions
with work run dry behind it. Measured in paired runs (``bench/``): one
batched worker was busy 77–83 % of the time and read 54–60k events/s;
with 100 ms it is busy 100 % and reads 72–75k/s, and two workers went
from 103–107k to 121–127k events/s.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka


class App(faust.App):
    """faust's App, whose consumer lets the broker hold a fetch at most ``fetch_wait_ms``."""

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


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka reads it when it starts its fetcher, which is after this; faust passes no setting through.
        consumer._fetch_max_wait_ms = self.app.fetch_wait_ms
        return consumer
