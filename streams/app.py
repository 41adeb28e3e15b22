"""Build the faust app from settings: topics, the state table, the agents, the web pages.

No processing logic here; :mod:`streams.agents` moves events and
:mod:`streams.groups` runs them through ``detector``.
"""

from __future__ import annotations

import importlib.util
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust

from detector.engine import Engine
from detector.errors import ConfigError
from detector.events import Decoder
from detector.models import build
from detector.pricing import PriceTable
from detector.rules import RuleSet
from streams.agents import DecodeStep, Progress, attach_agents
from streams.codecs import anomaly_record
from streams.fetching import App
from streams.groups import GroupEngine, GroupRunner
from streams.rule_reload import RULES_POLL_S, WorkerRules, worker_reloader
from streams.settings import StreamSettings
from streams.tables import KeyedTable, declare_series_table, encode_state
from streams.topics import Topics, declare_topics
from streams.web import Metrics, add_pages

EngineFactory = Callable[[StreamSettings, RuleSet], GroupEngine]


class StreamConfigError(ConfigError):
    """The Kafka settings cannot work together (e.g. RocksDB chosen but not installed)."""


@dataclass
class StreamApp:
    """The faust app and the parts a caller (the CLI, a test) may look at."""

    app: faust.App
    topics: Topics
    table: faust.Table
    runner: GroupRunner
    metrics: Metrics
    settings: StreamSettings


def default_engine(settings: StreamSettings, rules: RuleSet) -> Engine:
    """The engine ``spendwatch replay`` builds from the same settings (and so the same rule files)."""
    return Engine(PriceTable.load(settings.prices), settings, rules=rules)


def build_app(settings: StreamSettings, engine_factory: EngineFactory = default_engine) -> StreamApp:
    """The worker's faust app, ready for ``faust.Worker``.

    >>> sa = build_app(StreamSettings(broker="kafka://127.0.0.1:9092", partitions=2))
    >>> sa.app.conf.id, sorted(sa.app.agents)[0], sa.table.name
    ('spendwatch', 'spendwatch-decode', 'spendwatch-series-v1')
    """
    app = new_app(settings.consumer_group, settings)
    topics = declare_topics(app, settings)
    table = declare_series_table(app, settings)
    keyed = KeyedTable(table, keep_values=not settings.store.startswith("memory:"))
    reloader = worker_reloader(settings, time.time())
    engine = engine_factory(settings, reloader.current)
    runner = GroupRunner(engine, keyed, encode=encode_state)
    if not keyed.keep_values:
        keyed.recover_only(lambda key: not runner.holds(key))
    metrics = Metrics()
    progress = Progress()
    decode = DecodeStep(Decoder(settings), metrics, engine.partition_key)
    attach_agents(app, topics, keyed, runner, decode, metrics, settings, progress)
    metrics.watch_lag(lambda: _lag(app, progress))
    rules = WorkerRules(engine, reloader) if isinstance(engine, Engine) else None
    if rules is not None:
        _reload_rules_on_a_timer(app, topics, rules, metrics)
    add_pages(app, metrics, lambda: _health(app, runner, keyed, rules))
    return StreamApp(app, topics, table, runner, metrics, settings)


def new_app(id: str, settings: StreamSettings, **options: Any) -> faust.App:
    """A faust app with the options of ``settings`` (``options`` override them) and their fetch wait."""
    return App(id, fetch_wait_ms=settings.fetch_wait_ms, **{**faust_options(settings), **options})


def faust_options(settings: StreamSettings) -> dict[str, Any]:
    options: dict[str, Any] = {
        "broker": settings.broker,
        "store": _store(settings.store),
        "datadir": str(settings.data_dir),
        "autodiscover": False,
        "topic_partitions": settings.partitions,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "consumer_auto_offset_reset": "earliest",
        "web_bind": settings.web_host,
        "web_port": settings.web_port,
        "web_host": settings.web_host,
        "consumer_max_fetch_size": settings.fetch_bytes,
    }
    credentials = _credentials(settings)
    if credentials is not None:
        options["broker_credentials"] = credentials
    if settings.producer_max_batch_bytes is not None:
        options["producer_max_batch_size"] = settings.producer_max_batch_bytes
    if settings.rebalance_timeout_s is not None:
        options["broker_rebalance_timeout"] = settings.rebalance_timeout_s
        options["broker_session_timeout"] = settings.rebalance_timeout_s
        options["broker_heartbeat_interval"] = settings.rebalance_timeout_s / 10
    return options


def _store(url: str) -> str:
    if url.startswith("rocksdb://") and importlib.util.find_spec("rocksdict") is None:
        raise StreamConfigError(
            f"store {url!r} needs the rocksdict package, which is not installed; "
            "pip install rocksdict, or use SPENDWATCH_STORE=memory://"
        )
    return url


def _credentials(settings: StreamSettings) -> Any:
    context = None
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None)
    if settings.security_protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.sasl_username, password=settings.sasl_password,
            mechanism=settings.sasl_mechanism, ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def _lag(app: faust.App, progress: Progress) -> dict[tuple[str, int], int]:
    """Highwater minus the next offset to read, for every partition this worker reads."""
    lag: dict[tuple[str, int], int] = {}
    try:
        consumer = app.consumer
        assigned = consumer.assignment()
    except Exception:  # not started or mid-rebalance: nothing to report yet
        return lag
    for tp in assigned:
        nxt = progress.next_offset.get((tp.topic, tp.partition))
        try:
            high = consumer.highwater(tp)
        except Exception:  # no fetch from this partition yet
            continue
        if nxt is not None and high is not None:
            lag[(tp.topic, tp.partition)] = max(0, high - nxt)
    return lag


def _reload_rules_on_a_timer(app: faust.App, topics: Topics, rules: WorkerRules, metrics: Metrics) -> None:
    @app.timer(interval=RULES_POLL_S)
    async def reload_rules() -> None:
        for record in rules.poll(time.time()):
            await topics.anomalies.send(key=record.id.encode(), value=anomaly_record(record))
            metrics.anomalies.labels(record.status).inc()


def _health(app: faust.App, runner: GroupRunner, table: KeyedTable, rules: WorkerRules | None) -> dict[str, Any]:
    try:
        assigned = sorted(f"{tp.topic}:{tp.partition}" for tp in app.consumer.assignment())
    except Exception:  # not started yet
        assigned = []
    health = {"status": "ok", "models": build(), "assigned": assigned, "rebalancing": bool(app.rebalancing),
              "groups": runner.groups, "keys": runner.keys(), "table_values_held": table.held()}
    if rules is not None:
        health["rules"] = rules.describe()
    return health
