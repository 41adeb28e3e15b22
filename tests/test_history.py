"""The history store against a SQLite file and a real PostgreSQL server: schema, rollups, lifecycle, retention."""

from __future__ import annotations

from collections import defaultdict

import pytest
import spend_world
from postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from sqlalchemy import inspect, text

from detector.anomaly import Anomaly
from detector.errors import ConfigError
from detector.events import GpuSample, LlmRequest, UsageSample
from detector.history import LATEST, HistoryStore, HistoryWriter, SchemaError, migrate
from detector.history.schema import metadata
from detector.ledger import SpendLedger
from detector.pricing import PriceTable

PRICES = PriceTable.packaged()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'history.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def store(url):
    store = HistoryStore.open(url)
    yield store
    store.close()


def _anomaly(status: str = "firing", resolved_at: str | None = None, **changes) -> Anomaly:
    fields = dict(
        id="a1", rule="builtin.input_tokens_per_request", metric="input_tokens_per_request",
        labels={"team": "support", "feature": "chat", "model": "claude-haiku-4-5"}, severity="critical",
        status=status, started_at="2026-11-17T14:00:00Z", detected_at="2026-11-17T14:20:00Z",
        resolved_at=resolved_at, observed=5000.0, baseline=2500.0, ratio=2.0, excess_cost_usd_per_hour=12.5,
        projected_month_usd=9000.0, summary="prompts doubled",
    )
    return Anomaly(**{**fields, **changes})


def test_a_new_database_is_migrated_to_exactly_the_declared_schema(url):
    store = HistoryStore.open(url, apply_migrations=False)
    assert migrate(store.engine) == list(range(1, LATEST + 1))
    assert migrate(store.engine) == []
    found = inspect(store.engine)
    for table in metadata.sorted_tables:
        assert {c["name"] for c in found.get_columns(table.name)} == set(table.columns.keys()), table.name
    store.close()


def test_a_database_from_a_newer_version_is_refused_with_both_versions_named(url):
    store = HistoryStore.open(url)
    with store.engine.begin() as conn:
        conn.execute(text("UPDATE schema_version SET version = :v"), {"v": LATEST + 3})
    with pytest.raises(SchemaError, match=f"version {LATEST + 3} is newer .*up to {LATEST}"):
        migrate(store.engine)
    store.close()


def test_a_bad_url_says_which_setting_and_what_is_expected():
    with pytest.raises(ConfigError, match="SPENDWATCH_DB_URL: cannot use 'nosuchdb://x'.*expected a SQLAlchemy URL"):
        HistoryStore.open("nosuchdb://x")


def test_rollups_hold_the_same_dollars_and_counts_as_the_spend_ledger(store):
    """Two weeks of simulated traffic: per (category, team), the store agrees with the ledger to the cent."""
    ledger = SpendLedger()
    writer = HistoryWriter(store, PRICES)
    requests_by_team: dict[str, int] = defaultdict(int)
    for ev in spend_world.events():
        if type(ev) is LlmRequest:
            ledger.add_request(ev, PRICES.cost(ev))
            requests_by_team[ev.team] += 1
        elif type(ev) is GpuSample:
            ledger.add_gpu(ev, PRICES.gpu_hourly(ev.gpu_model))
        else:
            ledger.add_usage(ev)
        writer.add_event(ev)
    writer.flush()
    rows = store.rollups(0, 4e9)
    stored: dict[tuple[str, str], float] = defaultdict(float)
    for row in rows:
        stored[(row.category, row.team)] += row.cost_usd
    assert {k: round(v, 2) for k, v in stored.items()} == {
        (c, t): round(line.cost_usd, 2) for (c, t), line in ledger.lines.items()
    }
    counted: dict[str, int] = defaultdict(int)
    for row in rows:
        counted[row.team] += row.requests
    assert dict(counted) == dict(requests_by_team)
    gpu_hours = sum(row.gpu_hours for row in rows)
    assert gpu_hours == pytest.approx(sum(line.gpu_hours for line in ledger.lines.values()))


def test_flushing_often_or_once_stores_the_same_rows(tmp_path):
    evs = spend_world.events()[:30_000]
    once, often = (HistoryStore.open(f"sqlite:///{tmp_path / name}") for name in ("once.db", "often.db"))
    w_once, w_often = HistoryWriter(once, PRICES), HistoryWriter(often, PRICES)
    for i, ev in enumerate(evs):
        w_once.add_event(ev)
        w_often.add_event(ev)
        if i % 997 == 0:
            w_often.flush()
    w_once.flush()
    w_often.flush()

    def table(store):
        return {r.key(): (r.requests, r.input_tokens, round(r.cost_usd, 9), round(r.gpu_hours, 9))
                for r in store.rollups(0, 4e9)}

    assert table(once) == table(often)
    assert len(table(once)) > 100


def test_events_redelivered_after_a_restart_are_counted_once(store):
    evs = [e for e in spend_world.events()[:40_000] if type(e) is LlmRequest][:20_000]
    first = HistoryWriter(store, PRICES)
    for ev in evs[:15_000]:
        first.add_event(ev)
    first.flush()
    before = sum(r.requests for r in store.rollups(0, 4e9))
    restarted = HistoryWriter(store, PRICES)  # a new process: only the store remembers
    booked = [restarted.add_event(ev) for ev in evs[10_000:]]
    restarted.flush()
    assert booked.count(False) == 5_000 == restarted.rollup.duplicates
    assert sum(r.requests for r in store.rollups(0, 4e9)) == before + 5_000 == len(evs)


def test_a_retry_is_a_request_of_its_own_but_a_repeated_retry_is_not(store):
    writer = HistoryWriter(store, PRICES)
    base = dict(ts=1.8e9, model="gpt-4o", input_tokens=100, output_tokens=10, team="a", request_id="r-1")
    booked = [writer.add_event(LlmRequest(**base)), writer.add_event(LlmRequest(**base, attempt=2)),
              writer.add_event(LlmRequest(**base, attempt=2))]
    writer.flush()
    [row] = store.rollups(0, 4e9)
    assert booked == [True, True, False]
    assert (row.requests, row.retries) == (2, 1)


def test_unpriced_requests_are_counted_not_booked_as_zero(store):
    writer = HistoryWriter(store, PRICES)
    writer.add_event(LlmRequest(ts=1.8e9, model="no-such-model", input_tokens=5, output_tokens=5, team="a"))
    writer.flush()
    [row] = store.rollups(0, 4e9)
    assert (row.requests, row.unpriced, row.cost_usd, row.tier) == (1, 1, 0.0, "")


def test_idle_gpu_dollars_are_the_unused_share_of_samples_below_the_threshold(store):
    writer = HistoryWriter(store, PRICES, idle_below=0.1)
    hourly = PRICES.gpu_hourly("H100-SXM-80GB")
    t0 = 1_800_000_000.0 - 1_800_000_000.0 % 3600
    for minute in range(61):  # an hour at 3 %, then an hour at 60 %
        writer.add_event(GpuSample(ts=t0 + minute * 60, node="n", gpu="0", utilization=0.03, gpu_model="H100-SXM-80GB",
                                   team="platform"))
    for minute in range(1, 61):
        writer.add_event(GpuSample(ts=t0 + 3600 + minute * 60, node="n", gpu="0", utilization=0.6,
                                   gpu_model="H100-SXM-80GB", team="platform"))
    writer.add_event(UsageSample(ts=t0, metric="vector_db_usd", value=3.5, unit="usd", team="search"))
    writer.add_event(UsageSample(ts=t0, metric="train_gpu", value=2.0, unit="gpu_hours", team="research"))
    writer.flush()
    gpu = {r.hour_start - t0: r for r in store.rollups(0, 4e9) if r.kind == "gpu"}
    usage = {r.model: r for r in store.rollups(0, 4e9) if r.kind == "usage"}
    # the first sample starts the clock; the one on the hour bills the minute before it, in the new hour
    assert gpu[0].gpu_hours == pytest.approx(59 / 60)
    assert gpu[0].idle_gpu_usd == pytest.approx(hourly * 0.97 * 59 / 60)
    assert gpu[0].gpu_busy_hours / gpu[0].gpu_hours == pytest.approx(0.03)
    assert gpu[3600].idle_gpu_usd == pytest.approx(hourly * 0.97 / 60)
    assert gpu[3600].cost_usd == pytest.approx(hourly)
    assert (usage["vector_db_usd"].cost_usd, usage["train_gpu"].cost_usd, usage["train_gpu"].quantity) == (3.5, 0, 2.0)


def test_an_anomaly_keeps_its_lifecycle_and_a_late_firing_copy_does_not_reopen_it(store):
    store.upsert_anomaly(_anomaly())
    [firing] = store.anomalies(0, 4e9)
    assert (firing.record.status, firing.team, firing.resolved_ts) == ("firing", "support", None)
    store.upsert_anomaly(_anomaly("resolved", "2026-11-17T20:00:00Z", summary="back to normal"))
    store.upsert_anomaly(_anomaly())  # redelivered out of order
    [resolved] = store.anomalies(0, 4e9)
    assert resolved.record.status == "resolved"
    assert resolved.record.summary == "back to normal"
    assert resolved.resolved_ts - resolved.detected_ts == pytest.approx(5 * 3600 + 40 * 60)
    assert resolved.record.labels == {"team": "support", "feature": "chat", "model": "claude-haiku-4-5"}


def test_pruning_deletes_only_what_is_older_than_the_retention(store):
    day = 86400
    writer = HistoryWriter(store, PRICES)
    for age_days in (500, 10):
        ts = 1_800_000_000.0 - age_days * day
        writer.add_event(LlmRequest(ts=ts, model="gpt-4o", input_tokens=1, output_tokens=1, request_id=f"r{age_days}"))
    writer.flush()
    store.upsert_anomaly(_anomaly(id="old", detected_at="2020-01-01T00:00:00Z", started_at="2020-01-01T00:00:00Z"))
    store.upsert_anomaly(_anomaly(id="new"))
    deleted = store.prune(1_800_000_000.0, retention_days=400, dedupe_window_s=day)
    assert deleted == {"rollups": 1, "anomalies": 1, "request_ids": 1}  # the older id went at flush
    assert [a.record.id for a in store.anomalies(0, 4e9)] == ["new"]
    assert len(store.rollups(0, 4e9)) == 1


def test_the_history_commands_migrate_and_prune(tmp_path):
    from click.testing import CliRunner

    from detector.history.cli import history

    db = f"sqlite:///{tmp_path / 'h.db'}"
    first = CliRunner().invoke(history, ["migrate", "--db", db])
    again = CliRunner().invoke(history, ["migrate", "--db", db])
    assert first.exit_code == again.exit_code == 0, first.output
    assert f"version {LATEST} of {LATEST}: applied 1" in first.output and "already up to date" in again.output
    pruned = CliRunner().invoke(history, ["prune", "--db", db, "--retention-days", "30"])
    assert pruned.exit_code == 0 and "0 rollups, 0 anomalies, 0 request_ids deleted" in pruned.output


@pytest.mark.parametrize("package", ["detector.history", "detector.digest", "detector.export"])
def test_the_public_api_is_a_sorted_all_of_names_that_exist(package):
    import importlib

    module = importlib.import_module(package)
    assert list(module.__all__) == sorted(module.__all__)
    assert [name for name in module.__all__ if not hasattr(module, name)] == []


def test_request_ids_older_than_the_dedupe_window_are_not_kept(store):
    writer = HistoryWriter(store, PRICES, window_s=3600)
    for i in range(10):  # one request every 20 minutes
        writer.add_event(LlmRequest(ts=1.8e9 + i * 1200, model="gpt-4o", input_tokens=1, output_tokens=1,
                                    request_id=f"r{i}"))
    writer.flush()
    assert sorted(key for key, _ in store.seen_since(0)) == ["r6", "r7", "r8", "r9"]
    assert sum(r.requests for r in store.rollups(0, 4e9)) == 10


def test_without_durable_ids_duplicates_are_still_dropped_within_the_run(tmp_path):
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'h.db'}")
    writer = HistoryWriter(store, PRICES, durable_ids=False)
    ev = LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=1, output_tokens=1, request_id="r")
    assert [writer.add_event(ev), writer.add_event(ev)] == [True, False]
    writer.flush()
    assert store.seen_since(0) == [] and sum(r.requests for r in store.rollups(0, 4e9)) == 1
    store.close()
