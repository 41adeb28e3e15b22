"""A faust worker whose agent does nothing: faust's own cost per message, the stream benchmark's reference.

Run as a script (``python bench/stream_noop.py [--take | --stock]``),
configured by the same ``SPENDWATCH_*`` variables as ``spendwatch worker``
where they apply (broker, usage topic, consumer group, web port, data dir,
rebalance timeout, batch size). The agent iterates over every message of
the usage topic, one by one or (``--take``) in batches as the worker does
(:func:`streams.batches.take_batches`), and only counts them; ``GET
/count`` on the web port answers ``{"messages": N}`` so the benchmark polls
it the way it polls the worker's ``/metrics``.

The app is configured like the worker's (:func:`streams.app.build_app`):
raw keys and values, reading from the earliest offset, the same broker
options and the same consumer (:mod:`streams.fetching`), so that the
difference between the two is spendwatch's own work. With ``--stock`` it is
a plain ``faust.App`` with faust's own consumer, read message by message:
faust's cost as it comes.
"""

from __future__ import annotations

import sys

import faust
from faust.web import Request, Response, View

from streams.app import faust_options, new_app
from streams.batches import take_batches
from streams.settings import StreamSettings


def build_noop_app(settings: StreamSettings, take: bool = False, stock: bool = False) -> tuple[faust.App, list[int]]:
    """The do-nothing app and its message counter (a one-item list the agent increments).

    ``take`` reads in batches (:func:`streams.batches.take_batches` with the
    worker's batch settings), the way the worker's agents read; otherwise
    message by message. ``stock``: faust's own app and consumer.

    >>> app, count = build_noop_app(StreamSettings(broker="kafka://127.0.0.1:9092", consumer_group="noop"))
    >>> app.conf.id, sorted(app.agents), count, type(app).__module__
    ('noop', ['bench-noop'], [0], 'streams.fetching')
    >>> type(build_noop_app(StreamSettings(broker="kafka://127.0.0.1:9092"), stock=True)[0]).__module__
    'faust.app.base'
    """
    if stock:
        app = faust.App(settings.consumer_group, **{**faust_options(settings), "store": "memory://"})
    else:
        app = new_app(settings.consumer_group, settings, store="memory://")  # the worker's options: only the work differs
    topic = app.topic(settings.usage_topic, partitions=settings.partitions)
    count = [0]

    @app.agent(topic, name="bench-noop")
    async def nothing(stream: faust.StreamT) -> None:
        if take:
            async for batch in take_batches(stream, settings.batch_max, settings.batch_within_s):
                count[0] += len(batch)
        else:
            async for _ in stream:
                count[0] += 1

    class CountView(View):
        async def get(self, request: Request) -> Response:
            return self.json({"messages": count[0]})

    app.page("/count", name="bench-noop-count")(CountView)
    return app, count


def main() -> None:
    app, _ = build_noop_app(StreamSettings(), take="--take" in sys.argv[1:], stock="--stock" in sys.argv[1:])
    faust.Worker(app, loglevel="warning", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()
