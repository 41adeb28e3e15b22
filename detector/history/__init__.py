"""The history store: hourly spend rollups and anomalies with their lifecycle.

:class:`HistoryWriter` is what a replay or the stream's single writer
feeds (events and anomaly records); :class:`HistoryStore` holds the rows in
SQLite or PostgreSQL (``SPENDWATCH_DB_URL``) and answers the digest's and the
export's queries; :class:`HourlyRollup` is the in-memory accumulator;
:func:`migrate` applies the explicit schema migrations; :class:`HistorySettings`
adds this package's settings to the shared ones.
"""

from detector.history.migrations import LATEST, SchemaError, migrate
from detector.history.rollup import HourlyRollup, RollupRow, request_key
from detector.history.settings import HistorySettings
from detector.history.store import HistoryStore, StoredAnomaly, parse_time
from detector.history.writer import HistoryWriter

__all__ = [
    "HistorySettings",
    "HistoryStore",
    "HistoryWriter",
    "HourlyRollup",
    "LATEST",
    "RollupRow",
    "SchemaError",
    "StoredAnomaly",
    "migrate",
    "parse_time",
    "request_key",
]
