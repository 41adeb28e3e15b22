"""The two agents: decode, judge what is on its key's partition, send the rest on; detect what was sent on.

::

    spendwatch.usage ──decode──┬─(on its key's partition)──────────detect──► spendwatch.anomalies
          │ (raw bytes)        └─► <group>-events-by-key-v2 ──detect──┘       (anomaly id, Contract 3)
          └─ reject ─────────────► spendwatch.deadletter ◄── event that raised

A message that a producer placed on its key's partition (``spendwatch
produce`` does) is judged by the decode agent itself (:class:`Routes`);
anything else goes through the repartition topic to the worker that holds
its key's state. Both agents take messages in batches
(:func:`streams.batches.take_batches`): faust's own cost per message is far larger than
detection's per event, so one batch means one send per partition (carrying
every key that lives there) and one table write per key. Every send of a
batch is awaited before the batch is acknowledged (its state writes while
the next batch is processed), so an offset is only committed once what it
produced is on the broker (at-least-once; the state table's ``applied``
offsets make the repeats harmless).
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
from detector.events import Decoder, Event, Reject
from streams.admit import Admitter
from streams.batches import take_batches
from streams.codecs import (
    CodecError,
    Keyed,
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
        metrics, key_of = self.metrics, self.key_of
        metrics.messages.inc(len(messages))
        decoded = self.decoder.decode_payloads([payload for _, payload in messages])
        for (origin, payload), (events, rejects) in zip(messages, decoded, strict=True):
            if rejects:
                _reject(origin, payload, events, rejects, letters, metrics)
            if len(events) == 1:  # the common message, without a dict of its one key
                key = _key(origin, events[0], letters, metrics, key_of)
                if key is None:
                    continue
                segment = Segment(origin.partition, origin.offset, events)
                segments = by_key.get(key)
                if segments is None:
                    by_key[key] = [segment]
                else:
                    segments.append(segment)
                continue
            for key, group in _group(origin, events, letters, metrics, key_of).items():
                by_key.setdefault(key, []).append(Segment(origin.partition, origin.offset, group))
        duplicates = self.decoder.duplicates
        if duplicates > self._duplicates:
            metrics.duplicates.inc(duplicates - self._duplicates)
            self._duplicates = duplicates
        return by_key, letters


def _reject(origin: Origin, payload: bytes, events: list[Event], rejects: list[Reject], letters: list[bytes],
            metrics: Metrics) -> None:
    """Dead letters of a message's rejects: the whole message as it came when it was one bad event."""
    whole = not events and len(rejects) == 1 and b"\n" not in payload.strip()
    for reject in rejects:
        letters.append(reject_letter(origin, reject) if not whole else dead_letter(
            origin, reject.code, reject.reason, payload, reject.line))
        metrics.deadlettered.labels(reject.code).inc()


def _key(origin: Origin, ev: Event, letters: list[bytes], metrics: Metrics,
         key_of: Callable[[Event], str]) -> str | None:
    """The event's partition key; None when asking raised, and the event is then dead-lettered."""
    try:
        return key_of(ev)
    except Exception as exc:  # a bug of ours: this event goes to the dead-letter topic, the rest go on
        letters.append(dead_letter(origin, PROCESSING_ERROR, _error_text(exc), event_text(ev)))
        metrics.deadlettered.labels(PROCESSING_ERROR).inc()
        return None


def _group(origin: Origin, events: list[Event], letters: list[bytes], metrics: Metrics,
           key_of: Callable[[Event], str]) -> dict[str, list[Event]]:
    groups: dict[str, list[Event]] = {}
    for ev in events:
        key = _key(origin, ev, letters, metrics, key_of)
        if key is not None:
            groups.setdefault(key, []).append(ev)
    return groups


class DetectStep:
    """Keyed segments → detection, its records and dead letters on the broker, and each key's state saved.

    Both agents judge (the decode agent what it read on its keys' own
    partitions, the detect agent what came through the repartition topic),
    one batch at a time: a key can come both ways, and a batch's state
    writes must reach the changelog in the order its state changed.
    """

    def __init__(self, topics: Topics, table: KeyedTable, runner: GroupRunner, metrics: Metrics,
                 usage_topic: str) -> None:
        self.topics = topics
        self.table = table
        self.runner = runner
        self.metrics = metrics
        self.usage_topic = usage_topic
        self._one_at_a_time = asyncio.Lock()

    async def judge(
        self, keyed: list[tuple[str, int, list[Segment], faust.EventT]], letters: list[bytes]
    ) -> list[Awaitable[Any]]:
        """Run ``(key, partition, segments, message that carried them)``; return its state writes, still in flight.

        Records and dead letters are on the broker when it returns, and the
        state is only sent then, so that a crash in between sends records
        again (same ids) rather than losing them. The batch may be
        acknowledged once the writes it returns are done.
        """
        if not keyed and not letters:
            return []
        async with self._one_at_a_time:
            for key, _, _, carrier in keyed:
                self.table.bind(key, carrier)
            started = time.perf_counter()
            outcome = self.runner.run([(key, partition, segments) for key, partition, segments, _ in keyed])
            self.metrics.latency.observe(time.perf_counter() - started)
            letters = letters + _failure_letters(outcome, self.usage_topic, self.metrics)
            sends = [
                await self.topics.anomalies.send(key=a.id.encode(), value=anomaly_record(a))
                for a in outcome.anomalies
            ]
            sends += [await self.topics.deadletter.send(value=letter) for letter in letters]
            await _delivered(sends)
            _count(outcome, self.runner, self.metrics)
            for key, value in outcome.writes.items():  # only once what the batch produced is on the broker
                self.table[key] = value
            held = self.table.held()
            if held is not None:
                self.metrics.table_values.set(held)
            return self.table.sent()  # and the batch is acknowledged only once its state is there too


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
    detect = DetectStep(topics, table, runner, metrics, usage_topic)
    routes = Routes(settings.partitions, lambda: topic_partitions(app, usage_topic))

    @app.agent(topics.usage, name="spendwatch-decode")
    async def decode_agent(stream: faust.StreamT) -> None:
        await _declare(topics)
        batches = take_batches(stream, *take)
        async with or_exit("decode"):
            async for batch in batches:
                taken = await admit.take_many(batch)
                by_key, letters = decode.split([(progress.read(e.message), e.value) for e in taken])
                here, away = routes.split(by_key, {e.message.partition: e for e in taken})
                sends = [
                    await topics.by_key.send(value=message, partition=partition)
                    for partition, keyed in away.items()
                    for message in pack_keyed(keyed)
                ]
                metrics.forwarded.inc(sum(len(s.events) for keyed in away.values() for _, segs in keyed for s in segs))
                # Acknowledged once what it sent on and its state are on the broker; the next batch meanwhile.
                batches.hold([*sends, *await detect.judge(here, letters)])

    @app.agent(topics.by_key, name="spendwatch-detect")
    async def detect_agent(stream: faust.StreamT) -> None:
        await _declare(topics)
        batches = take_batches(stream, *take)
        async with or_exit("detect"):
            async for batch in batches:
                keyed, letters = [], []
                for e in await admit.take_many(batch):
                    origin = progress.read(e.message)
                    try:
                        keyed += [(key, origin.partition, segments, e) for key, segments in decode_keyed(e.value)]
                    except CodecError as exc:
                        letters.append(dead_letter(origin, "bad_repartition_payload", str(exc), e.value))
                        metrics.deadlettered.labels("bad_repartition_payload").inc()
                batches.hold(await detect.judge(keyed, letters))

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


class Routes:
    """Which segments are judged where they were read, and which go on through the repartition topic.

    faust gives a partition number of every topic with the same partition
    count, the state's changelog included, to one worker. So when the usage
    topic has as many partitions as the repartition topic, a message read on
    its key's own partition is on the worker that holds the key's state, and
    judging it there saves a send and a read of faust's per message, which
    cost more than detection (``spendwatch produce`` places every key so).
    Anything else, or a usage topic of another partition count, goes through
    the repartition topic.

    >>> from detector.events import LlmRequest
    >>> ev = LlmRequest(ts=1.8e9, model="m", input_tokens=3, output_tokens=1)
    >>> routes = Routes(4, lambda: 4)
    >>> home = partition_of("llm:a/", 4)
    >>> there = (home + 1) % 4
    >>> here, away = routes.split({"llm:a/": [Segment(home, 7, [ev]), Segment(there, 2, [ev])]}, {home: "msg"})
    >>> [(k, p == home, [s.route for s in segs], carrier) for k, p, segs, carrier in here] == [
    ...     ("llm:a/", True, [f"d{home}"], "msg")]
    True
    >>> {p: [(k, [s.route for s in segs]) for k, segs in keyed] for p, keyed in away.items()} == {
    ...     home: [("llm:a/", [str(there)])]}
    True
    >>> Routes(4, lambda: 8).split({"llm:a/": [Segment(home, 7, [ev])]}, {home: "msg"})[0]
    []
    """

    def __init__(self, partitions: int, usage_partitions: Callable[[], int | None]) -> None:
        """``usage_partitions``: the usage topic's partition count as the consumer knows it (None: not yet)."""
        self.partitions = partitions
        self._usage_partitions = usage_partitions

    def split(
        self, by_key: dict[str, list[Segment]], carriers: dict[int, Any]
    ) -> tuple[list[tuple[str, int, list[Segment], Any]], dict[int, list[Keyed]]]:
        """``carriers``: a message of the batch per partition read, to place each key's state write."""
        copartitioned = self._usage_partitions() == self.partitions
        here: list[tuple[str, int, list[Segment], Any]] = []
        away: dict[int, list[Keyed]] = {}
        for key, segments in by_key.items():
            home = partition_of(key, self.partitions)
            mine: list[Segment] = []
            others: list[Segment] = []
            for s in segments:
                if copartitioned and s.src_partition == home:
                    s.direct = True  # the batch's own segment, fresh from the decode step
                    mine.append(s)
                else:
                    others.append(s)
            if mine:
                here.append((key, home, mine, carriers[home]))
            if others:
                away.setdefault(home, []).append((key, others))
        return here, away


def topic_partitions(app: faust.App, topic: str) -> int | None:
    """How many partitions ``topic`` has, from the consumer's cluster metadata; None while it has none.

    Not faust's ``Consumer.topic_partitions``: that reads a snapshot of the
    client's group coordinator which only the group's leader keeps (measured:
    a second worker got None and sent every event on). A worker assigned a
    partition of the topic has its metadata.
    """
    try:
        partitions = app.consumer._thread._consumer.partitions_for_topic(topic)
    except Exception:  # not started, or faust's consumer changed shape: every event goes through the repartition topic
        return None
    return len(partitions) if partitions else None


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

    A batch that raises, or whose held sends fail, is never acknowledged
    (:class:`streams.batches.Batches`), so its offsets, and every later one
    of its partitions, would stay uncommitted while the agent went on without
    it. Per-event failures never get here (they are dead-lettered); what
    does is the broker refusing our sends or a bug in the worker itself, and
    then a restart that redelivers the batch is the only safe answer.
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
