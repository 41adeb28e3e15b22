"""Kafka settings of the worker and the producer, read once at start-up.

They extend :class:`detector.config.Settings`, so one object (and one
``SPENDWATCH_*`` namespace) carries both the detection and the Kafka
settings. Topic and table names key persistent state: renaming one is a
migration.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from detector.config import Settings

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class StreamSettings(Settings):
    """Detection settings plus where the broker is and how to talk to it.

    >>> s = StreamSettings(broker="kafka://127.0.0.1:9092", partitions=8)
    >>> s.usage_topic, s.partitions, s.store
    ('spendwatch.usage', 8, 'memory://')
    """

    usage_topic: str = Field("spendwatch.usage", min_length=1, description="topic the usage events arrive on")
    anomalies_topic: str = Field(
        "spendwatch.anomalies", min_length=1, description="topic anomaly records (Contract 3) go to"
    )
    deadletter_topic: str = Field(
        "spendwatch.deadletter", min_length=1, description="topic rejected or failed events go to"
    )
    partitions: int = Field(
        4, ge=1, le=10_000,
        description="partitions of the usage topic, the repartition topic and the state table (fixed once chosen)",
    )
    consumer_group: str = Field(
        "spendwatch", min_length=1, description="consumer group id; workers with the same id share the work"
    )
    store: str = Field(
        "memory://", pattern=r"^(memory|rocksdb)://",
        description="local table store: memory:// (rebuilt from the changelog at start) or rocksdb:// (kept on disk)",
    )
    data_dir: Path = Field(Path("spendwatch-data"), description="where the worker keeps local table files")
    web_host: str = Field("0.0.0.0", description="address the health and metrics endpoint listens on")
    web_port: int = Field(6066, ge=1, le=65535, description="port of the health and metrics endpoint")
    security_protocol: SecurityProtocol = Field("PLAINTEXT", description="how to reach the broker")
    sasl_mechanism: SaslMechanism = Field("PLAIN", description="SASL mechanism when the protocol uses SASL")
    sasl_username: str | None = Field(None, description="SASL user name")
    sasl_password: str | None = Field(None, description="SASL password", repr=False)
    ssl_cafile: Path | None = Field(None, description="CA bundle to verify the broker's certificate")
    batch_max: int = Field(
        1000, ge=1, description="messages the worker takes at once; state is written once per series per batch"
    )
    batch_within_s: float = Field(
        0.05, gt=0, description="longest wait to fill a batch before processing what has arrived"
    )
    producer_max_batch_bytes: int | None = Field(
        None, ge=1,
        description="cap on the producers' batch size, the worker's and `spendwatch produce`'s "
        "(leave unset; the test broker needs 1, see tests/broker.py)",
    )
    fetch_bytes: int = Field(
        16 * 2**20, ge=2**20,
        description="most bytes one fetch brings per partition (the client caps a whole fetch at 50 MiB); "
        "large fetches keep a busy worker fed between its batches (faust's default is 1 MiB)",
    )
    fetch_wait_ms: int = Field(
        100, ge=1, le=60_000,
        description="longest the broker may hold a fetch that finds no new data; faust fixes 1,500 ms, "
        "and a fetch of idle partitions then holds up the busy ones that long (streams/fetching.py)",
    )
    rebalance_timeout_s: float | None = Field(
        None, gt=0, description="consumer group rebalance timeout (unset: the client's default)"
    )

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> StreamSettings:
        if self.security_protocol.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ValueError(
                f"security_protocol {self.security_protocol} needs sasl_username and sasl_password; "
                "set SPENDWATCH_SASL_USERNAME and SPENDWATCH_SASL_PASSWORD"
            )
        return self
