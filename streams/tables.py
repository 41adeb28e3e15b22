"""The worker's one table: each partition key's detection state, backed by a changelog topic.

The name carries a version because the changelog topic is named after it:
a new layout of the value gets a new name (and a migration), never a silent
reinterpretation of old state.

A value is the JSON bytes of the state, encoded and decoded here
(:func:`encode_state`, :func:`decode_state`) rather than by faust; the bytes
are those faust's own ``json`` serializer writes, so the changelog's records
are unchanged.

With the ``memory://`` store, a value written is sent to the changelog and
not kept (:class:`KeyedTable`): the worker reads a key's saved state only
when the key is new to it, after a restart or a rebalance, and faust then
fills the store from the changelog (the whole partition, as a memory store
has nothing of its own). The engine's live models are the state from then
on, and a copy in the store would only double a series' memory (~7 KB of
JSON each, besides the engine's ~5 KB). A recovered value stays until its
key is written; recovery leaves out the keys the worker holds live (a
partition it kept through a rebalance, whose changelog only holds what the
worker itself wrote). RocksDB keeps every value: its store is what a
restart recovers from.
"""

from __future__ import annotations

import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import faust
import orjson
from faust.streams import _current_event

from streams.settings import StreamSettings

SERIES_TABLE = "spendwatch-series-v1"


def declare_series_table(app: faust.App, settings: StreamSettings) -> faust.Table:
    """Keyed like the repartition topic (JSON strings), one changelog partition per topic partition."""
    return app.Table(
        SERIES_TABLE,
        partitions=settings.partitions,
        key_type=str,
        value_type=bytes,  # (what makes faust send the values as they are: "raw")
        schema=faust.Schema(key_type=str, value_type=bytes, key_serializer="json", value_serializer="raw"),
    )


def encode_state(value: dict[str, Any]) -> bytes:
    """A table value as it is held and sent: JSON, as faust's ``json`` serializer would write it.

    >>> encode_state({"v": 1, "applied": {0: [5, 0]}})
    b'{"v":1,"applied":{"0":[5,0]}}'
    """
    encoded = orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS)
    return bytes(memoryview(encoded))  # a copy of its exact size: orjson's own has a half again spare, kept as long


def decode_state(raw: bytes) -> Any:
    """A table value from its bytes (also those written when faust serialized the values)."""
    return orjson.loads(raw)


class KeyedTable:
    """Reads and writes the table as if from the message that carried each key.

    faust places a table key in the partition of "the current event", which
    inside a batch is just the last message faust's stream iterated, if any:
    the wrong partition for every other key, both for the changelog and for a
    RocksDB store. Binding each key to a message of its own before touching
    the table puts every key where its events are. (faust's ``use_partitioner``
    would instead ask the producer, which fails until the producer has fetched
    the changelog's metadata.)

    It also keeps the changelog records its writes produce, so that a batch
    can wait for them (:meth:`sent`) before its offsets may be committed:
    faust sends table writes from a buffer that its own flush before a commit
    gives up on after a tenth of a second, and a worker stopped then would
    have committed offsets whose state never reached the changelog.
    """

    def __init__(self, table: faust.Table, *, keep_values: bool = True) -> None:
        """``keep_values=False`` (a ``memory://`` store): writes go to the changelog only, see the module."""
        self.table = table
        self.keep_values = keep_values
        self._carrier: dict[str, faust.EventT] = {}
        self._pending: list[Awaitable[Any]] = []
        send = table.send_changelog

        def send_and_keep(*args: Any, **kwargs: Any) -> Any:
            future = send(*args, **kwargs)
            self._pending.append(future)
            return future

        table.send_changelog = send_and_keep  # type: ignore[method-assign]

    def recover_only(self, wanted: Callable[[str], bool]) -> None:
        """Changelog recovery applies only the keys ``wanted`` says it needs (memory stores).

        After a rebalance faust reads a kept partition's changelog again from
        where its last recovery stopped: every value this worker wrote since,
        for keys whose live state it still holds. Kept, they would sit in the
        store beside the live models until each key's next write.
        """
        apply = self.table.apply_changelog_batch

        def apply_wanted(batch: Iterable[faust.EventT]) -> None:
            apply([event for event in batch if wanted(event.key)])

        self.table.apply_changelog_batch = apply_wanted  # type: ignore[method-assign]

    def bind(self, key: str, event: faust.EventT) -> None:
        """Remember ``event`` as the message that carried ``key`` in this batch."""
        self._carrier[key] = event

    def get(self, key: str) -> Any:
        with self._as_current(key):
            raw = self.table.get(key)
        return None if raw is None else decode_state(raw)

    def __setitem__(self, key: str, encoded: bytes) -> None:
        """Write a value already encoded (:func:`encode_state`: the runner encodes each as it is exported)."""
        with self._as_current(key):
            if self.keep_values:
                self.table[key] = encoded
            else:
                self.table.on_key_set(key, encoded)  # what faust's __setitem__ does besides storing it
                self.table.data.pop(key, None)  # a value recovered from the changelog is stale now

    def held(self) -> int | None:
        """Values the store holds in memory besides the live models; None for a store on disk."""
        return None if self.keep_values else len(self.table.data)

    def sent(self) -> list[Awaitable[Any]]:
        """The changelog records of the writes so far, each done once on the broker; the batch's keys are unbound.

        A carrier is a whole message (a repartition message holds every key
        of its partition in the batch): kept after its batch, it would stay
        in memory for as long as its key is idle.
        """
        pending, self._pending = self._pending, []
        self._carrier.clear()
        return pending

    @contextmanager
    def _as_current(self, key: str) -> Iterator[None]:
        token = _current_event.set(weakref.ref(self._carrier[key]))
        try:
            yield
        finally:
            _current_event.reset(token)
