"""``spendwatch sink``: the one process that turns the stream's output into alerts, history and the digest.

A plain click command; the ``spendwatch`` group registers it. Every setting
also comes from its ``SPENDWATCH_*`` variable, and ``--help`` lists them.
"""

from __future__ import annotations

from typing import Any

import click

from detector.errors import SpendwatchError
from streams.cli import load_settings, settings_help
from streams.sink_settings import SinkSettings


def load_sink_settings(**flags: Any) -> SinkSettings:
    """The sink's settings: flags over ``SPENDWATCH_*`` variables over defaults; a bad value is a usage error.

    >>> load_sink_settings(partitions=0)
    Traceback (most recent call last):
    ...
    click.exceptions.UsageError: bad setting: partitions: Input should be greater than or equal to 1 (got 0)
    """
    return load_settings(SinkSettings, **flags)


@click.command("sink", epilog=settings_help(SinkSettings), context_settings={"max_content_width": 110})
@click.option("--broker", help="Kafka bootstrap URL, e.g. kafka://127.0.0.1:9092 [SPENDWATCH_BROKER].")
@click.option("--partitions", type=int, help="Partitions of the usage and anomalies topics [SPENDWATCH_PARTITIONS].")
@click.option("--group", "consumer_group",
              help="Consumer group of the detection workers; the sink reads as <group>-sink [SPENDWATCH_CONSUMER_GROUP].")
@click.option("--db", "db_url", metavar="URL", help="History store, a SQLAlchemy URL [SPENDWATCH_DB_URL].")
@click.option("--web-port", type=int, help="Health and metrics port [SPENDWATCH_WEB_PORT].")
@click.option(
    "--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def sink(loglevel: str, **flags: Any) -> None:
    """Run the sink: anomaly records to Slack and webhooks, usage to the history store, the Monday digest.

    Run exactly ONE sink per deployment, beside any number of `spendwatch
    worker` processes: it is the single writer of the history store (so
    hourly dollars are counted once) and the single sender of alerts. It
    reads spendwatch.anomalies and spendwatch.usage in its own consumer group
    (<group>-sink), sends each alert once (the Slack and webhook outboxes are
    keyed by the alert), and on start puts the alerts still open in the
    history store back into the alert lifecycle, so a resolved notice after a
    restart goes into the firing message's thread. Every Monday at 09:00 in
    SPENDWATCH_DIGEST_TIMEZONE it posts the last complete week's digest to
    SPENDWATCH_DIGEST_CHANNEL (or SPENDWATCH_SLACK_CHANNEL) when a Slack bot
    token is set.
    """
    import faust

    from streams.sink import build_sink_app

    settings = load_sink_settings(**flags)
    try:
        built = build_sink_app(settings)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        faust.Worker(built.app, loglevel=loglevel, quiet=True).execute_from_commandline()
    finally:
        built.close()
