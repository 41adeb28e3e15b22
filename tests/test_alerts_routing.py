"""Routing files, inhibition and silences (store, command line, and the pipeline honouring them)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.alerts.cli import silence_group
from detector.alerts.matchers import parse_label_matcher as m
from detector.alerts.pipeline import AlertPipeline
from detector.alerts.routing import InhibitRule, default_routing
from detector.alerts.routing_file import RoutingLoadError, load_routing, load_routing_text
from detector.alerts.settings import AlertSettings
from detector.alerts.silences import SilenceError, SilenceStore
from detector.anomaly import Anomaly, anomaly_id, rfc3339
from detector.rules import format_error

REPO = Path(__file__).resolve().parents[1]
T0 = datetime(2026, 11, 16, 12, 0, tzinfo=UTC).timestamp()


def firing(t: float, feature: str = "summarize", team: str = "search", severity: str = "critical") -> Anomaly:
    labels = {"team": team, "feature": feature, "model": "gpt-4o"}
    return Anomaly(
        id=anomaly_id("r", labels, rfc3339(t)), rule="r", metric="input_tokens_per_request", labels=labels,
        severity=severity, status="firing", started_at=rfc3339(t - 60), detected_at=rfc3339(t), resolved_at=None,
        observed=2.0, baseline=1.0, ratio=2.0, excess_cost_usd_per_hour=10.0, projected_month_usd=None,
        summary="s",
    )


def errors_of(text: str) -> list[str]:
    with pytest.raises(RoutingLoadError) as caught:
        load_routing_text("routing.yaml", text.encode())
    return [format_error(e) for e in caught.value.errors]


# -- the routing file ----------------------------------------------------------------
def test_the_annotated_routing_file_loads_and_routes_as_documented():
    routing = load_routing(REPO / "rules" / "routing.yaml")
    def receivers(**labels: str) -> list[str]:
        return [r.receiver for r in routing.route.match(labels)]
    assert receivers(team="search", severity="critical") == ["search-pager", "search-oncall"]  # continue
    assert receivers(team="search", severity="warning") == ["search-oncall"]
    assert receivers(team="search", severity="info") == ["search-oncall"]  # the child that matched took it
    assert receivers(team="ads", severity="critical") == ["finops"]
    assert receivers(category="training", cluster="train-eu") == ["ml-platform"]
    pager = routing.route.match({"team": "search", "severity": "critical"})[0]
    assert pager.repeat_interval_s == 3600 and pager.group_by == ("rule", "team", "feature")  # set, inherited
    assert routing.receivers["search-pager"].webhooks[0].url.startswith("https://")
    assert len(routing.inhibit_rules) == 2


def test_every_problem_is_reported_with_its_line_and_column():
    text = """route:
  receiver: oncall
  group_interval: 10m
  repeat_interval: 5m
  routes:
    - matchers: ['team=search']
      receiver: nobody
      group_wait: 30
      colour: red
receivers:
  - name: oncall
    webhook_configs:
      - url: ftp://x
inhibit_rules:
  - source_matchers: ['severity="critical"']
"""
    assert errors_of(text) == [
        'routing.yaml:6:18: route.routes[0].matchers[0]: bad matcher "team=search" (expected name="value", '
        'name!="value", name=~"regex" or name!~"regex"); did you mean \'team="search"\'?',
        'routing.yaml:8:19: route.routes[0].group_wait: found 30 (expected a Prometheus duration like 30s, 5m, '
        '1h30m or 7d); did you mean "30s"?',
        'routing.yaml:9:7: route.routes[0].colour: unknown key "colour" (expected one of: receiver, matchers, '
        'group_by, group_wait, group_interval, repeat_interval, continue, routes)',
        'routing.yaml:13:14: receivers[0].webhook_configs[0].url: found "ftp://x" (expected an http:// or https:// URL)',
        'routing.yaml:15:5: inhibit_rules[0]: missing key "target_matchers"',
    ]


def test_relations_between_fields_are_checked_once_the_file_is_valid():
    text = """route:
  group_interval: 10m
  repeat_interval: 5m
  routes:
    - receiver: nobody
receivers:
  - name: oncall
  - name: oncall
"""
    assert errors_of(text) == [
        'routing.yaml:1:1: route: the root route has no "receiver" (expected a receiver name on the root route: '
        'every alert needs somewhere to go)',
        "routing.yaml:3:20: route.repeat_interval: 5m is shorter than group_interval 10m "
        "(expected a repeat_interval of at least 10m)",
        'routing.yaml:5:17: route.routes[0].receiver: no receiver named "nobody" (expected one of: oncall)',
        'routing.yaml:8:11: receivers[1].name: receiver "oncall" is defined twice (expected a unique name per receiver)',
    ]


def test_an_inherited_interval_is_checked_against_a_child_s_repeat():
    text = "route: {receiver: a, group_interval: 1h, routes: [{repeat_interval: 30m}]}\nreceivers: [{name: a}]\n"
    [error] = errors_of(text)
    assert "route.routes[0].repeat_interval: 30m is shorter than group_interval 1h" in error


def test_yaml_that_is_not_plain_data_is_refused(tmp_path):
    assert "YAML aliases are not allowed" in errors_of("route: &r {receiver: a}\nreceivers: [*r]\n")[0]
    assert "!!python/object" in errors_of("route: !!python/object:os.system {}\nreceivers: []\n")[0]
    with pytest.raises(Exception, match="cannot read the routing file"):
        load_routing(tmp_path / "missing.yaml")


def test_inhibition_needs_every_equal_label_present_on_both_sides():
    rule = InhibitRule((m('severity="critical"'),), (m('severity="warning"'),), ("team",))
    assert rule.inhibits({"severity": "critical", "team": "a"}, {"severity": "warning", "team": "a"})
    assert not rule.inhibits({"severity": "critical", "team": "a"}, {"severity": "warning", "team": "b"})
    assert not rule.inhibits({"severity": "critical"}, {"severity": "warning"})  # Alertmanager would inhibit
    assert not rule.inhibits({"severity": "warning", "team": "a"}, {"severity": "warning", "team": "a"})


def test_without_a_routing_file_everything_goes_to_the_default_channel(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = AlertSettings(slack_outbox=tmp_path / "outbox.db")
    p = AlertPipeline.from_settings(settings)
    try:
        assert p.routing == default_routing()
        p.push(firing(T0))
        p.advance(T0 + 30)
        assert [(ch, kind) for ch, kind, _ in p.previews()] == [("#spendwatch", "firing")]
    finally:
        p.close()
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "routing.yaml").write_text(
        "route: {receiver: a}\nreceivers: [{name: a, slack_configs: [{channel: '#a'}]}]\n")
    p = AlertPipeline.from_settings(AlertSettings(slack_outbox=tmp_path / "outbox.db"))
    try:
        assert p.routing == default_routing()  # ./rules is not read unless it is the rules directory
    finally:
        p.close()
    p = AlertPipeline.from_settings(AlertSettings(slack_outbox=tmp_path / "outbox.db", rules_dir=Path("rules")))
    try:
        assert p.routing.source == "rules/routing.yaml"
    finally:
        p.close()


# -- silences ------------------------------------------------------------------------
def test_a_silence_holds_an_alert_back_and_it_is_sent_when_the_silence_ends(tmp_path):
    db = tmp_path / "silences.db"
    store = SilenceStore(db)
    store.add(['team="search"', 'feature=~"summ.*"'], starts_at=T0 - 10, ends_at=T0 + 1800, comment="deploy",
              created_by="ana", now=T0 - 10)
    store.close()
    p = AlertPipeline.from_settings(AlertSettings(slack_outbox=tmp_path / "o.db", silences_db=db))
    try:
        p.push(firing(T0))
        p.push(firing(T0, feature="answer"))
        p.advance(T0 + 30)
        assert [m_[2]["text"] for m_ in p.previews()] and len(p.previews()) == 1  # only "answer" went out
        assert "answer" in str(p.previews()[0][2])
        for t in range(60, 1800, 60):
            p.advance(T0 + t)
        assert len(p.previews()) == 1
        p.advance(T0 + 1830)
        assert len(p.previews()) == 2 and "summarize" in str(p.previews()[1][2])
    finally:
        p.close()


def test_a_silence_added_while_the_pipeline_runs_is_honoured(tmp_path):
    db = tmp_path / "silences.db"
    p = AlertPipeline.from_settings(AlertSettings(slack_outbox=tmp_path / "o.db", silences_db=db))
    try:
        p.advance(T0)  # no file yet: nothing is silenced, and no file is created
        assert not db.exists()
        store = SilenceStore(db)
        store.add(['team="search"'], starts_at=T0, ends_at=T0 + 3600, comment="known", created_by="ana", now=T0)
        store.close()
        p.push(firing(T0 + 60))
        p.advance(T0 + 120)
        assert p.previews() == []
    finally:
        p.close()


def test_silence_store_refuses_what_it_cannot_honour(tmp_path):
    store = SilenceStore(tmp_path / "s.db")
    try:
        with pytest.raises(SilenceError, match="at least one --matcher"):
            store.add([], starts_at=0, ends_at=1, comment="x", created_by="a", now=0)
        with pytest.raises(SilenceError, match="end after it starts"):
            store.add(['team="a"'], starts_at=5, ends_at=5, comment="x", created_by="a", now=0)
        with pytest.raises(SilenceError, match="needs a --comment"):
            store.add(['team="a"'], starts_at=0, ends_at=5, comment="  ", created_by="a", now=0)
        with pytest.raises(SilenceError, match="no silence with id 7"):
            store.expire(7, now=0)
        assert store.all() == []
    finally:
        store.close()


def test_the_silence_commands_add_list_and_expire(tmp_path):
    clock = [T0]
    group = silence_group(lambda: clock[0])
    runner = CliRunner()
    db = str(tmp_path / "silences.db")
    added = runner.invoke(group, ["add", "--matcher", 'team="search"', "-m", 'model=~"gpt-4o.*"', "--for", "2h",
                                  "--comment", "prompt fix deploying", "--by", "ana", "--db", db])
    assert added.exit_code == 0, added.output
    assert added.output == ("silence 1 added until 2026-11-16 14:00 UTC; "
                            "end it early with: spendwatch silence expire 1\n")
    listed = runner.invoke(group, ["list", "--db", db])
    assert listed.output == ('1\tactive\t2026-11-16 12:00 UTC → 2026-11-16 14:00 UTC\tteam="search" '
                             'model=~"gpt-4o.*"\tby ana: prompt fix deploying\n')
    clock[0] += 600
    expired = runner.invoke(group, ["expire", "1", "--db", db])
    assert expired.exit_code == 0 and expired.output == "silence 1 ended at 2026-11-16 12:10 UTC\n"
    assert "no silences in force" in runner.invoke(group, ["list", "--db", db]).output
    assert "\texpired\t" in runner.invoke(group, ["list", "--all", "--db", db]).output
    missing = runner.invoke(group, ["expire", "9", "--db", db])
    assert missing.exit_code == 1 and "no silence with id 9" in missing.output


@pytest.mark.parametrize(("args", "message"), [
    (["--matcher", "team=search", "--for", "2h", "--comment", "x"], "did you mean 'team=\"search\"'?"),
    (["--matcher", 'team="a"', "--for", "2 hours", "--comment", "x"], 'did you mean 2h?'),
    (["--matcher", 'team="a"', "--for", "2h"], "Missing option '--comment'"),
    (["--matcher", 'te am="a"', "--for", "2h", "--comment", "x"], "bad matcher"),
])
def test_bad_silence_input_says_what_would_work(tmp_path, args, message):
    result = CliRunner().invoke(silence_group(lambda: T0), ["add", *args, "--db", str(tmp_path / "s.db")])
    assert result.exit_code == 2 and message in result.output
    assert SilenceStore(tmp_path / "s.db").all() == []


def test_the_pasted_silence_command_from_an_alert_silences_that_alert(tmp_path):
    import shlex

    from detector.notify.render import silence_command

    record = replace(firing(T0), labels={"team": "search", "feature": 'it\'s "quoted" $(rm)', "model": "gpt-4o"})
    words = shlex.split(silence_command(record.rule, record.labels))
    assert words[:3] == ["spendwatch", "silence", "add"]
    db = str(tmp_path / "s.db")
    result = CliRunner().invoke(silence_group(lambda: T0), [*words[2:], "--db", db])
    assert result.exit_code == 0, result.output
    [silence] = SilenceStore(db).all()
    from detector.alerts.lifecycle import alert_labels
    assert silence.mutes(alert_labels(record), T0 + 60)
    assert not silence.mutes(alert_labels(firing(T0)), T0 + 60)


def test_the_package_exports_a_sorted_public_api():
    import detector.alerts as alerts

    assert alerts.__all__ == sorted(alerts.__all__)
    assert [name for name in alerts.__all__ if not hasattr(alerts, name)] == []
