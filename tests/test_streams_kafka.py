"""The stream worker against a real Kafka-protocol broker (Tansu), as separate processes.

Each test starts its own broker and its own workers (``spendwatch worker``),
produces with ``spendwatch produce`` or a plain client, and reads the output
topics as any consumer would. Workarounds for the test broker's quirks are in
``tests/stream_worker.py`` (TEST_BROKER_ENV) and nowhere else.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import math
import signal
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker import ONE_RECORD_PER_BATCH, Broker, free_port, running_broker
from click.testing import CliRunner
from stream_worker import POISON_FEATURE, WorkerProcess, start_worker, wait_for

from detector.config import Settings
from detector.detection_run import engine_for
from detector.engine import Engine
from detector.engine_state import group_key
from detector.events import Decoder, LlmRequest
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.simulate import DEFAULT_START, parse_incident, simulate
from detector.simulate.world import World
from streams.cli import produce
from streams.codecs import partition_of
from streams.producer import Batcher, ensure_topic, produce_lines
from streams.tables import SERIES_TABLE

START = DEFAULT_START.replace(tzinfo=UTC)
CHANGELOG = f"spendwatch-{SERIES_TABLE}-changelog"


def sim_lines(*teams: str, incident: str | None = "prompt_doubling@1d10h:team=growth") -> list[bytes]:
    default = World.default()
    world = World(tuple(f for team in teams for f in default.only(team=team).features))
    incidents = [parse_incident(incident, START)] if incident else []
    return list(simulate(days=2, seed=11, start=START, world=world, incidents=incidents).lines())


def replay(lines: list[bytes]) -> tuple[list[dict[str, Any]], Engine]:
    engine = engine_for(Settings(), PriceTable.packaged())  # what `spendwatch replay` runs
    records: list[dict[str, Any]] = []
    replay_lines(lines, engine, Decoder(), on_anomaly=lambda a: records.append(a.to_dict()))
    return records, engine


def llm_keys(lines: list[bytes], team: str | None = None) -> set[str]:
    """The partition keys of the requests in ``lines`` (one per feature), of one team or all."""
    events, _ = Decoder().decode_lines(lines)
    return {group_key(ev) for ev in events if type(ev) is LlmRequest and team in (None, ev.team)}


def records_by_identity(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """What a deduplicating sink keeps: one record per (id, status)."""
    return {(r["id"], r["status"]): r for r in records}


def record_differences(got: dict[Any, dict[str, Any]], want: dict[Any, dict[str, Any]]) -> list[str]:
    """Each (id, status) and field on which the records differ, for a readable failure."""
    out = [f"{key}: missing" for key in want.keys() - got.keys()] + [f"{key}: extra" for key in got.keys() - want.keys()]
    for key in want.keys() & got.keys():
        out += [f"{key} {field}: {got[key].get(field)!r} != {value!r}"
                for field, value in want[key].items() if got[key].get(field) != value]
    return sorted(out)


def assert_same_records(got: dict[Any, dict[str, Any]], want: dict[Any, dict[str, Any]]) -> None:
    differences = record_differences(got, want)
    assert not differences, "records differ from replay's:\n" + "\n".join(differences)


def anomalies_on(b: Broker) -> list[dict[str, Any]]:
    return [orjson.loads(value) for _, value in b.read("spendwatch.anomalies")]


def handled(worker: WorkerProcess) -> float:
    """Events this worker process has accounted for: processed, dead-lettered, dropped as duplicates."""
    return (worker.metric("spendwatch_events_processed_total")
            + worker.metric("spendwatch_events_deadlettered_total")
            + worker.metric("spendwatch_events_duplicate_total"))


def send_lines(b: Broker, lines: list[bytes], batch: int = 200, rate: float | None = None) -> None:
    """Returns once every line is on the broker; ``rate`` caps events per second."""
    asyncio.run(produce_lines(lines, b.settings(), batch=batch, rate=rate))


def ensure_usage_topic(b: Broker) -> None:
    """The usage topic with the workers' partition count, as ``spendwatch produce`` makes it."""
    settings = b.settings()
    asyncio.run(ensure_topic(settings, settings.usage_topic))


def saved_states(b: Broker) -> dict[str, Any]:
    """The last value of every key on the state table's changelog: what a recovering worker restores."""
    return {orjson.loads(key): orjson.loads(value) for key, value in b.read(CHANGELOG)}


def print_changelog_history(b: Broker) -> None:
    """Each key's saved positions on the changelog, oldest first: shown by pytest only if the test fails,
    beside the workers' logs of the state each restored."""
    history: dict[str, list[Any]] = {}
    for key, value in b.read(CHANGELOG):
        history.setdefault(orjson.loads(key), []).append(orjson.loads(value)["applied"])
    for key, applied in sorted(history.items()):
        print(f"changelog {key}: {applied}")


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path) as running:
        yield running


@pytest.fixture
def workers(broker: Broker, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(**kwargs: Any) -> WorkerProcess:
        w = start_worker(broker.url, tmp_path, free_port(), **kwargs)
        started.append(w)
        w.wait_ready()
        return w

    yield start
    for w in started:
        w.kill()
        w.show_log()


def test_the_worker_sends_exactly_the_anomalies_replay_finds(broker: Broker, workers: Any, tmp_path: Path) -> None:
    lines = sim_lines("growth", "research")
    expected, _ = replay(lines)
    assert {r["status"] for r in expected} == {"firing", "resolved"}
    events_file = tmp_path / "events.jsonl"
    events_file.write_bytes(b"".join(lines))
    worker = workers()
    cap = {"SPENDWATCH_PRODUCER_MAX_BATCH_BYTES": str(ONE_RECORD_PER_BATCH)}  # what the test broker needs
    result = CliRunner().invoke(produce, [str(events_file), "--broker", broker.url, "--batch", "300"], env=cap)
    assert result.exit_code == 0, result.output
    assert f"{len(lines):,} events" in result.output
    wait_for("every event to be processed", lambda: handled(worker), lambda n: n >= len(lines))

    got = wait_for("the anomaly records", lambda: anomalies_on(broker), lambda a: len(a) >= len(expected))
    key = lambda r: (r["id"], r["status"])
    assert sorted(got, key=key) == sorted(expected, key=key)
    order = [(r["id"], r["status"]) for r in got]  # one id, one partition: it fires before it resolves
    assert all(order.index((i, "firing")) < order.index((i, "resolved")) for i, s in order if s == "resolved")
    assert worker.metric("spendwatch_events_processed_total") == len(lines)
    assert worker.metric("spendwatch_events_forwarded_total") == 0  # produce put each key where its state is
    firing = sum(r["status"] == "firing" for r in expected)
    assert worker.metric("spendwatch_anomalies_total", status="firing") == firing
    assert worker.metric("spendwatch_series_tracked") > 0
    assert worker.metric("spendwatch_batch_processing_seconds_count") > 0
    lag = wait_for("consumer lag to be reported", lambda: worker.metric("spendwatch_consumer_lag"), lambda n: n == 0)
    assert lag == 0 and 'spendwatch_consumer_lag{partition=' in worker.get("/metrics").decode()
    health = worker.health()
    assert health["status"] == "ok" and set(health["keys"]) == llm_keys(lines) and health["rebalancing"] is False
    assert health["table_values_held"] == 0  # memory://: each state went to the changelog, the models hold it
    assert worker.metric("spendwatch_table_values_held") == 0 and "spendwatch_table_values_held" in \
        worker.get("/metrics").decode()
    assert health["models"] == "source"  # the checkout's models, as Python (a compiled install says "compiled")


def test_messages_off_their_keys_partition_go_through_the_repartition_topic_with_the_same_answers(
        broker: Broker, workers: Any) -> None:
    lines = sim_lines("growth", "research")
    expected, oracle = replay(lines)
    partitions = broker.settings().partitions
    batcher = Batcher(partitions=partitions)
    placed, elsewhere = [], 0
    for start in range(0, len(lines), 300):
        for m in batcher.messages(lines[start:start + 300]):
            assert m.partition is not None
            moved = b"research" in (m.key or b"")  # a producer keyed by something else, for one team
            placed.append(((m.partition + 1) % partitions if moved else m.partition, m.key, m.value))
            elsewhere += m.events if moved else 0
    assert 0 < elsewhere < len(lines)
    worker = workers()
    ensure_usage_topic(broker)
    broker.produce_placed("spendwatch.usage", placed)
    wait_for("every event to be processed", lambda: handled(worker), lambda n: n >= len(lines))

    want = records_by_identity(expected)
    got = wait_for("every anomaly", lambda: records_by_identity(anomalies_on(broker)),
                   lambda g: g.keys() >= want.keys())
    assert_same_records(got, want)
    assert worker.metric("spendwatch_events_processed_total") == len(lines)
    assert worker.metric("spendwatch_events_forwarded_total") == elsewhere  # and the others were judged where read
    assert_saved_states_are_replays(broker, oracle, llm_keys(lines))


def test_produce_puts_each_key_on_the_partition_its_state_lives_on(broker: Broker) -> None:
    lines = sim_lines("growth", "research", incident=None)[:3000]
    send_lines(broker, lines)
    placed = [(partition, orjson.loads(key)) for partition, key, _ in broker.read_placed("spendwatch.usage")]
    partitions = broker.settings().partitions
    assert placed and all(key is not None for _, key in placed)
    assert {key for _, key in placed} == llm_keys(lines)
    wrong = [(partition, key) for partition, key in placed if partition != partition_of(key, partitions)]
    assert wrong == []  # the worker that reads a key's events is the one that holds its state
    assert len({partition for partition, _ in placed}) > 1


def test_nothing_is_lost_bad_input_and_failing_events_go_to_the_dead_letter_topic(
    broker: Broker, workers: Any
) -> None:
    lines = sim_lines("growth", incident=None)
    good, spare = lines[:1500], [line.rstrip(b"\n") for line in lines[1500:1503]]
    ev = orjson.loads(good[0])
    poison = orjson.dumps({**ev, "feature": POISON_FEATURE, "request_id": "poison-1"})
    dup = orjson.dumps({**ev, "request_id": "dup-1"})
    bad_field = orjson.dumps({**ev, "input_tokens": -5, "request_id": "neg-1"})
    extra: list[bytes] = [
        b'{"ts": 1.8e9, "model"',  # malformed JSON
        b"\xff\xfe{",  # not even UTF-8
        bad_field,
        b"[" + b",".join([spare[0], bad_field, poison, dup, dup]) + b"]",  # one bad element, a poison, a duplicate
        b"\n".join([spare[1], b"{oops", spare[2]]),  # JSON lines with a malformed line
        orjson.dumps({**ev, "feature": POISON_FEATURE, "request_id": "poison-2"}),
    ]
    items = len(good) + 1 + 1 + 1 + 5 + 3 + 1  # every event or would-be event produced
    worker = workers(poison=True)
    send_lines(broker, good)
    broker.produce("spendwatch.usage", [(None, payload) for payload in extra])

    oracle = Decoder()  # what the worker must make of the same input
    outcomes = [oracle.decode_payload(p) for p in [b"".join(good)] + extra]
    rejects = Counter(r.code for _, rs in outcomes for r in rs)
    poisoned = sum(getattr(e, "feature", None) == POISON_FEATURE for es, _ in outcomes for e in es)
    valid = sum(len(es) for es, _ in outcomes)
    assert poisoned == 2 and oracle.duplicates == 1 and valid + sum(rejects.values()) + 1 == items

    wait_for("every event to be accounted for", lambda: handled(worker), lambda n: n >= items)
    processed = worker.metric("spendwatch_events_processed_total")
    dead = worker.metric("spendwatch_events_deadlettered_total")
    duplicates = worker.metric("spendwatch_events_duplicate_total")
    assert processed + dead + duplicates == items
    assert (processed, duplicates) == (valid - poisoned, 1)
    for code, n in rejects.items():
        assert worker.metric("spendwatch_events_deadlettered_total", code=code) == n
    assert worker.metric("spendwatch_events_deadlettered_total", code="processing_error") == poisoned

    letters = [orjson.loads(v) for _, v in broker.read("spendwatch.deadletter")]
    assert len(letters) == dead
    assert all(x["topic"] == "spendwatch.usage" and x["offset"] >= 0 and x["reason"] for x in letters)
    assert base64.b64decode(next(x["raw_base64"] for x in letters if "raw_base64" in x)) == b"\xff\xfe{"
    assert any(x["raw"] == '{"ts": 1.8e9, "model"' and x["code"] == "malformed_json" for x in letters if "raw" in x)
    failed = [x for x in letters if x["code"] == "processing_error"]
    assert len(failed) == 2 and all(x["reason"] == "RuntimeError: poisoned event" for x in failed)
    assert {orjson.loads(x["raw"])["request_id"] for x in failed} == {"poison-1", "poison-2"}
    assert worker.process.poll() is None  # and the worker goes on


def state_difference(a: Any, b: Any, path: str = "") -> str | None:
    """Where two saved states differ (None when they match), the first few places: floats within 1e-9 relative.

    Saving a group closes its open minute (``export_group``), so a worker that
    saves after every batch adds dollars in another order than one replay
    that saves once: sums differ in the last bits. Counts must be exact.
    """
    found = list(itertools.islice(_differences(a, b, path), 6))
    return "; ".join(found) or None


def _differences(a: Any, b: Any, path: str) -> Iterator[str]:
    if isinstance(a, float) or isinstance(b, float):
        if not (isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=1e-9)):
            yield f"{path}: {a!r} != {b!r}"
    elif isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            yield f"{path}: keys {sorted(a)} != {sorted(b)}"
            return
        for k in a:
            yield from _differences(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            yield f"{path}: {len(a)} items != {len(b)}"
            return
        for n, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{path}[{n}]")
    elif a != b:
        yield f"{path}: {a!r} != {b!r}"


def split_at(lines: list[bytes], at: datetime) -> tuple[list[bytes], list[bytes]]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S")
    first = [line for line in lines if orjson.loads(line)["ts"] < stamp]
    return first, lines[len(first):]


def test_kill_9_and_restart_resume_with_state_and_lose_nothing(broker: Broker, workers: Any) -> None:
    lines = sim_lines("growth")
    expected, oracle = replay(lines)
    before, after = split_at(lines, START + timedelta(days=1, hours=6))  # the incident starts at 1d10h

    worker = workers()
    send_lines(broker, before)
    wait_for("the first part to be processed", lambda: handled(worker), lambda n: n >= len(before))
    target = min(llm_keys(before, "growth"))
    wait_for("the state to reach the changelog", lambda: saved_states(broker).get(target),
             lambda v: v is not None and v["applied"])
    worker.kill(signal.SIGKILL)  # state written just before this must be there after the restart

    worker = workers()
    processed = lambda: worker.metric("spendwatch_events_processed_total")
    send_lines(broker, after[:500])
    wait_for("the restarted worker to process", processed, lambda n: n > 0)
    producing = threading.Thread(target=send_lines, args=(broker, after[500:]), kwargs={"rate": 2000})
    producing.start()
    at_kill = wait_for("the worker to be mid-stream", processed, lambda n: n > 500)
    worker.kill(signal.SIGKILL)  # in the middle of the second part, while it is being produced
    assert at_kill < len(after)
    producing.join()

    worker = workers()
    want = records_by_identity(expected)
    got = wait_for("every anomaly", lambda: records_by_identity(anomalies_on(broker)),
                   lambda g: g.keys() >= want.keys())
    print_changelog_history(broker)
    assert_same_records(got, want)  # same ids, labels and detection times: baselines not relearned
    assert_saved_states_are_replays(broker, oracle, llm_keys(lines))  # every event applied once, none lost


def assert_saved_states_are_replays(broker: Broker, oracle: Any, keys: set[str]) -> None:
    """Each key's last saved state on the changelog is the state replay ends with, number for number."""
    final = {key: orjson.loads(orjson.dumps(oracle.export_group(key))) for key in keys}

    def differences() -> list[str]:
        saved = saved_states(broker)
        return [f"{key}: {d}" for key in sorted(keys)
                if (d := state_difference(saved[key]["state"], final[key]) if key in saved else "missing")]

    difference = wait_for("the final state", differences, lambda d: not d)
    assert difference == []


def test_two_workers_split_the_keys_and_one_takes_over_when_the_other_stops(broker: Broker, workers: Any) -> None:
    lines = sim_lines("growth", "research")
    expected, oracle = replay(lines)
    before, after = split_at(lines, START + timedelta(days=1, hours=6))
    first, second = workers(), workers()
    send_lines(broker, before)
    wait_for("both workers to account for the first part", lambda: handled(first) + handled(second),
             lambda n: n >= len(before))
    held = [set(first.health()["keys"]), set(second.health()["keys"])]
    keys = llm_keys(lines)
    assert not held[0] & held[1] and held[0] | held[1] == keys
    assigned = [{p for p in w.health()["assigned"] if "by-key" in p} for w in (first, second)]
    assert not assigned[0] & assigned[1]
    # Each judged what it read: every key was on its own partition, the group's leader or not.
    assert [w.metric("spendwatch_events_forwarded_total") for w in (first, second)] == [0, 0]
    # Each wrote its groups' state to the changelog only, and holds no copy of it or of the other's:
    assert [w.health()["table_values_held"] for w in (first, second)] == [0, 0]

    owner, other = (first, second) if llm_keys(lines, "growth") & held[0] else (second, first)
    kept = held[1] if owner is first else held[0]
    restored = other.metric("spendwatch_groups_restored_total")
    owner.kill(signal.SIGTERM)
    wait_for("the other worker to take all partitions", lambda: other.health()["assigned"],
             lambda a: len([p for p in a if "by-key" in p]) == 4)
    send_lines(broker, after)
    want = records_by_identity(expected)
    got = wait_for("every anomaly", lambda: records_by_identity(anomalies_on(broker)),
                   lambda g: g.keys() >= want.keys())
    assert_same_records(got, want)
    assert llm_keys(after) <= set(other.health()["keys"])  # a key is restored when its next event comes
    # Both the partitions it took over and those it kept through the rebalance carried their state on:
    assert_saved_states_are_replays(broker, oracle, llm_keys(lines))
    # and only those it took over were read back from the table; the kept ones went on with their live state.
    assert kept & llm_keys(after)
    moved_in = llm_keys(after) - kept
    assert other.metric("spendwatch_groups_restored_total") - restored == len(moved_in)


def test_a_worker_on_rocksdb_restarts_from_its_own_disk_and_gives_replays_answers(
        broker: Broker, workers: Any, tmp_path: Path) -> None:
    lines = sim_lines("growth")
    expected, _ = replay(lines)
    before, after = split_at(lines, START + timedelta(days=1, hours=6))  # the incident starts at 1d10h
    disk = tmp_path / "rocksdb-data"
    worker = workers(store="rocksdb://", data_dir=str(disk))
    send_lines(broker, before)
    wait_for("the first part to be processed", lambda: handled(worker), lambda n: n >= len(before))
    target = min(llm_keys(before, "growth"))
    wait_for("the state to reach the table", lambda: saved_states(broker).get(target),
             lambda v: v is not None and v["applied"])
    assert worker.health()["table_values_held"] is None  # RocksDB keeps every value: a restart reads them
    worker.kill(signal.SIGTERM)
    assert worker.process.returncode is not None
    assert any(disk.rglob("CURRENT")), f"no RocksDB database under {disk}: {sorted(disk.rglob('*'))[:10]}"

    worker = workers(store="rocksdb://", data_dir=str(disk))
    send_lines(broker, after)
    want = records_by_identity(expected)
    got = wait_for("every anomaly", lambda: records_by_identity(anomalies_on(broker)),
                   lambda g: g.keys() >= want.keys())
    assert_same_records(got, want)  # the restarted worker judged the incident with its baselines


def test_a_running_worker_takes_changed_rule_files_and_answers_as_replay_with_them(
        broker: Broker, workers: Any, tmp_path: Path) -> None:
    from test_worker_rules import BASE, OFF, touch

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    touch(rules_dir / "base.yaml", BASE, 0)
    lines = sim_lines("growth")
    before, after = split_at(lines, START + timedelta(days=1, hours=6))  # the incident starts at 1d10h
    as_shipped, _ = replay(lines)
    worker = workers(rules_dir=str(rules_dir))
    send_lines(broker, before)
    wait_for("the first part to be processed", lambda: handled(worker), lambda n: n >= len(before))

    touch(rules_dir / "growth.yaml", OFF, 1)  # the prompt-length rule off for the growth team
    wait_for("the worker to take the new file", lambda: worker.health()["rules"]["files"],
             lambda files: any(f["path"].endswith("growth.yaml") for f in files))
    send_lines(broker, after)

    with_file = tmp_path / "with-file"
    with_file.mkdir()
    touch(with_file / "base.yaml", BASE, 0)
    touch(with_file / "growth.yaml", OFF, 1)
    engine = engine_for(Settings(rules_dir=with_file), PriceTable.packaged())
    expected: list[dict[str, Any]] = []
    replay_lines(lines, engine, Decoder(), on_anomaly=lambda a: expected.append(a.to_dict()))
    assert records_by_identity(expected) != records_by_identity(as_shipped)  # the file changes the answers
    want = records_by_identity(expected)
    got = wait_for("every anomaly", lambda: records_by_identity(anomalies_on(broker)),
                   lambda g: g.keys() >= want.keys())
    assert_same_records(got, want)
