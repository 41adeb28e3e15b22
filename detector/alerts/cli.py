"""``spendwatch silence add|list|expire``: hold back alerts while someone works on them.

Silences are stored in the SQLite file named by ``SPENDWATCH_SILENCES_DB``
(default: beside the Slack outbox), which the running pipeline reads. Times
here are wall-clock: a silence is set by a person, now, for a while. Every
alert's Slack message shows the exact ``silence add`` command for it.
"""

from __future__ import annotations

import getpass
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import click
from pydantic import ValidationError

from detector.alerts.settings import AlertSettings
from detector.alerts.silences import Silence, SilenceError, SilenceStore
from detector.errors import ConfigError
from detector.rules.durations import EXPECTED as DURATION
from detector.rules.durations import DurationError, parse_duration

Clock = Callable[[], float]


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


def _line(s: Silence, now: float) -> str:
    state = "active" if s.active(now) else ("pending" if s.starts_at > now else "expired")
    matchers = " ".join(str(m) for m in s.matchers)
    return f"{s.id}\t{state}\t{_when(s.starts_at)} → {_when(s.ends_at)}\t{matchers}\tby {s.created_by}: {s.comment}"


def _store(db: Path | None) -> SilenceStore:
    try:
        path = db or AlertSettings().silences_path
        return SilenceStore(path)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"bad setting: {problems}") from None
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


db_option = click.option(
    "--db", type=click.Path(dir_okay=False, path_type=Path), envvar="SPENDWATCH_SILENCES_DB", show_envvar=True,
    help="Silences file (default: spendwatch-silences.db beside the Slack outbox).",
)


def silence_group(clock: Clock = time.time) -> click.Group:
    """The ``silence`` command group; ``clock`` is injectable so tests need not wait."""

    @click.group(name="silence")
    def silence() -> None:
        """Silences: hold back alerts matching label matchers until a time."""

    @silence.command("add")
    @click.option("--matcher", "-m", "matchers", multiple=True, required=True, metavar="'NAME=\"VALUE\"'",
                  help='Label matcher, e.g. --matcher \'team="search"\' (=, !=, =~, !~). Repeatable: all must match.')
    @click.option("--for", "duration", required=True, metavar="DURATION", help="How long, e.g. 30m, 2h, 1d.")
    @click.option("--comment", "-c", required=True, help="Why: the next person on call reads it.")
    @click.option("--by", "created_by", default=None, help="Who sets it (default: your user name).")
    @db_option
    def add(matchers: tuple[str, ...], duration: str, comment: str, created_by: str | None, db: Path | None) -> None:
        """Silence alerts matching every --matcher, from now for --for."""
        try:
            seconds = parse_duration(duration)
        except DurationError as exc:
            hint = f"; did you mean {exc.suggestion}?" if exc.suggestion else ""
            raise click.BadParameter(f"{exc} (expected {DURATION}){hint}", param_hint="--for") from None
        now = clock()
        store = _store(db)
        try:
            s = store.add(matchers, starts_at=now, ends_at=now + seconds, comment=comment,
                          created_by=created_by or getpass.getuser(), now=now)
        except SilenceError as exc:
            raise click.UsageError(str(exc)) from None
        finally:
            store.close()
        click.echo(f"silence {s.id} added until {_when(s.ends_at)}; "
                   f"end it early with: spendwatch silence expire {s.id}")

    @silence.command("list")
    @click.option("--all", "show_all", is_flag=True, help="Also those that ended (the history).")
    @db_option
    def list_(show_all: bool, db: Path | None) -> None:
        """Silences in force (id, state, from → until, matchers, who and why)."""
        now, store = clock(), _store(db)
        try:
            found = store.all() if show_all else [s for s in store.all() if s.ends_at > now]
        finally:
            store.close()
        for s in found:
            click.echo(_line(s, now))
        if not found:
            click.echo("no silences" + ("" if show_all else " in force (--all shows those that ended)"))

    @silence.command("expire")
    @click.argument("silence_id", metavar="ID", type=int)
    @db_option
    def expire(silence_id: int, db: Path | None) -> None:
        """End silence ID now; its alerts are sent again if they still fire."""
        store = _store(db)
        try:
            s = store.expire(silence_id, now=clock())
        except SilenceError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        finally:
            store.close()
        click.echo(f"silence {s.id} ended at {_when(s.ends_at)}")

    return silence


silence = silence_group()
