"""The two agents: decode and repartition, then detect; a per-event failure goes to the dead-letter topic.

::

    spendwatch.usage ──decode──► <group>-events-by-key-v2 ──detect──► spendwatch.anomalies
          │ (raw bytes)     │ (the keys of one partition)        │ (anomaly id, Contract 3)
          └─ reject ────────┴──► spendwatch.deadletter ◄──────────┘ event that raised

Both agents take messages in batches (``stream.take_events``): faust's own
cost per message is far larger than detection's per event, so one batch
means one send per partition (carrying every key that lives there) and one
table write per key. Every send of
a batch is awaited before the batch is acknowledged, so an offset is only
committed once what it produced is on the broker (at-least-once; the state
table's ``applied`` offsets make the repeats harmless).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import faust

from detector.engine_state import group_key
from detector.events import Decoder, Event
from streams.admit import Admitter
from streams.codecs import (
    CodecError,
    Origin,
    Segment,
    anomaly_record,
    dead_letter,
    decode_keyed,
    event_text,
    pack_keyed,
    partition_of,
    reject_letter,
)
from streams.groups import PROCESSING_ERROR, GroupRunner, Outcome
from streams.settings import StreamSettings
from streams.tables import KeyedTable
from streams.topics import Topics
from streams.web import Metrics

EXIT_BATCH_FAILED = 70
"""Exit status when a batch fails as a whole (EX_SOFTWARE): the supervisor restarts the worker."""

log = logging.getLogger(__name__)


@dataclass
class Progress:
    """Offsets read so far, per (topic, partition): what consumer lag is measured against."""

    next_offset: dict[tuple[str, int], int] = field(default_factory=dict)

    def read(self, message: Any) -> Origin:
        self.next_offset[(message.topic, message.partition)] = message.offset + 1
        return Origin(message.topic, message.partition, message.offset)


class DecodeStep:
    """Usage messages → keyed batches for the repartition topic, and dead letters.

    Keeps the decoder (it drops repeated request_ids) and the counters;
    ``key_of`` is the engine's partition key under the rules in force.
    """

    def __init__(self, decoder: Decoder, metrics: Metrics, key_of: Callable[[Event], str] = group_key) -> None:
        self.decoder = decoder
        self.metrics = metrics
        self.key_of = key_of
        self._duplicates = decoder.duplicates

    def split(self, messages: list[tuple[Origin, bytes]]) -> tuple[dict[str, list[Segment]], list[bytes]]:
        """Decode each message; group its events by partition key, in order; dead-letter the rest."""
        by_key: dict[str, list[Segment]] = {}
        letters: list[bytes] = []
        for origin, payload in messages:
            self.metrics.messages.inc()
            events, rejects = self.decoder.decode_payload(payload)
            whole = not events and len(rejects) == 1 and b"\n" not in payload.strip()
            for reject in rejects:
                letters.append(reject_letter(origin, reject) if not whole else dead_letter(
                    origin, reject.code, reject.reason, payload, reject.line))
                self.metrics.deadlettered.labels(reject.code).inc()
            for key, group in _group(origin, events, letters, self.metrics, self.key_of).items():
                by_key.setdefault(key, []).append(Segment(origin.partition, origin.offset, group))
        duplicates = self.decoder.duplicates
        if duplicates > self._duplicates:
            self.metrics.duplicates.inc(duplicates - self._duplicates)
            self._duplicates = duplicates
        return by_key, letters


def _group(origin: Origin, events: list[Event], letters: list[bytes], metrics: Metrics,
           key_of: Callable[[Event], str]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = {}
    for ev in events:
        try:
            key = key_of(ev)
        except Exception as exc:  # a bug of ours: this event goes to the dead-letter topic, the rest go on
            letters.append(dead_letter(origin, PROCESSING_ERROR, _error_text(exc), event_text(ev)))
            metrics.deadlettered.labels(PROCESSING_ERROR).inc()
            continue
        groups.setdefault(key, []).append(ev)
    return groups


def attach_agents(
    app: faust.App,
    topics: Topics,
    table: KeyedTable,
    runner: GroupRunner,
    decode: DecodeStep,
    metrics: Metrics,
    settings: StreamSettings,
    progress: Progress,
) -> None:
    """Register the decode and detect agents on ``app``; ``runner`` reads state through ``table``."""
    take = (settings.batch_max, settings.batch_within_s)
    usage_topic = settings.usage_topic
    admit = Admitter(app, lambda why: metrics.out_of_order.labels(why).inc(),
                     topics=(usage_topic, topics.by_key.get_topic_name()))
    admit.watch()

    @app.agent(topics.usage, name="spendwatch-decode")
    async def decode_agent(stream: faust.StreamT) -> None:
        await _declare(topics)
        async for batch in stream.take_events(*take):
            async with or_exit("decode"):
                messages = [(progress.read(e.message), e.value) for e in batch if await admit.take(e)]
                by_key, letters = decode.split(messages)
                sends = [
                    await topics.by_key.send(value=message, partition=partition)
                    for partition, keyed in _by_partition(by_key, settings.partitions).items()
                    for message in pack_keyed(keyed)
                ]
                sends += [await topics.deadletter.send(value=letter) for letter in letters]
                await _delivered(sends)

    @app.agent(topics.by_key, name="spendwatch-detect")
    async def detect_agent(stream: faust.StreamT) -> None:
        await _declare(topics)
        async for batch in stream.take_events(*take):
            async with or_exit("detect"):
                keyed, letters = [], []
                for e in batch:
                    if not await admit.take(e):
                        continue
                    origin = progress.read(e.message)
                    try:
                        for key, segments in decode_keyed(e.value):
                            table.bind(key, e)
                            keyed.append((key, origin.partition, segments))
                    except CodecError as exc:
                        letters.append(dead_letter(origin, "bad_repartition_payload", str(exc), e.value))
                        metrics.deadlettered.labels("bad_repartition_payload").inc()
                started = time.perf_counter()
                outcome = runner.run(keyed)
                metrics.latency.observe(time.perf_counter() - started)
                letters += _failure_letters(outcome, usage_topic, metrics)
                sends = [
                    await topics.anomalies.send(key=a.id.encode(), value=anomaly_record(a))
                    for a in outcome.anomalies
                ]
                sends += [await topics.deadletter.send(value=letter) for letter in letters]
                await _delivered(sends)
                _count(outcome, runner, metrics)
                for key, value in outcome.writes.items():  # only once what the batch produced is on the broker
                    table[key] = value
                await table.written()  # and the batch is acknowledged only once its state is there too
                held = table.held()
                if held is not None:
                    metrics.table_values.set(held)

    by_key = topics.by_key.get_topic_name()
    revoking: set[int] = set()

    @app.on_partitions_revoked.connect
    async def note_revoked(sender: Any, revoked: set[Any], **kwargs: Any) -> None:
        """A rebalance revokes every partition first (Kafka's eager protocol): which leave is known at assignment."""
        revoking.update(tp.partition for tp in revoked if tp.topic == by_key)

    @app.on_partitions_assigned.connect
    async def forget_moved(sender: Any, assigned: set[Any], **kwargs: Any) -> None:
        """Forget the groups of partitions now elsewhere; those given back keep their live state.

        Forgetting them all and reading them back from the table would give
        the same state, at the cost of re-importing every group of the worker
        at each rebalance (a worker joining or leaving).
        """
        gone = revoking - {tp.partition for tp in assigned if tp.topic == by_key}
        revoking.clear()
        if gone:
            runner.revoke(gone)
            metrics.groups.set(runner.groups)


def _by_partition(by_key: dict[str, list[Segment]], partitions: int) -> dict[int, list[tuple[str, list[Segment]]]]:
    """Keys grouped by the repartition-topic partition they live on, so that each partition gets one message."""
    out: dict[int, list[tuple[str, list[Segment]]]] = {}
    for key, segments in by_key.items():
        out.setdefault(partition_of(key, partitions), []).append((key, segments))
    return out


def _failure_letters(outcome: Outcome, usage_topic: str, metrics: Metrics) -> list[bytes]:
    letters = []
    for failure in outcome.failures:
        origin = Origin(usage_topic, failure.src_partition, failure.src_offset)
        letters.append(dead_letter(origin, failure.code, failure.error, event_text(failure.event)))
        metrics.deadlettered.labels(failure.code).inc()
    return letters


def _count(outcome: Outcome, runner: GroupRunner, metrics: Metrics) -> None:
    metrics.processed.inc(outcome.processed)
    metrics.skipped.inc(outcome.skipped)
    metrics.restored.inc(outcome.restored)
    for a in outcome.anomalies:
        metrics.anomalies.labels(a.status).inc()
    metrics.groups.set(runner.groups)
    series = getattr(runner.engine, "series_count", None)
    if isinstance(series, int):
        metrics.series.set(series)


async def _declare(topics: Topics) -> None:
    """Create the output topics with the configured partitions before the first send.

    faust creates only the topics it reads (and changelogs); a send to a
    missing topic would otherwise wait on the broker's auto-creation, with
    the broker's default partition count, if it creates topics at all.
    """
    for topic in (topics.by_key, topics.anomalies, topics.deadletter):
        await topic.maybe_declare()


@asynccontextmanager
async def or_exit(agent: str) -> AsyncIterator[None]:
    """A batch either completes or the process exits before its offsets are committed.

    faust acknowledges every event of a ``take_events`` batch even when the
    batch raises, so carrying on would commit offsets of events never
    processed. Per-event failures never get here (they are dead-lettered);
    what does is the broker refusing our sends or a bug in the worker itself,
    and then a restart that redelivers the batch is the only safe answer.
    """
    try:
        yield
    except asyncio.CancelledError:
        raise
    except Exception:
        log.critical("spendwatch %s agent: a batch failed; exiting so that it is redelivered", agent, exc_info=True)
        logging.shutdown()
        os._exit(EXIT_BATCH_FAILED)


async def _delivered(sends: list[Awaitable[Any]]) -> None:
    if sends:
        await asyncio.gather(*sends)


def _error_text(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}"
