"""``spendwatch history``: look after the history store (schema migrations, retention)."""

from __future__ import annotations

import time

import click
from pydantic import ValidationError

from detector.errors import SpendwatchError
from detector.history.migrations import LATEST, current_version, migrate
from detector.history.settings import HistorySettings
from detector.history.store import HistoryStore

db_option = click.option("--db", "db_url", metavar="URL", envvar="SPENDWATCH_DB_URL", show_envvar=True,
                         help="History store (SQLAlchemy URL; default sqlite:///spendwatch.db).")


def _store(db_url: str | None, **flags: object) -> tuple[HistorySettings, HistoryStore]:
    try:
        settings = HistorySettings(**{k: v for k, v in {"db_url": db_url, **flags}.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"bad setting: {problems}") from None
    try:
        return settings, HistoryStore.open(settings.db_url, apply_migrations=False)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None


@click.group("history")
def history() -> None:
    """The history store of spend rollups and anomalies."""


@history.command("migrate")
@db_option
def migrate_command(db_url: str | None) -> None:
    """Bring the store's schema to this version's (every step listed; nothing to do is fine)."""
    _, store = _store(db_url)
    try:
        applied = migrate(store.engine)
        with store.engine.connect() as conn:
            version = current_version(conn)
    except SpendwatchError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    done = f"applied {', '.join(map(str, applied))}" if applied else "already up to date"
    click.echo(f"history schema at version {version} of {LATEST}: {done}")


@history.command("prune")
@db_option
@click.option("--retention-days", type=click.IntRange(1), envvar="SPENDWATCH_HISTORY_RETENTION_DAYS",
              show_envvar=True, help="Keep this many days (default 400).")
def prune_command(db_url: str | None, retention_days: int | None) -> None:
    """Delete rollups and anomalies older than the retention, and request ids past the dedupe window."""
    settings, store = _store(db_url, history_retention_days=retention_days)
    try:
        migrate(store.engine)
        deleted = store.prune(time.time(), settings.history_retention_days, settings.dedupe_window_hours * 3600)
    except SpendwatchError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
    click.echo(", ".join(f"{n:,} {what}" for what, n in deleted.items()) + " deleted")
