"""``spendwatch export``: the history store in formats other tools read."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import click

from detector.digest.cli import open_store, settings_from
from detector.errors import SpendwatchError
from detector.export.focus import write_focus_csv
from detector.pricing import PriceTable

_WHEN = click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"])


@click.group("export")
def export() -> None:
    """Export spend rollups for FinOps tools."""


@export.command("focus")
@click.option("--from", "start", type=_WHEN, required=True, help="First hour exported, UTC (e.g. 2026-11-16).")
@click.option("--to", "end", type=_WHEN, required=True, help="End of the export, UTC, not included (e.g. 2026-11-23).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="CSV file to write (default: stdout).")
@click.option("--db", "db_url", metavar="URL", envvar="SPENDWATCH_DB_URL", show_envvar=True,
              help="History store (SQLAlchemy URL; default sqlite:///spendwatch.db).")
@click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), envvar="SPENDWATCH_PRICES",
              show_envvar=True, help="Price file, for the provider of each model.")
def focus(start: datetime, end: datetime, out: Path | None, db_url: str | None, prices: Path | None) -> None:
    """Hourly AI spend as FOCUS CSV (FinOps Open Cost and Usage Specification), to join with the cloud bill.

    \b
    Example:
      spendwatch export focus --from 2026-11-01 --to 2026-12-01 --out ai-spend-focus.csv
    """
    first, last = start.replace(tzinfo=UTC).timestamp(), end.replace(tzinfo=UTC).timestamp()
    if last <= first:
        raise click.BadParameter(f"--to ({end:%Y-%m-%d %H:%M}) must be after --from ({start:%Y-%m-%d %H:%M})",
                                 param_hint="--to")
    settings = settings_from(db_url=db_url, prices=prices)
    try:
        table = PriceTable.load(settings.prices)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None
    store = open_store(settings)
    try:
        if out is None:
            count = write_focus_csv(store, first, last, sys.stdout, table)
        else:
            with out.open("w", newline="", encoding="utf-8") as f:
                count = write_focus_csv(store, first, last, f, table)
            click.echo(f"{count:,} FOCUS rows written to {out}", err=True)
    finally:
        store.close()
