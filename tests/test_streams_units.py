"""The stream worker's parts that need no broker: codecs, the group runner, settings, commands."""

from __future__ import annotations

import asyncio
import base64
import gc
import importlib.util
import weakref
from datetime import UTC
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from click.testing import CliRunner
from stream_worker import RaisingPrices

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.engine_state import group_key
from detector.events import Decoder, Event, GpuSample, LlmRequest, UsageSample
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.simulate import DEFAULT_START, parse_incident, simulate
from detector.simulate.world import World
from streams.app import StreamConfigError, build_app
from streams.cli import produce, worker
from streams.codecs import (
    CodecError,
    Origin,
    Segment,
    dead_letter,
    decode_keyed,
    pack_keyed,
    partition_of,
)
from streams.groups import GroupRunner
from streams.producer import Batcher, bootstrap_servers
from streams.settings import StreamSettings
from streams.sink import build_sink_app
from streams.sink_settings import SinkSettings
from streams.tables import KeyedTable, decode_state, encode_state

START = DEFAULT_START.replace(tzinfo=UTC)


@pytest.fixture(scope="module")
def incident_lines() -> list[bytes]:
    """Two days of one team's traffic with a prompt doubling on the second day."""
    sim = simulate(days=2, seed=3, start=START, world=World.default().only(team="growth"),
                   incidents=[parse_incident("prompt_doubling@1d10h:team=growth", START)])
    return list(sim.lines())


def replayed(lines: list[bytes]) -> tuple[list[dict[str, Any]], Engine]:
    engine = Engine(PriceTable.packaged())
    records: list[dict[str, Any]] = []
    replay_lines(lines, engine, Decoder(), on_anomaly=lambda a: records.append(a.to_dict()))
    return records, engine


def keyed(events: list[Event], first_offset: int = 0, per_message: int = 100) -> list[tuple[str, int, list[Segment]]]:
    """Events as the repartition topic would carry them: each source message split into one segment per key."""
    batch = []
    for i in range(0, len(events), per_message):
        by_key: dict[str, list[Event]] = {}
        for ev in events[i:i + per_message]:
            by_key.setdefault(group_key(ev), []).append(ev)
        batch += [(key, 0, [Segment(0, first_offset + i // per_message, part)]) for key, part in by_key.items()]
    return batch


def in_order(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records by detection time: a worker runs a message's keys one after another, so its order within
    a message is the keys', not the events'."""
    return sorted(records, key=lambda r: (r["detected_at"], r["id"], r["status"]))


def decoded(lines: list[bytes]) -> list[Event]:
    events, rejects = Decoder().decode_lines(lines)
    assert not rejects
    return events


# -- codecs ---------------------------------------------------------------------------

def test_keyed_batches_round_trip_every_event_type_exactly() -> None:
    events: list[Event] = [
        LlmRequest(ts=1.8e9 + 0.123, model="gpt-4o", input_tokens=7, output_tokens=2, cached_input_tokens=3,
                   team="a", tags={"k": "v"}, cost_usd=0.1 + 0.2, latency_ms=12.5, status="error", attempt=2),
        GpuSample(ts=1.8e9, node="n1", gpu="3", utilization=0.37, cluster="c", hourly_cost_usd=2.5),
        UsageSample(ts=1.8e9, metric="vector_db_usd", value=3.2, unit="usd", category="embedding", team="a"),
    ]
    messages = pack_keyed([("k", [Segment(2, 40, events), Segment(2, 41, events[:1])])], max_events=2)
    back = [s for m in messages for key, segments in decode_keyed(m) for s in segments]
    assert [(s.src_offset, s.part) for s in back] == [(40, 0), (40, 1), (41, 0)]
    assert [ev for s in back for ev in s.events] == events + events[:1]


def test_keys_of_one_partition_share_messages_and_each_key_always_maps_to_one_partition() -> None:
    ev = LlmRequest(ts=1.8e9, model="m", input_tokens=3, output_tokens=1)
    keyed = [(f"llm:t/f{i}", [Segment(0, 9, [ev] * (i + 1))]) for i in range(30)]
    messages = pack_keyed(keyed, max_events=100)
    sizes = [sum(len(s.events) for _, segments in decode_keyed(m) for s in segments) for m in messages]
    assert len(messages) == 6 and max(sizes) <= 100  # 465 events in 30 keys: a key's segment is never cut to fill
    back = [(key, len(s.events)) for m in messages for key, segments in decode_keyed(m) for s in segments]
    assert sum(n for _, n in back) == 465 and sorted({k for k, _ in back}) == sorted(k for k, _ in keyed)
    spread = {partition_of(key, 4) for key, _ in keyed}
    assert spread == {0, 1, 2, 3} and all(partition_of(k, 4) == partition_of(k, 4) for k, _ in keyed)


def test_a_segment_gets_the_same_parts_whatever_shares_its_message() -> None:
    """A usage message decoded again after a restart may meet other keys in its batch; its positions must not move."""
    ev = LlmRequest(ts=1.8e9, model="m", input_tokens=3, output_tokens=1)
    mine = ("k", [Segment(0, 9, [ev] * 250)])

    def parts(by_key: list[tuple[str, list[Segment]]]) -> list[tuple[int, int, int]]:
        return [(s.src_offset, s.part, len(s.events)) for m in pack_keyed(by_key, max_events=100)
                for key, segments in decode_keyed(m) if key == "k" for s in segments]

    alone = parts([mine])
    assert alone == [(9, 0, 100), (9, 1, 100), (9, 2, 50)]
    assert parts([("j", [Segment(0, 9, [ev] * 30)]), mine]) == alone


def test_a_foreign_repartition_payload_says_what_it_found() -> None:
    with pytest.raises(CodecError, match=r"expected \[\[key, \[\[partition, offset, part.*found b'\{\"x\": 1\}'"):
        decode_keyed(b'{"x": 1}')


def test_dead_letters_keep_text_as_text_and_other_bytes_as_base64() -> None:
    origin = Origin("spendwatch.usage", 3, 99)
    text = orjson.loads(dead_letter(origin, "malformed_json", "not JSON", b"{oops"))
    binary = orjson.loads(dead_letter(origin, "malformed_json", "not JSON", b"\x00\xff\xfe"))
    assert text["raw"] == "{oops" and (text["topic"], text["partition"], text["offset"]) == ("spendwatch.usage", 3, 99)
    assert base64.b64decode(binary["raw_base64"]) == b"\x00\xff\xfe" and "raw" not in binary


# -- the group runner ------------------------------------------------------------------------

def test_state_saved_in_the_table_carries_detection_across_workers(incident_lines: list[bytes]) -> None:
    """Half the stream on one worker, the rest on a new one restored from the table: replay's answers."""
    expected, _ = replayed(incident_lines)
    assert any(r["status"] == "firing" for r in expected)
    events = decoded(incident_lines)
    half = len(events) // 2
    table: dict[str, Any] = {}
    got: list[Anomaly] = []
    for events_part, first in ((events[:half], 0), (events[half:], 10_000)):
        runner = GroupRunner(Engine(PriceTable.packaged()), table)  # a fresh worker each time
        out = runner.run(keyed(events_part, first))
        table.update(out.writes)
        got += out.anomalies
        assert out.processed == len(events_part) and not out.failures
    assert in_order([a.to_dict() for a in got]) == in_order(expected)


def test_redelivered_segments_are_skipped_not_counted_twice(incident_lines: list[bytes]) -> None:
    events = decoded(incident_lines[:3000])
    table: dict[str, Any] = {}
    runner = GroupRunner(Engine(PriceTable.packaged()), table)
    table.update(runner.run(keyed(events)).writes)
    key = group_key(events[0])
    saved = orjson.dumps(table[key])
    again = GroupRunner(Engine(PriceTable.packaged()), table).run(keyed(events))  # a restart redelivers all
    assert (again.processed, again.skipped) == (0, len(events))
    assert orjson.dumps(again.writes.get(key, table[key])) == saved


def test_segments_judged_where_read_and_those_sent_on_keep_apart_positions_of_one_source_partition() -> None:
    """A segment sent on by an older worker can still wait in the repartition topic when later offsets of its
    source partition are judged directly: it is applied, not skipped; a redelivery of either way is skipped."""
    ev = [LlmRequest(ts=1.8e9 + i, model="gpt-4o", input_tokens=100, output_tokens=5, team="t") for i in range(3)]
    runner = GroupRunner(Engine(PriceTable.packaged()), {})
    direct = runner.run([("llm:t/", 0, [Segment(0, 9, ev[1:], direct=True)])])
    late = runner.run([("llm:t/", 0, [Segment(0, 8, ev[:1])])])
    again = runner.run([("llm:t/", 0, [Segment(0, 9, ev[1:], direct=True), Segment(0, 8, ev[:1])])])
    assert (direct.processed, late.processed, again.processed, again.skipped) == (2, 1, 0, 3)
    assert orjson.loads(encode_state(late.writes["llm:t/"]))["applied"] == {"d0": [9, 0], "0": [8, 0]}


def test_an_event_that_raises_is_reported_and_the_rest_are_processed() -> None:
    good = [LlmRequest(ts=1.8e9 + i, model="gpt-4o", input_tokens=100, output_tokens=5, team="t") for i in range(5)]
    bad = LlmRequest(ts=1.8e9 + 2.5, model="gpt-4o", input_tokens=100, output_tokens=5, team="t", feature="bad")
    segment = Segment(0, 7, good[:3] + [bad] + good[3:])
    prices = RaisingPrices(PriceTable.packaged(), "bad", ZeroDivisionError, "division by zero")
    out = GroupRunner(Engine(prices), {}).run([("llm:t", 1, [segment])])  # type: ignore[arg-type]
    assert out.processed == 5 and len(out.failures) == 1
    failure = out.failures[0]
    assert (failure.event, failure.src_offset, failure.error) == (bad, 7, "ZeroDivisionError: division by zero")


def test_a_failing_event_among_a_keys_several_segments_is_reported_with_its_own_message() -> None:
    """A key's segments of one batch are detected in one call; a failure still names the message it came in."""
    good = [LlmRequest(ts=1.8e9 + i, model="gpt-4o", input_tokens=100, output_tokens=5, team="t") for i in range(4)]
    bad = LlmRequest(ts=1.8e9 + 2.5, model="gpt-4o", input_tokens=100, output_tokens=5, team="t", feature="bad")
    segments = [Segment(0, 7, good[:2]), Segment(0, 8, [bad]), Segment(0, 9, good[2:])]
    prices = RaisingPrices(PriceTable.packaged(), "bad", ZeroDivisionError, "division by zero")
    out = GroupRunner(Engine(prices), {}).run([("llm:t", 1, segments)])  # type: ignore[arg-type]
    assert out.processed == 4 and [(f.src_offset, f.event) for f in out.failures] == [(8, bad)]
    assert out.writes["llm:t"]["applied"] == {"0": [9, 0]}


def test_revoked_partitions_forget_their_groups_and_a_bad_saved_value_dead_letters_its_events() -> None:
    ev_a = LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=10, output_tokens=1, team="a")
    ev_b = LlmRequest(ts=1.8e9, model="gpt-4o", input_tokens=10, output_tokens=1, team="b")
    engine = Engine(PriceTable.packaged())
    runner = GroupRunner(engine, {"llm:c": {"v": 0, "state": {}}})
    runner.run([("llm:a", 0, [Segment(0, 1, [ev_a])]), ("llm:b", 3, [Segment(1, 1, [ev_b])])])
    assert runner.revoke({3}) == 1
    assert runner.keys() == ["llm:a"] and engine.has_group("llm:a") and not engine.has_group("llm:b")
    out = runner.run([("llm:c", 0, [Segment(0, 2, [ev_a, ev_a])]), ("llm:a", 0, [Segment(0, 3, [ev_a])])])
    assert out.processed == 1 and [f.code for f in out.failures] == ["state_restore_error"] * 2
    assert "key 'llm:c': expected version 1" in out.failures[0].error and "found 0" in out.failures[0].error


# -- settings, app, commands ------------------------------------------------------------------

def test_settings_refuse_sasl_without_credentials_and_rocksdb_without_its_package() -> None:
    with pytest.raises(ValueError, match="SASL_SSL needs sasl_username and sasl_password"):
        StreamSettings(security_protocol="SASL_SSL")
    with pytest.raises(ValueError, match="store"):
        StreamSettings(store="redis://x")
    if importlib.util.find_spec("rocksdict") is None:
        with pytest.raises(StreamConfigError, match="needs the rocksdict package"):
            build_app(StreamSettings(store="rocksdb://"))
    else:
        assert build_app(StreamSettings(store="rocksdb://")).app.conf.store.scheme == "rocksdb"


def test_fetches_are_as_large_as_the_setting_says_16_mib_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    assert build_app(StreamSettings()).app.conf.consumer_max_fetch_size == 16 * 2**20
    monkeypatch.setenv("SPENDWATCH_FETCH_BYTES", str(2**21))
    assert build_app(StreamSettings()).app.conf.consumer_max_fetch_size == 2**21
    with pytest.raises(ValueError, match="fetch_bytes"):
        StreamSettings(fetch_bytes=1000)  # smaller than the largest message a producer sends (1 MiB)


def test_the_worker_and_the_sink_let_the_broker_hold_a_fetch_100_ms_not_fausts_1500(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    def fetch_wait(app: Any) -> int:
        async def created() -> int:  # as faust creates it when the consumer starts, not started here
            consumer = app.consumer._thread._create_worker_consumer(app.transport)
            await consumer.stop()
            return consumer._fetch_max_wait_ms  # type: ignore[no-any-return]
        return asyncio.run(created())

    assert fetch_wait(build_app(StreamSettings()).app) == 100
    monkeypatch.setenv("SPENDWATCH_FETCH_WAIT_MS", "250")
    assert fetch_wait(build_app(StreamSettings()).app) == 250
    sink = build_sink_app(SinkSettings(db_url=f"sqlite:///{tmp_path}/h.db", slack_outbox=tmp_path / "o.db"))
    try:
        assert fetch_wait(sink.app) == 250
    finally:
        sink.close()


def test_the_app_declares_versioned_names_and_never_pickles() -> None:
    stream = build_app(StreamSettings(partitions=3, consumer_group="team-x"))
    names = {t.get_topic_name() for t in vars(stream.topics).values()}
    assert names == {"spendwatch.usage", "spendwatch.anomalies", "spendwatch.deadletter", "team-x-events-by-key-v2"}
    assert stream.table.changelog_topic.get_topic_name() == "team-x-spendwatch-series-v1-changelog"
    serializers = {stream.app.conf.value_serializer, stream.table.changelog_topic.value_serializer}
    assert "pickle" not in serializers


def test_table_values_are_held_as_the_json_bytes_faust_itself_would_write(incident_lines: list[bytes]) -> None:
    """Bytes, not dicts, in a memory:// store; and a changelog written when faust serialized them reads the same."""
    from faust.serializers import codecs

    _, engine = replayed(incident_lines[:3000])
    key = sorted(engine.take_touched())[0]
    value = {"v": 1, "state": engine.export_group(key), "applied": {"0": [41, 0]}}
    encoded = encode_state(value)
    assert encoded == codecs.dumps("json", value)  # the records of a changelog written before are these
    assert decode_state(codecs.dumps("json", value)) == decode_state(encoded) == orjson.loads(orjson.dumps(value))
    stream = build_app(StreamSettings())
    changelog = stream.table.changelog_topic
    assert (changelog.key_serializer, changelog.value_serializer) == ("json", "raw")  # faust passes our bytes on
    assert stream.runner.encode is encode_state  # each value is bytes from its export on, never a batch of dicts


def test_the_table_lets_go_of_a_batchs_messages_once_its_state_is_sent() -> None:
    """A message bound as its keys' carrier must not outlive the batch: an idle key would keep it for ever."""

    class Message:  # stands in for a faust event: only its lifetime matters here
        pass

    class Store(dict):  # stands in for the faust table (a unit test of KeyedTable alone)
        def send_changelog(self, *args: Any, **kwargs: Any) -> None:
            return None

    table, message = KeyedTable(Store()), Message()
    carried = weakref.ref(message)
    table.bind("llm:a/x", message)
    table["llm:a/x"] = encode_state({"v": 1, "state": {}, "applied": {}})
    assert table.get("llm:a/x") == {"v": 1, "state": {}, "applied": {}}
    del message
    assert carried() is not None  # still the batch's: its state may yet be read or written
    assert table.sent() == []  # a plain dict store: no changelog records to wait for
    gc.collect()
    assert carried() is None


def test_on_a_memory_store_a_written_value_goes_to_the_changelog_only_and_replaces_a_recovered_one() -> None:
    """The live models hold a key's state once it is written; the store keeps what recovery brought until then."""

    class Message:
        pass

    class Table:  # the faust table's surface KeyedTable uses (a unit test of KeyedTable alone)
        def __init__(self) -> None:
            self.data = {"llm:a/x": b"recovered", "llm:b/y": b"recovered"}
            self.changelog: list[tuple[str, bytes]] = []

        def on_key_set(self, key: str, value: bytes) -> None:
            self.changelog.append((key, value))

        def send_changelog(self, *args: Any, **kwargs: Any) -> None:
            return None

    table, message = Table(), Message()
    keyed = KeyedTable(table, keep_values=False)  # type: ignore[arg-type]
    keyed.bind("llm:a/x", message)
    keyed.bind("llm:c/z", message)
    value = encode_state({"v": 1, "state": {}, "applied": {}})
    keyed["llm:a/x"] = value
    keyed["llm:c/z"] = value
    assert table.changelog == [("llm:a/x", value), ("llm:c/z", value)]
    assert table.data == {"llm:b/y": b"recovered"} and keyed.held() == 1
    assert KeyedTable(table, keep_values=True).held() is None  # a store on disk: not counted


def test_recovery_into_a_memory_store_leaves_out_the_keys_the_worker_holds_live() -> None:
    """After a rebalance faust re-reads a kept partition's changelog: values the live models already hold."""
    stream = build_app(StreamSettings())
    ev = LlmRequest(ts=START.timestamp(), model="gpt-4o", input_tokens=100, output_tokens=10, team="t", feature="a")
    held = stream.runner.engine.partition_key(ev)

    class Message:  # the message that carried the key (only its place as the "current event" matters)
        pass

    stream.runner.table.bind(held, Message())
    assert stream.runner.run([(held, 0, [Segment(0, 7, [ev])])]).processed == 1

    def changelog(key: str) -> SimpleNamespace:
        return SimpleNamespace(key=key, value=b"{}", message=SimpleNamespace(value=b"{}", partition=0))

    stream.table.apply_changelog_batch([changelog(held), changelog("llm:t/b")])
    assert stream.runner.holds(held) and dict(stream.table.data.data) == {"llm:t/b": b"{}"}


def test_series_evicted_by_the_bound_leave_the_saved_state_of_their_group_too() -> None:
    """Otherwise a worker's table would keep every series it ever evicted: memory bounded in the engine only."""
    runner = GroupRunner(Engine(PriceTable.packaged(), Settings(max_series=20)), table={})
    t0 = START.timestamp()

    def batch(features: range, first_offset: int) -> list[tuple[str, int, list[Segment]]]:
        return keyed([LlmRequest(ts=t0 + i, model="gpt-4o", input_tokens=100, output_tokens=10, team="t",
                                 feature=f"f{i}") for i in features], first_offset, per_message=1)

    first = runner.run(batch(range(20), 0))
    assert all(write["state"]["features"] for write in first.writes.values())
    second = runner.run(batch(range(20, 30), 20))
    gone = [key for key, write in second.writes.items() if not write["state"]["features"]]
    assert len(gone) >= 10 and all(key in first.writes for key in gone)
    assert runner.engine.series_count <= 20


def test_worker_help_lists_every_setting_with_its_variable() -> None:
    result = CliRunner().invoke(worker, ["--help"])
    assert result.exit_code == 0
    for name in StreamSettings.model_fields:
        assert f"SPENDWATCH_{name.upper()}" in result.output
    assert "--broker" in result.output


def test_commands_name_the_bad_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPENDWATCH_PARTITIONS", "zero")
    result = CliRunner().invoke(produce, ["events.jsonl"])
    assert result.exit_code == 2 and "partitions" in result.output and "'zero'" in result.output
    monkeypatch.delenv("SPENDWATCH_PARTITIONS")
    missing = CliRunner().invoke(produce, ["/nonexistent/events.jsonl", "--broker", "kafka://127.0.0.1:1"])
    assert missing.exit_code == 2 and "no such file" in missing.output


def test_the_producer_keeps_each_keys_lines_together_and_bad_lines_alone() -> None:
    def line(team: str, n: int) -> bytes:
        return orjson.dumps({"ts": 1.8e9 + n, "model": "gpt-4o", "input_tokens": n, "output_tokens": 1, "team": team})

    lines = [line("a", 1), line("b", 2), b"{not json", line("a", 3), b'{"ts": 1, "model": "m"}']
    for framing in ("array", "ndjson"):
        messages = list(Batcher(framing).messages(lines))  # type: ignore[arg-type]
        by_key = {m.key: m for m in messages}
        assert sorted(m.events for m in messages) == [1, 1, 1, 2]
        a = Decoder().decode_payload(by_key[b'"llm:a/"'].value)[0]
        assert [ev.input_tokens for ev in a] == [1, 3]
        assert {m.value for m in messages if m.key is None} == {b"{not json", b'{"ts": 1, "model": "m"}'}
    assert bootstrap_servers("kafka://h1:1;kafka://h2:2") == "h1:1,h2:2"
