"""The durable outbox: every notification is written down before it is sent.

A notification is a row keyed by (alert id, status), so the firing and the
resolved notice of one anomaly are two rows and enqueueing either twice (a
stream redelivering after a restart, a replay) changes nothing. A row stays
``pending`` until Slack has taken it, then becomes ``delivered`` (or
``summarised`` when it was folded into one catch-up message) and is never
sent again. Progress within a delivery is written as it happens: the Slack
channel and ``ts`` of a posted message, and whether the original alert was
updated, so a retry resumes where the last attempt stopped instead of posting
again.

SQLite (stdlib) in WAL mode with full sync: one small file per worker that
survives a process restart. The schema carries a version so that a later
change is a migration, not a surprise.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from detector.errors import ConfigError

SCHEMA_VERSION = 1
STATES = ("pending", "delivered", "summarised")
Key = tuple[str, str]  # (alert_id, status)

_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL);
INSERT INTO schema_version (version)
    SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM schema_version);
CREATE TABLE IF NOT EXISTS notifications (
    alert_id         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('firing', 'resolved')),
    payload          TEXT NOT NULL,               -- the anomaly record (Contract 3), JSON
    channel          TEXT,                        -- destination; NULL for an incoming webhook
    enqueued_at      REAL NOT NULL,
    state            TEXT NOT NULL DEFAULT 'pending'
                     CHECK (state IN ('pending', 'delivered', 'summarised')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  REAL NOT NULL,
    last_error       TEXT,
    message_channel  TEXT,                        -- where Slack put the message we posted
    message_ts       TEXT,                        -- and its ts (the thread of a firing alert)
    original_updated INTEGER NOT NULL DEFAULT 0,  -- resolved: the firing message was rewritten
    finished_at      REAL,
    PRIMARY KEY (alert_id, status)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (state, next_attempt_at);
COMMIT;
"""
_COLUMNS = (
    "alert_id, status, payload, channel, enqueued_at, state, attempts, next_attempt_at, "
    "last_error, message_channel, message_ts, original_updated, finished_at"
)


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification and how far its delivery got."""

    alert_id: str
    status: str
    payload: dict[str, Any]
    channel: str | None
    enqueued_at: float
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    message_channel: str | None
    message_ts: str | None
    original_updated: bool
    finished_at: float | None

    @property
    def key(self) -> Key:
        return (self.alert_id, self.status)


class Outbox:
    """Notifications waiting for Slack, in a SQLite file.

    >>> box = Outbox(":memory:")
    >>> box.enqueue({"id": "a1", "status": "firing"}, channel="#spend", now=100.0)
    True
    >>> box.enqueue({"id": "a1", "status": "firing"}, channel="#spend", now=160.0)
    False
    >>> [row.key for row in box.due(now=100.0)]
    [('a1', 'firing')]
    >>> box.mark_delivered(("a1", "firing"), now=101.0); box.count("pending")
    0
    >>> box.close()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as e:
            raise ConfigError(f"{self.path}: cannot open the notification outbox: {e}") from e
        try:
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._check_schema()
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise ConfigError(f"{self.path}: not a notification outbox database: {e}") from e
        except ConfigError:
            self._db.close()
            raise

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not tables:
            self._db.executescript(_SCHEMA)  # one transaction; safe when two processes race
            return
        found = None
        if "schema_version" in tables:
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
            found = row[0] if row else None
        if found != SCHEMA_VERSION:
            raise ConfigError(
                f"{self.path}: notification outbox schema version {found}, expected {SCHEMA_VERSION}; "
                "point the outbox setting at a new file or migrate this one"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({self.path!r})"

    # -- writing ----------------------------------------------------------------
    def enqueue(self, record: dict[str, Any], *, channel: str | None, now: float, key: str | None = None) -> bool:
        """Write a notification down; False when that (key or id, status) is already here.

        ``key`` names the notification when one alert has several (one per
        channel, reminders); by default it is the record's id.
        """
        try:
            alert_id, status = str(key or record["id"]), str(record["status"])
        except KeyError as e:
            raise ValueError(f"outbox: a notification needs the record's id and status; {e} is missing") from e
        if status not in ("firing", "resolved"):
            raise ValueError(f"outbox: alert {alert_id}: status must be firing or resolved, found {status!r}")
        cur = self._db.execute(
            "INSERT INTO notifications (alert_id, status, payload, channel, enqueued_at, next_attempt_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (alert_id, status) DO NOTHING",
            (alert_id, status, json.dumps(record, sort_keys=True), channel, now, now),
        )
        return cur.rowcount == 1

    def note_attempt(self, key: Key) -> None:
        """Count an attempt before it is made, so a crash mid-send still shows in ``attempts``."""
        self._update(key, "attempts = attempts + 1")

    def record_message(self, key: Key, *, channel: str, ts: str) -> None:
        """The message for this row is posted: remember where, so it is not posted again."""
        self._update(key, "message_channel = ?, message_ts = ?", channel, ts)

    def record_original_updated(self, key: Key) -> None:
        self._update(key, "original_updated = 1")

    def mark_delivered(self, key: Key, *, now: float) -> None:
        self._update(key, "state = 'delivered', finished_at = ?, last_error = NULL", now)

    def mark_retry(self, key: Key, *, error: str, next_attempt_at: float) -> None:
        self._update(key, "last_error = ?, next_attempt_at = ?", error, next_attempt_at)

    def mark_summarised(self, keys: Iterable[Key], *, now: float) -> None:
        """Rows folded into one catch-up message: finished, all in one transaction."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for alert_id, status in keys:
                self._db.execute(
                    "UPDATE notifications SET state = 'summarised', finished_at = ? "
                    "WHERE alert_id = ? AND status = ? AND state = 'pending'",
                    (now, alert_id, status),
                )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def prune(self, *, finished_before: float) -> int:
        """Forget finished rows; a record enqueued again after this would be sent again."""
        cur = self._db.execute(
            "DELETE FROM notifications WHERE state != 'pending' AND finished_at < ?", (finished_before,)
        )
        return cur.rowcount

    def _update(self, key: Key, assignments: str, *values: Any) -> None:
        cur = self._db.execute(
            f"UPDATE notifications SET {assignments} WHERE alert_id = ? AND status = ?", (*values, *key)
        )
        if cur.rowcount != 1:
            raise KeyError(f"{self.path}: no notification for alert {key[0]} ({key[1]}) in the outbox")

    # -- reading ----------------------------------------------------------------
    def due(self, *, now: float) -> list[OutboxRow]:
        """Pending rows whose time has come: oldest first, a firing before its resolved."""
        rows = self._db.execute(
            f"SELECT {_COLUMNS} FROM notifications WHERE state = 'pending' AND next_attempt_at <= ? "
            "ORDER BY enqueued_at, status = 'resolved', alert_id",
            (now,),
        )
        return [_row(r) for r in rows]

    def get(self, key: Key) -> OutboxRow | None:
        r = self._db.execute(
            f"SELECT {_COLUMNS} FROM notifications WHERE alert_id = ? AND status = ?", key
        ).fetchone()
        return None if r is None else _row(r)

    def channel_id(self, channel: str) -> str | None:
        """The id Slack answered with for a channel some row was posted to by this name, if any."""
        r = self._db.execute(
            "SELECT message_channel FROM notifications WHERE channel = ? AND message_channel IS NOT NULL "
            "AND message_channel != '' LIMIT 1", (channel,)
        ).fetchone()
        return None if r is None else str(r[0])

    def count(self, state: str) -> int:
        if state not in STATES:
            raise ValueError(f"outbox: state must be one of {', '.join(STATES)}, found {state!r}")
        return self._db.execute("SELECT count(*) FROM notifications WHERE state = ?", (state,)).fetchone()[0]


def _row(r: tuple[Any, ...]) -> OutboxRow:
    return OutboxRow(
        alert_id=r[0], status=r[1], payload=json.loads(r[2]), channel=r[3], enqueued_at=r[4],
        state=r[5], attempts=r[6], next_attempt_at=r[7], last_error=r[8], message_channel=r[9],
        message_ts=r[10], original_updated=bool(r[11]), finished_at=r[12],
    )
