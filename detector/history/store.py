"""The history store: hourly rollups and anomalies with their lifecycle, in SQLite or PostgreSQL.

A SQLAlchemy URL picks the database (``SPENDWATCH_DB_URL``; a SQLite file by
default, ``postgresql+psycopg://…`` for PostgreSQL). Writes are idempotent
where they must be: rollup rows are *added* to the row of the same key (so
flushing twice as often changes nothing), request ids travel in the same
transaction (so a restart cannot count an hour twice), and an anomaly is
upserted by id, a late ``firing`` copy never reopening a resolved one.
Times go in and out as epoch seconds (UTC); nothing here reads the clock.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

from detector.anomaly import Anomaly
from detector.errors import ConfigError
from detector.history import schema
from detector.history.migrations import migrate
from detector.history.rollup import RollupRow

CHUNK = 5000  # rows per statement: well under SQLite's and PostgreSQL's parameter limits
_ANOMALY_FIELDS = frozenset(f.name for f in fields(Anomaly))


@dataclass(frozen=True, slots=True)
class StoredAnomaly:
    """An anomaly as the store keeps it: the latest record and its times as epoch seconds."""

    record: Anomaly
    team: str
    started_ts: float
    detected_ts: float
    resolved_ts: float | None


def parse_time(text: str) -> float:
    """RFC 3339 (as in anomaly records) to epoch seconds.

    >>> parse_time("2026-11-16T14:05:00Z")
    1794837900.0
    """
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class HistoryStore:
    """Rollups and anomalies in one database; open it with :meth:`open`.

    >>> store = HistoryStore.open("sqlite://")
    >>> store.add_rollups([RollupRow(0, "llm", "hosted_inference", "a", "", "m", "", "tokens", requests=2)])
    >>> store.add_rollups([RollupRow(0, "llm", "hosted_inference", "a", "", "m", "", "tokens", requests=3)])
    >>> [row.requests for row in store.rollups(0, 3600)]
    [5]
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        dialect = engine.dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise ConfigError(f"history store: database {dialect!r} is not supported; expected SQLite or PostgreSQL")
        self._insert = sqlite.insert if dialect == "sqlite" else postgresql.insert
        marks = "?, ?" if engine.dialect.paramstyle == "qmark" else "%s, %s"
        self._seen_sql = (
            f"INSERT INTO {schema.seen_requests.name} (request_key, ts) VALUES ({marks}) "
            "ON CONFLICT (request_key) DO NOTHING"
        )

    @classmethod
    def open(cls, url: str, *, apply_migrations: bool = True) -> HistoryStore:
        """Connect to ``url`` and bring its schema up to date (unless told not to)."""
        try:
            engine = create_engine(url)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise ConfigError(
                f"SPENDWATCH_DB_URL: cannot use {url!r} ({exc}); expected a SQLAlchemy URL such as "
                "sqlite:///spendwatch.db or postgresql+psycopg://user@host/db"
            ) from exc
        if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            Path(engine.url.database).parent.mkdir(parents=True, exist_ok=True)
        store = cls(engine)
        if apply_migrations:
            try:
                migrate(engine)
            except OperationalError as exc:
                raise ConfigError(
                    f"{engine.url.render_as_string(hide_password=True)}: cannot open the history store: {exc.orig}"
                ) from exc
        return store

    def close(self) -> None:
        self.engine.dispose()

    # -- rollups -----------------------------------------------------------------
    def add_rollups(self, rows: Sequence[RollupRow], seen: Sequence[tuple[str, float]] = (),
                    forget_before: float | None = None) -> None:
        """Add ``rows`` to the stored rows of the same key, and record ``seen`` request ids; one transaction.

        Request ids with an event time before ``forget_before`` are deleted in the
        same transaction: past the dedupe window they only take space.
        """
        table = schema.rollup_hourly
        stmt = self._insert(table)
        stmt = stmt.on_conflict_do_update(
            index_elements=list(schema.DIMENSIONS),
            set_={name: table.c[name] + stmt.excluded[name] for name in schema.MEASURES},
        )
        with self.engine.begin() as conn:
            for part in _chunks([_row_params(r) for r in rows]):
                conn.execute(stmt, part)
            # Plain driver statements: an id is two values, and SQLAlchemy's per-row work
            # would cost more than the database's for the hundreds of thousands in a day.
            for lo in range(0, len(seen), CHUNK):
                conn.exec_driver_sql(self._seen_sql, list(seen[lo : lo + CHUNK]))
            if forget_before is not None:
                conn.execute(delete(schema.seen_requests).where(schema.seen_requests.c.ts < forget_before))

    def rollups(self, start: float, end: float) -> list[RollupRow]:
        """Every rollup row whose hour starts in [start, end)."""
        table = schema.rollup_hourly
        query = select(table).where(table.c.hour_start >= start, table.c.hour_start < end)
        with self.engine.connect() as conn:
            return [RollupRow(**row._mapping) for row in conn.execute(query.order_by(table.c.hour_start))]

    def span(self) -> tuple[int, int] | None:
        """First and last hour held, or None when the store has no rollups."""
        table = schema.rollup_hourly
        with self.engine.connect() as conn:
            low, high = conn.execute(select(func.min(table.c.hour_start), func.max(table.c.hour_start))).one()
        return None if low is None else (int(low), int(high))

    def seen_since(self, ts: float) -> list[tuple[str, float]]:
        """Request ids recorded with an event time at or after ``ts`` (a restarted writer reloads them)."""
        table = schema.seen_requests
        with self.engine.connect() as conn:
            return [(r.request_key, r.ts) for r in conn.execute(select(table).where(table.c.ts >= ts))]

    def latest_seen(self) -> float | None:
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(schema.seen_requests.c.ts))).scalar()

    # -- anomalies ---------------------------------------------------------------
    def upsert_anomaly(self, a: Anomaly) -> None:
        """Insert or update by id; a resolved anomaly stays resolved whatever arrives after it."""
        table = schema.anomalies
        values = _anomaly_params(a)
        stmt = self._insert(table).values(values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["id"],
            set_={name: stmt.excluded[name] for name in values if name != "id"},
            where=or_(table.c.status != "resolved", stmt.excluded.status == "resolved"),
        )
        with self.engine.begin() as conn:
            conn.execute(stmt)

    def anomalies(self, start: float, end: float) -> list[StoredAnomaly]:
        """Anomalies detected in [start, end), in order of detection."""
        table = schema.anomalies
        query = select(table).where(table.c.detected_ts >= start, table.c.detected_ts < end)
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(table.c.detected_ts, table.c.id)).all()
        return [
            StoredAnomaly(_anomaly(r.record), r.team, r.started_ts, r.detected_ts, r.resolved_ts) for r in rows
        ]

    # -- retention ---------------------------------------------------------------
    def prune(self, now: float, retention_days: float, dedupe_window_s: float) -> dict[str, int]:
        """Delete what is older than the retention (request ids: older than the dedupe window).

        ``now`` is passed in (the command line reads the clock, not the store).
        """
        cutoff = now - retention_days * 86400
        deleted = {}
        with self.engine.begin() as conn:
            rollups, anomalies, seen = schema.rollup_hourly, schema.anomalies, schema.seen_requests
            deleted["rollups"] = conn.execute(delete(rollups).where(rollups.c.hour_start < cutoff)).rowcount
            deleted["anomalies"] = conn.execute(
                delete(anomalies).where(anomalies.c.detected_ts < cutoff)
            ).rowcount
            deleted["request_ids"] = conn.execute(delete(seen).where(seen.c.ts < now - dedupe_window_s)).rowcount
        return deleted


def _chunks(items: list[dict[str, Any]]) -> Iterable[list[dict[str, Any]]]:
    for lo in range(0, len(items), CHUNK):
        yield items[lo : lo + CHUNK]


def _row_params(row: RollupRow) -> dict[str, Any]:
    return {f.name: getattr(row, f.name) for f in fields(row)}


def _anomaly_params(a: Anomaly) -> dict[str, Any]:
    return {
        "id": a.id,
        "rule": a.rule,
        "metric": a.metric,
        "team": a.labels.get("team", ""),
        "labels": dict(a.labels),
        "severity": a.severity,
        "status": a.status,
        "started_ts": parse_time(a.started_at),
        "detected_ts": parse_time(a.detected_at),
        "resolved_ts": None if a.resolved_at is None else parse_time(a.resolved_at),
        "excess_usd_per_hour": a.excess_cost_usd_per_hour,
        "projected_month_usd": a.projected_month_usd,
        "summary": a.summary,
        "record": a.to_dict(),
    }


def _anomaly(record: dict[str, Any]) -> Anomaly:
    """A stored record back as an Anomaly; fields this version does not know are left out."""
    return Anomaly(**{k: v for k, v in record.items() if k in _ANOMALY_FIELDS})
