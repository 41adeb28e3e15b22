"""The weekly digest over two simulated weeks with known incidents: numbers, HTML, Slack, command."""

from __future__ import annotations

import base64
from collections import defaultdict
from html.parser import HTMLParser

import pytest
import spend_world
from click.testing import CliRunner
from postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)
from slack_sdk import WebClient
from slack_server import TOKEN, FakeSlack, block_kit_problems

from detector.anomaly import Anomaly
from detector.digest import build_digest, digest_charts, render_digest, render_html, send_digest
from detector.digest.cli import digest as digest_command
from detector.digest.content import rank_anomalies
from detector.events import GpuSample, LlmRequest
from detector.history import HistoryStore, HistoryWriter, StoredAnomaly, parse_time
from detector.ledger import SpendLedger
from detector.pricing import PriceTable
from detector.rules import load_sources

PRICES = PriceTable.packaged()
BUDGETS = b"""groups:
- name: budgets
  rules:
  - {id: team.monthly-budget, alert: TeamBudget, expr: {metric: spend_rate, by: [team], budget: {monthly_usd: 1000}}}
"""


def _ledger_costs(ledger: SpendLedger) -> dict[tuple[str, str], float]:
    return {key: line.cost_usd for key, line in ledger.lines.items()}


def _excess_per_hour(evs, labels, start, end) -> float:
    """The series' spend per hour in [start, end) minus the same hours a week earlier: the incident's cost."""
    def cost(lo, hi):
        return sum(PRICES.cost(e) for e in evs if type(e) is LlmRequest and lo <= e.ts < hi
                   and (e.team, e.feature, e.model) == labels)
    return (cost(start, end) - cost(start - 7 * 86400, end - 7 * 86400)) / ((end - start) / 3600)


def _anomaly(id, labels, metric, started, detected, resolved, excess) -> Anomaly:
    return Anomaly(id=id, rule=f"builtin.{metric}", metric=metric, labels=labels, severity="critical",
                   status="resolved" if resolved else "firing", started_at=started, detected_at=detected,
                   resolved_at=resolved, observed=2.0, baseline=1.0, ratio=2.0, excess_cost_usd_per_hour=excess,
                   projected_month_usd=None, summary=f"{metric} moved on {labels['team']} <!channel>")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Both weeks in a SQLite history store, the reference spend of W47 by (category, team), and the anomalies."""
    evs = spend_world.events()
    store = HistoryStore.open(f"sqlite:///{tmp_path_factory.mktemp('digest') / 'history.db'}")
    writer = HistoryWriter(store, PRICES)
    ledger, snapshots = SpendLedger(), {}
    for ev in evs:
        for name, edge in (("start", spend_world.WEEK_START), ("end", spend_world.WEEK_END)):
            if name not in snapshots and ev.ts >= edge:
                snapshots[name] = _ledger_costs(ledger)
        if type(ev) is LlmRequest:
            ledger.add_request(ev, PRICES.cost(ev))
        elif type(ev) is GpuSample:
            ledger.add_gpu(ev, PRICES.gpu_hourly(ev.gpu_model))
        else:
            ledger.add_usage(ev)
        writer.add_event(ev)
    writer.flush()
    snapshots.setdefault("end", _ledger_costs(ledger))
    week = {k: v - snapshots["start"].get(k, 0.0) for k, v in snapshots["end"].items()}
    chat = ("support", "chat", "claude-haiku-4-5")
    prompt_rate = _excess_per_hour(evs, chat, parse_time("2026-11-17T14:00:00Z"), parse_time("2026-11-17T20:00:00Z"))
    idle_rate = PRICES.gpu_hourly("A100-SXM-80GB") * 2 * 0.98
    anomalies = [
        _anomaly("prompt", dict(zip(("team", "feature", "model"), chat, strict=True)), "input_tokens_per_request",
                 "2026-11-17T14:00:00Z", "2026-11-17T14:20:00Z", None, prompt_rate),
        _anomaly("idle", {"team": "research", "cluster": "training", "node": "train-a100-1"}, "gpu_utilization",
                 "2026-11-19T02:00:00Z", "2026-11-19T02:45:00Z", "2026-11-19T10:05:00Z", idle_rate),
        _anomaly("last-week", {"team": "search"}, "spend_rate", "2026-11-10T09:00:00Z", "2026-11-10T09:30:00Z",
                 "2026-11-10T12:00:00Z", 3.0),
    ]
    for a in anomalies:
        writer.add_anomaly(a)
    writer.add_anomaly(anomalies[0].resolve("2026-11-17T20:05:00Z", "back to normal"))
    yield store, week, {a.id: a for a in anomalies}
    store.close()


@pytest.fixture(scope="module")
def digest(world):
    store, _, _ = world
    return build_digest(store, spend_world.WEEK, load_sources([("budgets.yaml", BUDGETS)]))


def test_totals_reconcile_with_the_events_to_the_cent_by_category_and_team(digest, world):
    _, week, _ = world
    by_category, by_team = defaultdict(float), defaultdict(float)
    for (category, team), usd in week.items():
        by_category[category] += usd
        by_team[team] += usd
    assert {c.name: round(c.now, 2) for c in digest.by_category if c.now} == {
        k: round(v, 2) for k, v in by_category.items() if round(v, 2)}
    assert {c.name: round(c.now, 2) for c in digest.by_team} == {k: round(v, 2) for k, v in by_team.items()}
    assert round(digest.total.now, 2) == round(sum(week.values()), 2)
    assert round(sum(sum(day.values()) for day in digest.daily_by_category.values()), 2) == round(digest.total.now, 2)
    assert len(digest.by_category) == 6 and len(digest.daily_by_category) == 7


def test_every_anomaly_of_the_week_appears_once_ranked_by_dollars_with_its_owner(digest, world):
    _, _, made = world
    assert [line.id for line in digest.anomalies] == ["idle", "prompt"]  # last week's is not this week's
    idle, prompt = digest.anomalies
    assert idle.excess_usd == pytest.approx(made["idle"].excess_cost_usd_per_hour * (8 + 5 / 60))
    assert idle.leaked_usd == pytest.approx(made["idle"].excess_cost_usd_per_hour * 0.75)
    assert (idle.team, idle.detect_s, idle.resolve_s) == ("research", 45 * 60, 7 * 3600 + 20 * 60)
    rate = made["prompt"].excess_cost_usd_per_hour
    assert rate > 0.1  # the doubled prompts really cost more than the same hours a week before
    assert prompt.excess_usd == pytest.approx(rate * (6 + 5 / 60))
    assert prompt.leaked_usd == pytest.approx(rate / 3)
    assert (prompt.team, prompt.stored.record.status) == ("support", "resolved")


def test_an_anomaly_whose_cost_was_measured_is_ranked_by_it_and_leaks_no_more_than_it_cost():
    def stored(name: str, rate: float, hours: float, measured: float | None) -> StoredAnomaly:
        record = Anomaly(
            id=name, rule="r", metric="input_tokens_per_request", labels={"team": "t"}, severity="warning",
            status="resolved", started_at="2026-11-16T00:00:00Z", detected_at="2026-11-16T00:30:00Z",
            resolved_at=None, observed=2.0, baseline=1.0, ratio=2.0, excess_cost_usd_per_hour=rate,
            projected_month_usd=None, summary=name, excess_total_usd=measured)
        return StoredAnomaly(record, "t", 0.0, 1800.0, hours * 3600)

    lines = rank_anomalies([stored("measured", 10.0, 2, 3.0), stored("estimated", 2.0, 5, None)], week_end=1e9)
    assert [(line.id, line.excess_usd, line.leaked_usd) for line in lines] == [
        ("estimated", 10.0, 1.0),  # 2 $/h × 5 h, of it half an hour before detection
        ("measured", 3.0, 3.0),  # its prompts cost $3 in all: not 10 $/h × 2 h, and not $5 before detection
    ]


def test_idle_gpus_trends_and_unit_economics_follow_the_injected_incidents(digest):
    a100 = next(g for g in digest.gpus if g.gpu_model == "A100-SXM-80GB")
    assert a100.idle_usd.now == pytest.approx(1.8 * 2 * 8 * 0.98, rel=0.1)
    assert a100.idle_usd.before < 1
    assert a100.utilisation.now < a100.utilisation.before
    chat = next(u for u in digest.unit_costs if u.feature == "support/chat")
    assert chat.per_request.now > chat.per_request.before  # six hours of doubled prompts
    assert sum(c.now for c in digest.tier_requests) == pytest.approx(1.0)
    assert {c.name for c in digest.tier_requests} >= {"premium", "economy"}
    assert 0.2 < digest.cache_hit.now < 0.6
    assert digest.feature_movers and digest.model_movers
    assert abs(digest.feature_movers[0].delta) >= abs(digest.feature_movers[-1].delta)


def test_budgets_project_month_end_per_team_and_the_look_first_list_leads_with_the_costliest(digest):
    lines = {b.scope: b for b in digest.budgets}
    assert set(lines) == {f"team={t}" for t in ("platform", "research", "search", "support")}
    support = lines["team=support"]
    assert support.projected_usd > support.spent_usd > 0
    assert digest.budgets == sorted(digest.budgets, key=lambda b: -b.share)
    assert 1 <= len(digest.look_first) <= 5
    assert any("on course for" in item for item in digest.look_first)
    assert "anomaly cost" in digest.look_first[0] or "on course" in digest.look_first[0]


def test_an_empty_week_is_a_clear_no_data_digest(world):
    store, _, _ = world
    empty = build_digest(store, "2026-W30")
    assert empty.empty and empty.anomalies == [] and empty.total.now == 0
    assert "no data for 2026-W30" in render_html(empty, {})
    assert "no data for 2026-W30" in render_digest(empty)["text"]


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self.text, self._in = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self._in = tag
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_data(self, data):
        self.text.append(data)
        if self._in == "h2":
            self.headings.append(data)


def test_the_html_is_self_contained_with_every_chart_embedded(digest, world):
    store, _, _ = world
    charts = digest_charts(store, digest)
    assert set(charts) == {"daily-spend.png", "anomaly-1.png", "anomaly-2.png", "tier-mix.png"}
    page = _Page()
    page.feed(render_html(digest, charts))
    page.close()
    assert len(page.images) == 4
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert {"Spend by cost category", "Anomalies, by dollars", "GPUs", "Unit economics"} <= set(page.headings)
    text = "".join(page.text)
    assert "<!channel>" in text  # shown as the text it is: escaped in the markup, not a tag
    assert "http://" not in "".join(img["src"][:40] for img in page.images)


def test_the_slack_digest_is_valid_block_kit_and_is_posted_with_its_charts():
    slack = FakeSlack().start()
    try:
        store = HistoryStore.open("sqlite://")
        writer = HistoryWriter(store, PRICES)
        for ev in spend_world.events()[:60_000]:
            writer.add_event(ev)
        writer.flush()
        writer.add_anomaly(_anomaly("x", {"team": "<!here> *ops*", "feature": "chat"}, "spend_rate",
                                    "2026-11-09T01:00:00Z", "2026-11-09T01:10:00Z", None, 2.0))
        d = build_digest(store, "2026-W46")
        charts = digest_charts(store, d)
        message = render_digest(d)
        assert block_kit_problems(message) == []
        client = WebClient(token=TOKEN, base_url=slack.api_url, timeout=5)
        ts = send_digest(client, "#finops", d, charts)
    finally:
        slack.stop()
    [posted] = slack.top_level()
    assert posted.ts == ts and posted.text.startswith("spendwatch weekly digest 2026-W46")
    body = str(posted.blocks)
    assert "<!here>" not in body and "&lt;!here&gt;" in body
    uploaded = [f for f in slack.files.values() if f.completed]
    assert sorted(f.filename for f in uploaded) == sorted(charts)
    assert all(f.data == charts[f.filename] and f.thread_ts == ts and f.channel == posted.channel for f in uploaded)


def test_the_command_writes_the_html_and_says_where(tmp_path, world):
    store, _, _ = world
    out = tmp_path / "d" / "digest.html"
    db = str(store.engine.url)
    result = CliRunner().invoke(digest_command, ["--week", "2026-W47", "--out", str(out), "--db", db])
    assert result.exit_code == 0, result.output
    assert f"written to {out}" in result.output
    assert out.read_text().count("data:image/png;base64,") == 4
    bad = CliRunner().invoke(digest_command, ["--week", "2026-47", "--db", str(store.engine.url)])
    assert bad.exit_code == 2 and "expected an ISO week like 2026-W47, got '2026-47'" in bad.output


def test_postgresql_and_sqlite_give_the_same_digest(postgres_url, tmp_path):  # noqa: F811 (the fixture)
    digests = []
    for url in (postgres_url, f"sqlite:///{tmp_path / 'h.db'}"):
        store = HistoryStore.open(url)
        writer = HistoryWriter(store, PRICES)
        for ev in spend_world.events()[:50_000]:
            writer.add_event(ev)
        writer.add_anomaly(_anomaly("x", {"team": "search"}, "spend_rate", "2026-11-09T01:00:00Z",
                                    "2026-11-09T01:10:00Z", "2026-11-09T03:00:00Z", 2.0))
        writer.flush()
        digests.append(build_digest(store, "2026-W46"))
        store.close()
    on_postgres, on_sqlite = digests
    assert not on_postgres.empty
    assert [(c.name, round(c.now, 6)) for c in on_postgres.by_team] == [
        (c.name, round(c.now, 6)) for c in on_sqlite.by_team]
    assert [(a.id, a.excess_usd, a.stored.record.labels) for a in on_postgres.anomalies] == [
        (a.id, a.excess_usd, a.stored.record.labels) for a in on_sqlite.anomalies]
    assert on_postgres.look_first == on_sqlite.look_first
