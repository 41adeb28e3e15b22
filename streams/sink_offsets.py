"""The usage offsets whose events are already in the history store's rollups, per partition.

Kafka redelivers what was read since the last committed offset; the
history writer drops a repeated request id, but only within its dedupe
window of event time, and a sink catching up on a backlog can be killed
with more than a day of events uncommitted. So the sink writes down, right
after each flush, the next offset of every partition it booked, and on
restart skips what lies below it. Only a crash between the flush and this
write leaves a batch to the request-id dedupe.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path


class OffsetLedger:
    """Next offset to book per (topic, partition), in a SQLite file the sink owns.

    >>> ledger = OffsetLedger(":memory:")
    >>> ledger.booked("spendwatch.usage", 0, 7)
    False
    >>> ledger.save([("spendwatch.usage", 0, 8)])
    >>> ledger.booked("spendwatch.usage", 0, 7), ledger.booked("spendwatch.usage", 0, 8)
    (True, False)
    """

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sink_offsets "
            "(topic TEXT NOT NULL, partition INTEGER NOT NULL, next_offset INTEGER NOT NULL, "
            "PRIMARY KEY (topic, partition))"
        )
        self._next = {(t, p): n for t, p, n in self._db.execute("SELECT * FROM sink_offsets")}

    def booked(self, topic: str, partition: int, offset: int) -> bool:
        """Whether the message at ``offset`` was booked before (a redelivery)."""
        return offset < self._next.get((topic, partition), 0)

    def save(self, nexts: Iterable[tuple[str, int, int]]) -> None:
        """Record (topic, partition, next offset) triples; offsets never move back."""
        rows = [(t, p, n) for t, p, n in nexts if n > self._next.get((t, p), 0)]
        if not rows:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._db.executemany(
                "INSERT INTO sink_offsets VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = MAX(next_offset, excluded.next_offset)",
                rows,
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        self._next.update({(t, p): n for t, p, n in rows})

    def close(self) -> None:
        self._db.close()
