"""Explicit, numbered schema migrations of the history store.

The database records the version it is at (table ``schema_version``);
:func:`migrate` applies every later step in order, each in its own
transaction, and refuses a database written by a newer spendwatch instead of
guessing. Steps are append-only: a released step is never edited, a change
is a new step.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Connection, Engine, inspect, select

from detector.errors import ConfigError
from detector.history import schema

Step = Callable[[Connection], None]


def _v1_initial(conn: Connection) -> None:
    """Rollups, anomalies and the request ids used to drop redelivered events."""
    schema.metadata.create_all(
        conn, tables=[schema.rollup_hourly, schema.anomalies, schema.seen_requests], checkfirst=False
    )


STEPS: tuple[tuple[int, Step], ...] = ((1, _v1_initial),)
LATEST = STEPS[-1][0]


class SchemaError(ConfigError):
    """The database's schema cannot be used by this version of spendwatch."""


def current_version(conn: Connection) -> int:
    """The schema version the database is at; 0 for an empty database."""
    if not inspect(conn).has_table(schema.schema_version.name):
        return 0
    found = conn.execute(select(schema.schema_version.c.version)).scalar()
    return int(found or 0)


def migrate(engine: Engine) -> list[int]:
    """Bring the database to :data:`LATEST`; return the versions applied (empty when up to date).

    >>> from sqlalchemy import create_engine
    >>> migrate(create_engine("sqlite://")), LATEST
    ([1], 1)
    """
    with engine.begin() as conn:
        if not inspect(conn).has_table(schema.schema_version.name):
            schema.schema_version.create(conn)
            conn.execute(schema.schema_version.insert().values(version=0))
        version = current_version(conn)
    if version > LATEST:
        raise SchemaError(
            f"{engine.url.render_as_string(hide_password=True)}: history schema version {version} is newer than "
            f"this spendwatch understands (up to {LATEST}); upgrade spendwatch"
        )
    applied = []
    for number, step in STEPS:
        if number <= version:
            continue
        with engine.begin() as conn:
            step(conn)
            conn.execute(schema.schema_version.update().values(version=number))
        applied.append(number)
    return applied
