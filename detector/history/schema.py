"""The history store's tables, as SQLAlchemy Core: what the queries and the writer use.

Times are integers or floats of epoch seconds (UTC), not database timestamp
types, so SQLite and PostgreSQL store and compare them identically and an
ISO week is a plain range. Absent labels are stored as ``""`` rather than
NULL: the dimension columns form the primary key of a rollup, and NULLs
would never conflict, so a redelivered hour would add a second row instead
of merging into the first.

Changing a table here is a schema change: add a step to
:mod:`detector.history.migrations` in the same change (a test checks that
the migrated database has exactly these columns).
"""

from __future__ import annotations

from sqlalchemy import (
                           JSON,
                           BigInteger,
                           Column,
                           Float,
                           Index,
                           Integer,
                           MetaData,
                           String,
                           Table,
                           Text,
)

metadata = MetaData()

DIMENSIONS: tuple[str, ...] = ("hour_start", "kind", "category", "team", "feature", "model", "tier", "unit")
"""The rollup key: one row per hour × kind × category × team × feature × model × tier × unit."""

COUNTS: tuple[str, ...] = ("requests", "input_tokens", "output_tokens", "cached_input_tokens", "retries",
                           "errors", "unpriced")
AMOUNTS: tuple[str, ...] = ("cost_usd", "gpu_hours", "gpu_busy_hours", "idle_gpu_usd", "quantity")
MEASURES: tuple[str, ...] = COUNTS + AMOUNTS

rollup_hourly = Table(
    "rollup_hourly",
    metadata,
    # kind: "llm" (requests), "gpu" (GPU samples; model is the GPU model), "usage" (model is the metric)
    *(Column(name, BigInteger if name == "hour_start" else String, primary_key=True, nullable=False)
      for name in DIMENSIONS),
    *(Column(name, BigInteger, nullable=False, default=0) for name in COUNTS),
    *(Column(name, Float(53), nullable=False, default=0.0) for name in AMOUNTS),
)
Index("ix_rollup_hourly_team_hour", rollup_hourly.c.team, rollup_hourly.c.hour_start)

anomalies = Table(
    "anomalies",
    metadata,
    Column("id", String, primary_key=True),
    Column("rule", String, nullable=False),
    Column("metric", String, nullable=False),
    Column("team", String, nullable=False),  # the owner: the labels' team, "" when none
    Column("labels", JSON, nullable=False),
    Column("severity", String, nullable=False),
    Column("status", String, nullable=False),
    Column("started_ts", Float(53), nullable=False),
    Column("detected_ts", Float(53), nullable=False),
    Column("resolved_ts", Float(53)),
    Column("excess_usd_per_hour", Float(53), nullable=False),
    Column("projected_month_usd", Float(53)),
    Column("summary", Text, nullable=False),
    Column("record", JSON, nullable=False),  # the latest Contract 3 record, whole
)
Index("ix_anomalies_detected", anomalies.c.detected_ts)

seen_requests = Table(
    "seen_requests",
    metadata,
    Column("request_key", String, primary_key=True),  # request_id, or request_id + attempt for a retry
    Column("ts", Float(53), nullable=False),  # event time, for pruning
)
Index("ix_seen_requests_ts", seen_requests.c.ts)

schema_version = Table("schema_version", metadata, Column("version", Integer, nullable=False))
