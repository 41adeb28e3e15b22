"""The `spendwatch` command end to end: files in, records, dead letters and a summary out."""

from __future__ import annotations

import gzip
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.simulate import DEFAULT_START, World, parse_incident, simulate, write_simulation

INCIDENT = "prompt_doubling@2d14h~3h:team=search,feature=answer,model=claude-sonnet-4-5"
BAD_LINES = [
    b"{not json",
    b'{"ts": "2026-11-16T10:00:00Z", "model": "gpt-4o", "input_tokens": -3, "output_tokens": 1}',
    b'{"ts": "2026-11-16T10:00:00Z", "model": "gpt-4o", "input_tokens": 3, "output_tokens": 1, "category": "ads"}',
]
UNPRICED = b'{"ts": "2026-11-16T10:00:00Z", "model": "in-house-7b", "input_tokens": 30, "output_tokens": 1}'


@pytest.fixture(scope="module")
def events_file(tmp_path_factory) -> Path:
    """Three days of the search team's traffic with a prompt doubling, plus bad and unpriced lines."""
    path = tmp_path_factory.mktemp("events") / "events.jsonl"
    sim = simulate(days=3, incidents=[parse_incident(INCIDENT, DEFAULT_START)], world=World.default().only(team="search"))
    write_simulation(sim, path)
    lines = path.read_bytes().splitlines()
    lines[100:100] = BAD_LINES + [UNPRICED]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run(*args: str, input: bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_replay_writes_records_dead_letters_and_a_summary(events_file, tmp_path):
    out = tmp_path / "anomalies.jsonl"
    result = run("replay", str(events_file), "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert [r["status"] for r in records] == ["firing", "resolved"]
    assert records[0]["labels"] == {"team": "search", "feature": "answer", "model": "claude-sonnet-4-5"}
    assert records[0]["summary"] in result.output  # each alert printed as one readable line
    dead = [orjson.loads(line) for line in (tmp_path / "anomalies.jsonl.deadletter.jsonl").read_bytes().splitlines()]
    assert [d["line"] for d in dead] == [101, 102, 103]
    assert [d["code"] for d in dead] == ["malformed_json", "negative_value", "unknown_category"]
    assert dead[1]["raw"] == BAD_LINES[1].decode()
    assert "input_tokens" in dead[1]["reason"]
    for text in ("malformed_json", "negative_value", "unknown_category", "anomalies fired / resolved"):
        assert text in result.output
    assert "unpriced: in-house-7b: 1 events" in result.output


def test_replay_reads_gzip_and_stdin_alike(events_file, tmp_path):
    gz = tmp_path / "events.jsonl.gz"
    gz.write_bytes(gzip.compress(events_file.read_bytes()))
    outs = []
    for source, stdin in ((str(gz), None), ("-", events_file.read_bytes())):
        out = tmp_path / f"out-{len(outs)}.jsonl"
        assert run("replay", source, "--out", str(out), "--quiet", input=stdin).exit_code == 0
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] and outs[0].count(b"\n") == 2


def test_version_says_whether_the_models_run_as_source_or_compiled():
    result = run("--version")
    assert result.exit_code == 0 and result.output.startswith("spendwatch, version ")
    assert result.output.rstrip().endswith("(models: source)")  # the compiled build says "(models: compiled)"


def test_replay_of_a_missing_file_exits_2_and_says_so(tmp_path):
    result = CliRunner().invoke(main, ["replay", str(tmp_path / "nope.jsonl")])
    assert result.exit_code == 2
    assert "nope.jsonl: no such file" in result.output


def test_a_bad_price_file_is_refused_before_any_work(events_file, tmp_path):
    prices = tmp_path / "prices.json"
    prices.write_text('{"gpt-4o": {"input_cost_per_token": -1, "output_cost_per_token": 0}}')
    result = CliRunner().invoke(main, ["replay", str(events_file), "--prices", str(prices)])
    assert result.exit_code == 2
    assert "prices.json" in result.output and "gpt-4o" in result.output


def test_simulate_is_deterministic_and_writes_its_ground_truth(tmp_path):
    for name in ("a", "b"):
        result = run("simulate", "--days", "1", "--incident", "retry_storm@14h", "--out", str(tmp_path / f"{name}.jsonl"))
        assert result.exit_code == 0, result.output
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    truth = orjson.loads((tmp_path / "a.truth.json").read_bytes())
    assert [i["kind"] for i in truth["incidents"]] == ["retry_storm"]


def test_simulate_refuses_an_unknown_incident_kind_and_lists_the_kinds(tmp_path):
    result = CliRunner().invoke(main, ["simulate", "--incident", "prompt_tripling@1d", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "prompt_doubling" in result.output and "slow_creep" in result.output


def test_demo_detects_its_incident_and_prints_spend(tmp_path):
    result = run("demo", "--days", "3", "--dir", str(tmp_path))
    assert result.exit_code == 0, result.output
    records = [orjson.loads(line) for line in (tmp_path / "anomalies.jsonl").read_bytes().splitlines()]
    assert [(r["status"], r["labels"]["feature"]) for r in records] == [("firing", "answer"), ("resolved", "answer")]
    for text in ("spend by category and team", "hosted_inference", "self_hosted_inference", "search", "total"):
        assert text in result.output
    assert (tmp_path / "truth.json").exists()


@pytest.mark.parametrize("command", [[], ["replay"], ["simulate"], ["demo"]])
def test_every_command_has_help(command):
    result = run(*command, "--help")
    assert result.exit_code == 0 and "Usage:" in result.output


def test_the_installed_entry_point_runs():
    result = subprocess.run(
        [str(Path(sys.executable).with_name("spendwatch")), "--help"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "replay" in result.stdout


def test_replay_with_a_slack_token_posts_the_alert_and_its_resolution_in_a_thread(events_file, tmp_path, monkeypatch):
    from slack_server import TOKEN, FakeSlack

    slack = FakeSlack().start()
    try:
        monkeypatch.setenv("SPENDWATCH_SLACK_TOKEN", TOKEN)
        monkeypatch.setenv("SPENDWATCH_SLACK_CHANNEL", "#ai-spend")
        monkeypatch.setenv("SPENDWATCH_SLACK_API_URL", slack.api_url)
        monkeypatch.setenv("SPENDWATCH_SLACK_OUTBOX", str(tmp_path / "outbox.db"))
        slack.fail("chat.postMessage", "429", times=1)  # rate limited once: retried, not lost
        result = run("replay", str(events_file), "--out", str(tmp_path / "a.jsonl"), "--quiet")
        assert result.exit_code == 0, result.output
        assert "Slack: 2 delivered" in result.output
        assert TOKEN not in result.output
        top = slack.top_level()
        assert len(top) == 1 and "search" in str(top[0].blocks) and top[0].edits == 1
        replies = [m for m in slack.messages if m.thread_ts is not None]
        assert len(replies) == 1 and replies[0].thread_ts == top[0].ts
        assert len(slack.calls("chat.update")) == 1
        # A second run over the same file sends nothing twice: the outbox remembers.
        again = run("replay", str(events_file), "--out", str(tmp_path / "b.jsonl"), "--quiet")
        assert "Slack: 0 delivered" in again.output
        assert len(slack.top_level()) == 1
    finally:
        slack.stop()


def test_rules_check_passes_the_shipped_rules_and_lists_every_problem_of_a_bad_file(tmp_path):
    repo_rules = Path(__file__).resolve().parents[1] / "rules"
    ok = run("rules", "check", str(repo_rules))
    assert ok.exit_code == 0, ok.output
    bad = tmp_path / "team.yaml"
    bad.write_text(
        "groups:\n  - name: g\n    rules:\n      - alert: X\n        id: a.b\n"
        "        expr: {metric: input_token_per_request, anomaly: {model: level_shift, ratio_above: 2}}\n"
        "        for: 5x\n"
    )
    result = CliRunner().invoke(main, ["rules", "check", str(bad)])
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.startswith(str(bad))]
    assert lines == [
        f'{bad}:6:24: group "g", rule "X": expr.metric: unknown metric "input_token_per_request" (expected one of '
        "input_tokens_per_request, output_tokens_per_request, cost_per_request, request_rate, spend_rate, tier_mix, "
        "retry_rate, error_rate, cache_hit_rate, gpu_utilization, or usage:<name>); "
        'did you mean "input_tokens_per_request"?',
        f'{bad}:7:14: group "g", rule "X": for: not a duration: "5x" (expected a Prometheus duration like 30s, 5m, '
        "1h30m or 7d)",
    ]


def test_the_command_starts_without_loading_faust_or_matplotlib() -> None:
    """Together they take over a second to import; only `worker`/`sink` and the digest charts need them."""
    probe = "import sys, detector.cli; print(sorted(m for m in ('faust', 'aiokafka', 'matplotlib') if m in sys.modules))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
