"""Silences: "do not send alerts matching these matchers until then", kept in a SQLite file.

A silence is data a person writes with ``spendwatch silence add``: matchers
on alert labels (:mod:`detector.alerts.matchers`), a start and an end in
epoch seconds, a comment saying why, and who set it. The pipeline asks
:meth:`SilenceStore.active` at the event time it is at, so a silence that
ends while its alert still fires lets the alert through at the group's next
look (see :mod:`detector.alerts.grouping`). Expiring a silence sets its end
to the time given; nothing is deleted, so ``silence list --all`` is the
history of who silenced what and why.

Silences with no matcher are refused: a silence must say what it silences.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from detector.alerts.matchers import matches_all, parse_label_matcher
from detector.errors import ConfigError, SpendwatchError
from detector.rules.diagnostics import quote
from detector.rules.matchers import Matcher, MatcherError

SCHEMA_VERSION = 1
_SCHEMA = f"""
BEGIN IMMEDIATE;
CREATE TABLE IF NOT EXISTS silences_schema (version INTEGER NOT NULL);
INSERT INTO silences_schema (version) SELECT {SCHEMA_VERSION} WHERE NOT EXISTS (SELECT 1 FROM silences_schema);
CREATE TABLE IF NOT EXISTS silences (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    matchers   TEXT NOT NULL,   -- JSON list of matcher texts, canonical form
    starts_at  REAL NOT NULL,
    ends_at    REAL NOT NULL,
    comment    TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at REAL NOT NULL
);
COMMIT;
"""


class SilenceError(SpendwatchError):
    """A silence cannot be added or changed; the message says why and what would work."""


@dataclass(frozen=True, slots=True)
class Silence:
    """One silence; ``mutes`` says whether it holds back an alert at a time."""

    id: int
    matchers: tuple[Matcher, ...]
    starts_at: float
    ends_at: float
    comment: str
    created_by: str

    def active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def mutes(self, labels: Mapping[str, str], now: float) -> bool:
        """Active at ``now`` and every matcher selects ``labels``.

        >>> s = Silence(1, (parse_label_matcher('team="search"'),), 0.0, 100.0, "deploy", "ana")
        >>> s.mutes({"team": "search"}, 50.0), s.mutes({"team": "search"}, 100.0), s.mutes({"team": "ads"}, 50.0)
        (True, False, False)
        """
        return self.active(now) and matches_all(self.matchers, dict(labels))


def parse_matchers(texts: Iterable[str]) -> tuple[Matcher, ...]:
    """Matchers given on the command line, or :class:`SilenceError` naming the bad one.

    >>> parse_matchers(['team="search"', "feature=x"])
    Traceback (most recent call last):
    ...
    detector.alerts.silences.SilenceError: --matcher "feature=x": bad matcher "feature=x" (expected name="value", name!="value", name=~"regex" or name!~"regex"); did you mean 'feature="x"'?
    """
    out = []
    for text in texts:
        try:
            out.append(parse_label_matcher(text))
        except MatcherError as exc:
            hint = f"; did you mean {quote(exc.suggestion)}?" if exc.suggestion else ""
            raise SilenceError(f"--matcher {quote(text)}: {exc} (expected {exc.expected}){hint}") from None
    if not out:
        raise SilenceError('a silence needs at least one --matcher, e.g. --matcher \'team="search"\'')
    return tuple(out)


class SilenceStore:
    """Silences in a SQLite file (WAL, full sync), shared by the CLI and the pipeline.

    >>> store = SilenceStore(":memory:")
    >>> s = store.add(['team="search"'], starts_at=0.0, ends_at=7200.0, comment="deploy", created_by="ana", now=0.0)
    >>> [x.id for x in store.active(now=60.0)], store.expire(s.id, now=120.0).ends_at, store.active(now=130.0)
    ([1], 120.0, [])
    >>> store.close()
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = FULL")
            self._check_schema()
        except sqlite3.Error as exc:
            raise ConfigError(f"{self.path}: not a silences database: {exc}") from exc

    def _check_schema(self) -> None:
        tables = {r[0] for r in self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "silences_schema" not in tables:
            self._db.executescript(_SCHEMA)
            return
        row = self._db.execute("SELECT version FROM silences_schema").fetchone()
        if (row[0] if row else None) != SCHEMA_VERSION:
            self._db.close()
            raise ConfigError(f"{self.path}: silences schema version {row[0] if row else None}, "
                              f"expected {SCHEMA_VERSION}; point the silences setting at a new file")

    def close(self) -> None:
        self._db.close()

    def __repr__(self) -> str:
        return f"SilenceStore({self.path!r})"

    def add(self, matchers: Iterable[str], *, starts_at: float, ends_at: float, comment: str,
            created_by: str, now: float) -> Silence:
        """Write a silence down; the matchers are checked first, so a bad one never reaches the file."""
        parsed = parse_matchers(matchers)
        if not ends_at > starts_at:
            raise SilenceError(f"a silence must end after it starts: {starts_at} → {ends_at} (expected --for > 0)")
        if not comment.strip():
            raise SilenceError("a silence needs a --comment saying why, for whoever is on call next")
        texts = json.dumps([str(m) for m in parsed])
        cur = self._db.execute(
            "INSERT INTO silences (matchers, starts_at, ends_at, comment, created_by, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)", (texts, starts_at, ends_at, comment, created_by, now))
        return Silence(int(cur.lastrowid or 0), parsed, starts_at, ends_at, comment, created_by)

    def expire(self, silence_id: int, *, now: float) -> Silence:
        """End a silence at ``now`` (one that has ended already is left as it is)."""
        found = self.get(silence_id)
        if found is None:
            raise SilenceError(f"{self.path}: no silence with id {silence_id} (expected an id from `silence list`)")
        if found.ends_at > now:
            self._db.execute("UPDATE silences SET ends_at = ? WHERE id = ?", (max(now, found.starts_at), silence_id))
        return self.get(silence_id) or found

    def get(self, silence_id: int) -> Silence | None:
        rows = self._select("WHERE id = ?", (silence_id,))
        return rows[0] if rows else None

    def active(self, *, now: float) -> list[Silence]:
        return self._select("WHERE starts_at <= ? AND ends_at > ? ORDER BY id", (now, now))

    def all(self) -> list[Silence]:
        return self._select("ORDER BY id", ())

    def _select(self, where: str, args: tuple[float | int, ...]) -> list[Silence]:
        rows = self._db.execute(
            f"SELECT id, matchers, starts_at, ends_at, comment, created_by FROM silences {where}", args)
        return [Silence(r[0], tuple(parse_label_matcher(t) for t in json.loads(r[1])), r[2], r[3], r[4], r[5])
                for r in rows]
