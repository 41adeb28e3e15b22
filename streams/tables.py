"""The worker's one table: each partition key's detection state, backed by a changelog topic.

The name carries a version because the changelog topic is named after it:
a new layout of the value gets a new name (and a migration), never a silent
reinterpretation of old state.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import faust
from faust.streams import _current_event

from streams.settings import StreamSettings

SERIES_TABLE = "spendwatch-series-v1"


def declare_series_table(app: faust.App, settings: StreamSettings) -> faust.Table:
    """Keyed like the repartition topic (JSON strings), one changelog partition per topic partition."""
    return app.Table(
        SERIES_TABLE,
        partitions=settings.partitions,
        schema=faust.Schema(key_type=str, key_serializer="json", value_serializer="json"),
    )


class KeyedTable:
    """Reads and writes the table as if from the message that carried each key.

    faust places a table key in the partition of "the current event", which
    inside a batch (``stream.take_events``) is just the batch's last message:
    the wrong partition for every other key, both for the changelog and for a
    RocksDB store. Binding each key to a message of its own before touching
    the table puts every key where its events are. (faust's ``use_partitioner``
    would instead ask the producer, which fails until the producer has fetched
    the changelog's metadata.)
    """

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self._carrier: dict[str, faust.EventT] = {}

    def bind(self, key: str, event: faust.EventT) -> None:
        """Remember ``event`` as the message that carried ``key`` in this batch."""
        self._carrier[key] = event

    def get(self, key: str) -> Any:
        with self._as_current(key):
            return self.table.get(key)

    def __setitem__(self, key: str, value: Any) -> None:
        with self._as_current(key):
            self.table[key] = value

    @contextmanager
    def _as_current(self, key: str) -> Iterator[None]:
        token = _current_event.set(weakref.ref(self._carrier[key]))
        try:
            yield
        finally:
            _current_event.reset(token)
