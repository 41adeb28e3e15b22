"""``spendwatch worker`` and ``spendwatch produce``: the Kafka commands.

Both are plain click commands; the ``spendwatch`` group registers them.
Every setting also comes from its ``SPENDWATCH_*`` variable, and ``--help``
lists them all (DESIGN.md, Contract 5).
"""

from __future__ import annotations

import asyncio
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Any, TypeVar

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TransferSpeedColumn,
)

from detector.errors import SpendwatchError
from detector.inputs import open_events
from streams.settings import StreamSettings

err = Console(stderr=True, soft_wrap=True)
S = TypeVar("S", bound=StreamSettings)


def settings_help(cls: type[StreamSettings] = StreamSettings) -> str:
    """Every setting of ``cls``, its variable and default, for the ``--help`` epilog."""
    rows = []
    for name, field in cls.model_fields.items():
        if field.repr is False:
            default = " (secret)"
        else:
            default = "" if field.default is None else f" [default: {field.default}]"
        rows.append(f"  SPENDWATCH_{name.upper()}: {field.description or ''}{default}")
    return "\b\nSettings (environment variables):\n" + "\n".join(rows)


def load_settings(cls: type[S] = StreamSettings, **flags: Any) -> S:  # type: ignore[assignment]
    """Flags over ``SPENDWATCH_*`` variables over defaults; a bad value is a usage error naming the setting."""
    try:
        return cls(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']} (got {e.get('input')!r})" for e in exc.errors()
        )
        raise click.UsageError(f"bad setting: {problems}") from None


broker_option = click.option("--broker", help="Kafka bootstrap URL, e.g. kafka://127.0.0.1:9092 [SPENDWATCH_BROKER].")


@click.command(epilog=settings_help(), context_settings={"max_content_width": 110})
@broker_option
@click.option(
    "--partitions", type=int, help="Partitions of the usage, repartition and state topics [SPENDWATCH_PARTITIONS]."
)
@click.option("--group", "consumer_group", help="Consumer group id [SPENDWATCH_CONSUMER_GROUP].")
@click.option("--store", help="Table store: memory:// or rocksdb:// [SPENDWATCH_STORE].")
@click.option("--web-port", type=int, help="Health and metrics port [SPENDWATCH_WEB_PORT].")
@click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), help="Price file [SPENDWATCH_PRICES].")
@click.option(
    "--loglevel", default="info", show_default=True, type=click.Choice(["debug", "info", "warning", "error"])
)
def worker(loglevel: str, **flags: Any) -> None:
    """Run the stream worker: usage events in, anomaly records out, bad events to the dead-letter topic.

    Start as many as the usage topic has partitions, with the same group id;
    each partition key (and so each series) lives on one of them, with its
    state in a changelog-backed table. /health and /metrics (Prometheus) are
    served on the web port.
    """
    import faust

    from detector.replay import tune_gc_for_streaming
    from streams.app import build_app

    settings = load_settings(**flags)
    try:
        stream = build_app(settings)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None
    tune_gc_for_streaming()
    faust.Worker(stream.app, loglevel=loglevel, quiet=True).execute_from_commandline()


@click.command(epilog=settings_help(), context_settings={"max_content_width": 110})
@click.argument("file", metavar="FILE")
@broker_option
@click.option("--topic", "usage_topic", help="Topic to write to [SPENDWATCH_USAGE_TOPIC].")
@click.option("--partitions", type=int, help="Partitions to create the topic with if it is missing.")
@click.option("--batch", type=click.IntRange(1, 100_000), default=500, show_default=True, help="Lines per batch.")
@click.option(
    "--rate", type=click.FloatRange(min=0, min_open=True), help="Events per second at most (default: no limit)."
)
@click.option(
    "--framing", type=click.Choice(["array", "ndjson"]), default="array", show_default=True,
    help="How a batch's events share a message: a JSON array or newline-delimited JSON.",
)
def produce(file: str, batch: int, rate: float | None, framing: str, **flags: Any) -> None:
    """Load FILE (JSONL, .gz accepted, - for stdin) into the usage topic.

    Each batch goes out as one message per partition key, so every key's
    events keep their file order; lines that are not valid events go alone,
    to be dead-lettered by the worker.
    """
    from streams.producer import Framing, produce_lines

    settings = load_settings(**flags)
    console = Console(stderr=True)
    try:
        with open_events(file) as source:
            show = console.is_terminal and source.total_bytes
            bar = Progress(TextColumn("producing"), BarColumn(), TransferSpeedColumn(), MofNCompleteColumn(),
                           console=console, transient=True) if show else nullcontext()
            with bar as progress:
                task = progress.add_task("produce", total=source.total_bytes) if progress else None

                def on_sent(lines: int, events: int) -> None:
                    if progress is not None and task is not None:
                        progress.update(task, completed=source.position())

                framed: Framing = "ndjson" if framing == "ndjson" else "array"
                messages, events = asyncio.run(
                    produce_lines(source, settings, batch=batch, rate=rate, framing=framed, on_sent=on_sent)
                )
    except SpendwatchError as exc:
        err.print(f"error: {exc}", markup=False)
        sys.exit(2)
    except Exception as exc:  # the broker is unreachable or refused us: say which and where
        err.print(f"error: cannot produce to {settings.broker} ({type(exc).__name__}: {exc})", markup=False)
        sys.exit(2)
    click.echo(f"{events:,} events in {messages:,} messages sent to {settings.usage_topic} on {settings.broker}")
