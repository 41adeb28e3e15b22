"""``spendwatch sink``: alerts, history rollups and the weekly digest from the stream's output.

The first tests drive :class:`SinkCore` directly (a history store in a
SQLite file, the local Slack server); the last runs a detection worker and
the sink as processes against the test broker and kills the sink with -9
in the middle of an incident.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from broker import Broker, free_port, running_broker
from faust.utils.cron import secs_for_next
from slack_server import TOKEN, FakeSlack, Message, _channel_id
from stream_worker import WorkerProcess, start_sink, start_worker, wait_for

from detector.alerts import AlertPipeline
from detector.alerts.lifecycle import event_time
from detector.anomaly import Anomaly
from detector.config import Settings
from detector.detection_run import engine_for, rules_in_force
from detector.events import Decoder, LlmRequest
from detector.history import HistoryStore, HistoryWriter
from detector.history.settings import HistorySettings
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.simulate import DEFAULT_START, parse_incident, simulate
from detector.simulate.world import World
from streams.codecs import anomaly_record
from streams.producer import batch_options, client_options, ensure_topic, produce_lines
from streams.sink import CountedCore, SinkSettings, build_core, build_sink_app
from streams.sink_core import (
    DIGEST_CRON,
    SinkCore,
    SinkRecordError,
    digest_timezone,
    parse_record,
    post_weekly_digest,
)
from streams.web import SinkMetrics

START = DEFAULT_START.replace(tzinfo=UTC)
INCIDENT = "prompt_doubling@1d10h~3h:team=growth"
PRICES = PriceTable.packaged()


@pytest.fixture(scope="module")
def lines() -> list[bytes]:
    world = World(tuple(World.default().only(team="growth").features))
    incidents = [parse_incident(INCIDENT, START)]
    return list(simulate(days=2, seed=11, start=START, world=world, incidents=incidents).lines())


@pytest.fixture(scope="module")
def records(lines: list[bytes]) -> list[Anomaly]:
    """What ``spendwatch replay`` (and so each detection worker) emits for the file, in order."""
    out: list[Anomaly] = []
    replay_lines(lines, engine_for(Settings(), PRICES), Decoder(), on_anomaly=out.append)
    assert {a.status for a in out} == {"firing", "resolved"}
    return out


def expected_pages(records: list[Anomaly]) -> int:
    """Pages the alert pipeline gives for these records when nothing restarts (previews, no Slack)."""
    settings = Settings()
    pipeline = AlertPipeline.from_settings(settings, rules=rules_in_force(settings))
    for a in records:
        pipeline.push(a)
        pipeline.advance(event_time(a.resolved_at or a.detected_at))
    pipeline.flush()
    kinds = [kind for _, kind, _ in pipeline.previews()]
    assert kinds.count("resolved") == kinds.count("firing") > 0
    return kinds.count("firing")


def split_at(lines: list[bytes], at: datetime) -> tuple[list[bytes], list[bytes]]:
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S")
    first = [line for line in lines if orjson.loads(line)["ts"] < stamp]
    return first, lines[len(first):]


def total_cost(lines: list[bytes]) -> float:
    events, rejects = Decoder().decode_lines(lines)
    assert not rejects
    return math.fsum(PRICES.cost(ev) for ev in events if isinstance(ev, LlmRequest))


def stored_cost(db: Path) -> float:
    store = HistoryStore.open(f"sqlite:///{db}")
    try:
        return math.fsum(row.cost_usd for row in store.rollups(float("-inf"), float("inf")))
    finally:
        store.close()


def sink_env(slack: FakeSlack, tmp_path: Path) -> dict[str, str]:
    return {"slack_token": TOKEN, "slack_channel": "#spend", "slack_api_url": slack.api_url,
            "slack_outbox": str(tmp_path / "outbox.db"), "db_url": f"sqlite:///{tmp_path / 'history.db'}"}


def core_for(slack: FakeSlack, tmp_path: Path) -> SinkCore:
    settings = SinkSettings(**sink_env(slack, tmp_path))
    return build_core(settings, rules_in_force(settings))


def threads(slack: FakeSlack) -> dict[str, list[Message]]:
    """Each top-level message's ts → its replies."""
    return {m.ts: [r for r in slack.messages if r.thread_ts == m.ts] for m in slack.top_level()}


def assert_each_alert_paged_once_and_resolved_in_its_thread(slack: FakeSlack, pages: int) -> None:
    """One page per alert, each resolved in its thread and its original rewritten; nothing posted twice."""
    tops = slack.top_level()
    assert len(tops) == pages, [m.text for m in tops]
    assert len(slack.calls("chat.postMessage")) == len(slack.messages)  # nothing posted twice, nothing refused
    for top in tops:
        replies = threads(slack)[top.ts]
        assert any("resolved" in r.text.lower() for r in replies), (top.text, [r.text for r in replies])
        assert top.edits >= 1  # the original now shows it resolved


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    server = FakeSlack().start()
    yield server
    server.stop()


def test_a_restarted_sink_resolves_in_the_firing_thread_without_paging_again(
    slack: FakeSlack, tmp_path: Path, lines: list[bytes], records: list[Anomaly]
) -> None:
    before, after = split_at(lines, START + timedelta(days=1, hours=12))  # the incident runs 10h–13h
    firing = [a for a in records if a.status == "firing"]
    core = core_for(slack, tmp_path)
    assert core.take_anomalies(firing) == len(firing)
    for lo in range(0, len(before), 500):  # as a stream delivers it: event time moves batch by batch
        core.take_usage(before[lo : lo + 500])
    core.deliver()
    pages = expected_pages(records)
    assert len(slack.top_level()) == pages and not [m for m in slack.messages if m.thread_ts]
    core.close()  # the process ends; the lifecycle in memory is gone

    core = core_for(slack, tmp_path)
    core.take_usage(before[-2000:])  # redelivered: the rollups must not count them twice
    assert core.take_anomalies(records) == len(records) - len(firing)  # the firing ones are repeats
    for lo in range(0, len(after), 500):
        core.take_usage(after[lo : lo + 500])
    core.deliver()
    core.close()
    assert_each_alert_paged_once_and_resolved_in_its_thread(slack, pages)
    assert stored_cost(tmp_path / "history.db") == pytest.approx(total_cost(lines), abs=0.005)
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.db'}")
    stored = store.anomalies(float("-inf"), float("inf"))
    store.close()
    assert sorted(s.record.id for s in stored) == sorted(a.id for a in firing)
    assert {s.record.status for s in stored} == {"resolved"}


def test_without_restoring_the_open_alerts_a_restart_would_lose_the_resolved_notices(
    slack: FakeSlack, tmp_path: Path, lines: list[bytes], records: list[Anomaly], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control for the test above: the restore is what keeps the threads."""
    firing = [a for a in records if a.status == "firing"]
    before, _ = split_at(lines, START + timedelta(days=1, hours=12))  # every page due, no resolution yet
    core = core_for(slack, tmp_path)
    core.take_anomalies(firing)
    core.take_usage(before)
    core.deliver()
    core.close()
    assert len(slack.top_level()) == expected_pages(records)
    monkeypatch.setattr(SinkCore, "restore", lambda self, hold_s: 0)  # a sink that forgets on restart
    core = core_for(slack, tmp_path)
    core.take_anomalies([a for a in records if a.status == "resolved"])  # the firing ones were committed
    core.take_usage(lines[-100:])
    core.deliver()
    core.close()
    assert not [m for m in slack.messages if m.thread_ts and "resolved" in m.text.lower()]
    assert not [m for m in slack.top_level() if m.edits]


def test_a_refused_page_is_counted_as_failed_and_pending(
    slack: FakeSlack, tmp_path: Path, lines: list[bytes], records: list[Anomaly]
) -> None:
    """What an operator alerts on: pages waiting in the outbox because Slack refuses them."""
    firing = [a for a in records if a.status == "firing"]
    counted = CountedCore(core_for(slack, tmp_path), SinkMetrics())
    slack.fail("chat.postMessage", "500", times=100)  # beyond every retry of this round
    counted.take_anomalies(firing)
    counted.take_usage([("spendwatch.usage", 0, n, line) for n, line in enumerate(lines[:8000])])
    counted.core.close()
    sample = counted.metrics.registry.get_sample_value
    slack_channel = {"channel": "slack"}
    assert slack.calls("chat.postMessage") and not slack.messages
    assert sample("spendwatch_sink_notification_failures_total", slack_channel) >= 1
    assert sample("spendwatch_sink_notifications_pending", slack_channel) >= 1
    assert sample("spendwatch_sink_notifications_delivered_total", slack_channel) == 0
    assert sample("spendwatch_sink_records_total", {"status": "firing"}) == len(firing)
    assert sample("spendwatch_sink_usage_events_total") == 8000


def test_a_record_is_taken_once_per_status_and_a_late_firing_copy_is_ignored(
    slack: FakeSlack, tmp_path: Path, records: list[Anomaly]
) -> None:
    core = core_for(slack, tmp_path)
    assert core.take_anomalies(records + records) == len(records)
    assert core.repeats == len(records)
    late = [a for a in records if a.status == "firing"][:1]
    assert core.take_anomalies(late) == 0
    core.close()


def test_a_bad_anomaly_record_says_where_and_what() -> None:
    with pytest.raises(SinkRecordError, match=r"spendwatch\.anomalies:2@41: .*status must be firing or resolved"):
        parse_record(orjson.dumps({**_record(), "status": "open"}), "spendwatch.anomalies:2@41")
    with pytest.raises(SinkRecordError, match=r"t:0@1: expected a Contract 3 anomaly record, found \{oops"):
        parse_record(b"{oops", "t:0@1")
    assert parse_record(orjson.dumps({**_record(), "new_field": 1}), "t:0@0").id == "a1"


def _record() -> dict[str, Any]:
    from detector.notify.render import _example

    return {**_example().to_dict(), "id": "a1"}


def test_the_monday_digest_posts_the_last_complete_week(slack: FakeSlack, tmp_path: Path, lines: list[bytes]) -> None:
    settings = HistorySettings(slack_token=TOKEN, slack_api_url=slack.api_url, digest_channel="#finops",
                               digest_timezone="Europe/Paris")
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'h.db'}")
    writer = HistoryWriter(store, PRICES)
    writer.add_events(Decoder().decode_lines(lines)[0])
    writer.flush()
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=UTC).timestamp()  # the Monday after the simulated days
    week = post_weekly_digest(store, settings, monday)
    assert week == "2026-W47" and START.isocalendar()[1] == 47
    [posted] = slack.top_level()
    assert posted.text.startswith("spendwatch weekly digest 2026-W47")
    assert post_weekly_digest(store, HistorySettings(), monday) is None  # no bot token: nothing to post
    assert len(slack.top_level()) == 1
    store.close()


# -- against the broker ------------------------------------------------------------------------------------

@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    with running_broker(tmp_path) as running:
        yield running


def test_worker_and_sink_page_once_resolve_in_thread_and_roll_up_every_dollar_through_a_kill_9(
    broker: Broker, slack: FakeSlack, tmp_path: Path, lines: list[bytes], records: list[Anomaly]
) -> None:
    before, after = split_at(lines, START + timedelta(days=1, hours=12))
    pages = expected_pages(records)
    started: list[WorkerProcess] = []

    def run(process: WorkerProcess) -> WorkerProcess:
        started.append(process)
        process.wait_ready()
        return process

    # The sink's alert clock trails the usage it reads by 15 minutes of event time, and the events go out ten
    # minutes of event time at a time across the incident, each slice once the worker has processed the last:
    # so every record reaches the sink before the clock passes its time, as it does live, where a worker trails
    # by seconds (the default delay is 2 minutes). Sent all at once, the sink reads hours of usage while the
    # worker is still detecting, and pages that arrive behind the clock are grouped, or resolved, differently.
    env = {**sink_env(slack, tmp_path), "sink_watermark_delay_s": "900"}
    try:
        worker = run(start_worker(broker.url, tmp_path, free_port()))
        sink = run(start_sink(broker.url, tmp_path, free_port(), **env))
        sent = send_in_step(broker, before, worker, 0)
        wait_for("a page", lambda: len(slack.top_level()), lambda n: n >= 1)
        sink.kill(signal.SIGKILL)  # the incident is still on: its alerts are open, some not yet sent
        run(start_sink(broker.url, tmp_path, free_port(), **env))
        send_in_step(broker, after, worker, sent)
        wait_for("every resolved notice", lambda: sum(m.edits > 0 for m in slack.top_level()), lambda n: n >= pages)
        total = total_cost(lines)
        wait_for("every dollar in the rollups", lambda: stored_cost(tmp_path / "history.db"),
                 lambda c: abs(c - total) < 0.005)
        time.sleep(1.0)  # anything late (a duplicate) would arrive now
    finally:
        for process in started:
            process.kill()
            process.show_log()
    # A page whose post was in flight at the kill was found in the channel on restart, not posted again.
    assert_each_alert_paged_once_and_resolved_in_its_thread(slack, pages)
    assert stored_cost(tmp_path / "history.db") == pytest.approx(total_cost(lines), abs=0.005)
    store = HistoryStore.open(f"sqlite:///{tmp_path / 'history.db'}")
    stored = store.anomalies(float("-inf"), float("inf"))
    store.close()
    firing_ids = sorted(a.id for a in records if a.status == "firing")
    assert sorted(s.record.id for s in stored) == firing_ids
    assert all(s.record.status == "resolved" for s in stored)


def send(b: Broker, lines: list[bytes]) -> None:
    asyncio.run(produce_lines(lines, b.settings(), batch=500))


def send_in_step(b: Broker, lines: list[bytes], worker: WorkerProcess, sent: int) -> int:
    """Send ``lines``; across the incident ten minutes of event time at a time, each slice once the worker has
    processed every event sent before it. Returns the events sent in all (``sent`` before)."""
    slices, rest = [], lines
    at = START + timedelta(days=1, hours=9, minutes=30)
    while at < START + timedelta(days=1, hours=14, minutes=30):
        part, rest = split_at(rest, at)
        slices.append(part)
        at += timedelta(minutes=10)
    for part in [*slices, rest]:
        if not part:
            continue
        send(b, part)
        sent += len(part)
        wait_for("the worker to catch up", lambda: worker.metric("spendwatch_events_processed_total"),
                 lambda n, sent=sent: n >= sent)
    return sent


def test_usage_redelivered_after_a_restart_is_booked_once_even_beyond_the_dedupe_window(
    slack: FakeSlack, tmp_path: Path, lines: list[bytes]
) -> None:
    """Two days of events uncommitted at a crash: more than the request-id window (24 h) remembers."""
    messages = [("spendwatch.usage", 0, n, b"".join(lines[lo : lo + 500]))
                for n, lo in enumerate(range(0, len(lines), 500))]
    core = core_for(slack, tmp_path)
    assert core.take_usage_messages(messages) == (len(lines), 0)
    core.close()
    core = core_for(slack, tmp_path)
    assert core.take_usage_messages(messages) == (0, 0)  # every offset was booked
    core.close()
    assert stored_cost(tmp_path / "history.db") == pytest.approx(total_cost(lines), abs=0.005)


def test_a_hanging_slack_leaves_the_sink_answering_health_checks_and_the_page_goes_out_after(
    broker: Broker, slack: FakeSlack, tmp_path: Path, lines: list[bytes], records: list[Anomaly]
) -> None:
    """Slack calls block for as long as Slack hangs; faust's event loop (heartbeats, /health) must not."""
    hang_s, hangs = 6, 2  # slack-sdk retries a dropped connection twice, so the third attempt gets through
    slack.fail("chat.postMessage", "hang", times=hangs, retry_after=hang_s)
    sink = start_sink(broker.url, tmp_path, free_port(), **sink_env(slack, tmp_path))
    try:
        sink.wait_ready()
        asyncio.run(send_records(broker, records))
        send(broker, lines)  # the usage that moves the alert clock on, as the detection workers' input does
        wait_for("the first Slack call", lambda: len(slack.calls("chat.postMessage")), lambda n: n >= 1)
        slowest = 0.0
        while len(slack.calls("chat.postMessage")) <= hangs:  # Slack is still hanging
            started = time.monotonic()
            assert sink.health()["status"] == "ok"
            slowest = max(slowest, time.monotonic() - started)
            time.sleep(0.5)
        wait_for("the page that hung", lambda: len(slack.top_level()), lambda n: n >= 1)
        wait_for("every usage event booked", lambda: sink.metric("spendwatch_sink_usage_events_total"),
                 lambda n: n == len(lines))
        time.sleep(2.0)  # anything sent twice would arrive now
        taken = {status: sink.metric("spendwatch_sink_records_total", status=status) for status in ("firing", "resolved")}
        delivered = sink.metric("spendwatch_sink_notifications_delivered_total", channel="slack")
    finally:
        sink.kill()
    assert slowest < 1.0, f"/health took {slowest:.1f} s while Slack hung for {hang_s} s"
    assert len(slack.calls("chat.postMessage")) == len(slack.messages) + hangs  # each other call posted once
    assert taken == {status: sum(a.status == status for a in records) for status in taken}
    assert delivered >= len(slack.top_level())


async def send_records(b: Broker, records: list[Anomaly]) -> None:
    """The records onto the anomalies topic, as detection workers write them."""
    settings = b.settings()
    await ensure_topic(settings, settings.anomalies_topic)
    producer = AIOKafkaProducer(**client_options(settings), **batch_options(settings))
    await producer.start()
    try:
        for a in records:
            await producer.send_and_wait(settings.anomalies_topic, anomaly_record(a), key=a.id.encode())
    finally:
        await producer.stop()


def test_the_sink_posts_the_digest_from_its_monday_0900_crontab_in_the_configured_zone(
    slack: FakeSlack, tmp_path: Path, lines: list[bytes]
) -> None:
    zone = ZoneInfo("Europe/Paris")
    settings = SinkSettings(**sink_env(slack, tmp_path), digest_channel="#finops", digest_timezone=zone.key)
    core = core_for(slack, tmp_path)
    core.take_usage(lines)
    core.close()
    monday = datetime(2026, 11, 23, 9, 0, tzinfo=zone).timestamp()
    built = build_sink_app(settings, clock=lambda: monday)
    try:
        # faust keeps a crontab as an app task wrapping our function; unwrapped, it is the job itself.
        [job] = [inspect.unwrap(t) for t in built.app._app_tasks if inspect.unwrap(t).__name__ == "weekly_digest"]
        next_run_s = time.time() + secs_for_next(DIGEST_CRON, digest_timezone(settings))
        next_run = datetime.fromtimestamp(round(next_run_s / 60) * 60, zone)
        assert next_run.strftime("%a %H:%M") == "Mon 09:00"
        asyncio.run(job())
    finally:
        built.close()
    [posted] = slack.top_level()
    assert posted.channel == _channel_id("#finops")  # the digest channel, not the alerts' #spend
    assert posted.text.startswith("spendwatch weekly digest 2026-W47")
