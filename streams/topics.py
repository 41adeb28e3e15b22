"""Every topic the worker reads or writes, side by side.

* ``usage`` (``spendwatch.usage``): key anything (producers should key by
  team); value raw bytes: one event, a JSON array or JSON lines (Contract 1).
* ``by_key`` (``<group>-events-by-key-v2``): no key; each message goes to
  the partition :func:`streams.codecs.partition_of` gives its keys, and its
  value carries the segments of each (:func:`streams.codecs.pack_keyed`).
* ``anomalies`` (``spendwatch.anomalies``): key the anomaly id (UTF-8); value
  a Contract 3 record (JSON).
* ``deadletter`` (``spendwatch.deadletter``): no key; value a
  :func:`streams.codecs.dead_letter` record (JSON).

The repartition topic and the state table's changelog share the partition
count and the key encoding (JSON), so a key's events and its state always land
on the same partition number and therefore on the same worker.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

from streams.settings import StreamSettings

REPARTITION_VERSION = "v2"  # v2: a message carries the keys of its partition, a segment its events' type once


def by_key_topic_name(settings: StreamSettings) -> str:
    """Named after the consumer group: two deployments on one cluster must not share it.

    >>> by_key_topic_name(StreamSettings(consumer_group="spendwatch"))
    'spendwatch-events-by-key-v2'
    """
    return f"{settings.consumer_group}-events-by-key-{REPARTITION_VERSION}"


@dataclass(frozen=True)
class Topics:
    usage: faust.TopicT
    by_key: faust.TopicT
    anomalies: faust.TopicT
    deadletter: faust.TopicT


def declare_topics(app: faust.App, settings: StreamSettings) -> Topics:
    """Declare the four topics on ``app``; none of them uses the pickle codec."""
    n = settings.partitions
    return Topics(
        usage=app.topic(settings.usage_topic, partitions=n, key_serializer="raw", value_serializer="raw"),
        by_key=app.topic(
            by_key_topic_name(settings), partitions=n, key_type=str, key_serializer="json", value_serializer="raw",
            internal=True,
        ),
        anomalies=app.topic(settings.anomalies_topic, partitions=n, key_serializer="raw", value_serializer="raw"),
        deadletter=app.topic(settings.deadletter_topic, partitions=n, key_serializer="raw", value_serializer="raw"),
    )
