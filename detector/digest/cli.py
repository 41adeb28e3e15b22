"""``spendwatch digest``: the weekly digest as an HTML file and, with ``--slack``, in Slack."""

from __future__ import annotations

import time
from pathlib import Path

import click
from slack_sdk import WebClient

from detector.cli_support import settings_from as validated
from detector.digest.publish import post_digest, write_digest
from detector.digest.weeks import last_complete_week, parse_week
from detector.errors import SpendwatchError
from detector.history.settings import HistorySettings
from detector.history.store import HistoryStore
from detector.notify.transport import read_secret_file, retry_handlers
from detector.rules import RuleSet, load_rules_or_raise


def settings_from(**flags: object) -> HistorySettings:
    """Settings from flags and ``SPENDWATCH_*`` variables; a bad value is a usage error naming it."""
    return validated(HistorySettings, **flags)


def open_store(settings: HistorySettings) -> HistoryStore:
    try:
        return HistoryStore.open(settings.db_url)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None


def _rules(settings: HistorySettings) -> RuleSet | None:
    """Budget rules come from the rules directory when one is set or ./rules exists."""
    directory = settings.rules_dir or (Path("rules") if Path("rules").is_dir() else None)
    if directory is None:
        return None
    try:
        return load_rules_or_raise([directory])
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None


def _slack_client(settings: HistorySettings) -> tuple[WebClient, str]:
    token = settings.slack_token
    if token is None and settings.slack_token_file is not None:
        token = read_secret_file(settings.slack_token_file, what="Slack token file")
    channel = settings.digest_channel or settings.slack_channel
    if not token or not channel:
        raise click.UsageError(
            "--slack needs a bot token (SPENDWATCH_SLACK_TOKEN or SPENDWATCH_SLACK_TOKEN_FILE) and a channel "
            "(SPENDWATCH_DIGEST_CHANNEL or SPENDWATCH_SLACK_CHANNEL); an incoming webhook cannot upload charts"
        )
    handlers = retry_handlers(repeat_posts=True)
    return WebClient(token=token, base_url=settings.slack_api_url, timeout=30, retry_handlers=handlers), channel


@click.command("digest")
@click.option("--week", metavar="YYYY-Www", help="ISO week, e.g. 2026-W47 (default: the last complete week, UTC).")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=Path("digest.html"),
              show_default=True, help="Write the digest here as one self-contained HTML file.")
@click.option("--slack", is_flag=True, help="Also post it to Slack (summary and charts).")
@click.option("--db", "db_url", metavar="URL", envvar="SPENDWATCH_DB_URL", show_envvar=True,
              help="History store (SQLAlchemy URL; default sqlite:///spendwatch.db).")
@click.option("--rules", "rules_dir", type=click.Path(exists=True, path_type=Path), envvar="SPENDWATCH_RULES_DIR",
              show_envvar=True, help="Rule files whose budgets the digest compares month-end spend with.")
def digest(week: str | None, out: Path, slack: bool, db_url: str | None, rules_dir: Path | None) -> None:
    """Write the weekly digest: spend by cost category and team, anomalies ranked by dollars, trends, charts.

    \b
    Example:
      spendwatch digest --week 2026-W47 --out digest.html --slack
    """
    settings = settings_from(db_url=db_url, rules_dir=rules_dir)
    week = week or last_complete_week(time.time())
    try:
        parse_week(week)
    except SpendwatchError as exc:
        raise click.BadParameter(str(exc), param_hint="--week") from None
    store = open_store(settings)
    rules = _rules(settings)
    try:
        result = write_digest(store, week, out, rules)
        click.echo(f"digest for {week} written to {out}" + (f" (no data for {week})" if result.empty else ""))
        if slack:
            client, channel = _slack_client(settings)
            post_digest(store, week, client, channel, rules)
            click.echo(f"digest for {week} posted to Slack ({channel})")
    except SpendwatchError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()
