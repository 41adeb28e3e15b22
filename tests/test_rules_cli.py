"""``spendwatch rules``: check, test (promtool-style unit tests) and backtest, through the click group."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
from click.testing import CliRunner

from detector.rules.cli import rules

RULES = Path(__file__).resolve().parents[1] / "rules"
T0 = 1_793_491_200  # 2026-11-01T00:00:00Z


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(rules, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_passes_the_shipped_rules_and_fails_a_bad_file(tmp_path: Path) -> None:
    assert invoke("check", str(RULES)) == (0, f"ok: {RULES}\n", "")
    bad = tmp_path / "bad.yaml"
    bad.write_text("groups:\n  - name: g\n    rules:\n      - {id: a, alert: A, expr: {metric: spend_rat, "
                   "budget: {monthly_usd: 1}}}\n")
    code, out, err = invoke("check", str(bad))
    assert code == 1 and err == "1 problem found\n"
    assert out == (f'{bad}:4:42: group "g", rule "A": expr.metric: unknown metric "spend_rat" (expected one of '
                   "input_tokens_per_request, output_tokens_per_request, cost_per_request, request_rate, spend_rate, "
                   "tier_mix, retry_rate, error_rate, cache_hit_rate, gpu_utilization, or usage:<name>); "
                   'did you mean "spend_rate"?\n')


def test_the_shipped_rule_tests_pass() -> None:
    code, out, err = invoke("test", str(RULES / "tests"))
    assert (code, out) == (0, "")
    assert err.splitlines() == [f"ok: {RULES / 'tests' / 'search_test.yaml'} (5 checks)",
                                f"ok: {RULES / 'tests' / 'thresholds_test.yaml'} (5 checks)"]


def test_a_wrong_expectation_fails_with_expected_and_found(tmp_path: Path) -> None:
    text = (RULES / "tests" / "thresholds_test.yaml").read_text().replace("thresholds.rules.yaml", str(RULES / "tests" / "thresholds.rules.yaml"))
    wrong = tmp_path / "wrong_test.yaml"
    wrong.write_text(text.replace("      - eval_time: 35m", "      - eval_time: 45m"))  # firing by then
    code, out, err = invoke("test", str(wrong))
    assert code == 1 and err.splitlines()[-1] == "1 failure in 5 checks"
    assert out == (f'{wrong}:16:9: test "an error storm pages after `for`, and resolves after keep_firing_for", '
                   'eval_time 45m, alertname "ErrorRateHigh": unexpected alert with labels {feature="answer", '
                   'model="gpt-4o", provider="openai", team="search"} (fired at 2026-11-02T00:38:00Z, '
                   "0.4 of answer requests to openai/gpt-4o fail (threshold 0.1), and failed requests are still billed)\n")
    missing = tmp_path / "missing_test.yaml"
    missing.write_text(text.replace("feature: answer, model", "feature: answers, model", 1))
    code, out, _ = invoke("test", str(missing))
    assert code == 1 and out.count("\n") == 2
    assert out.splitlines()[0] == (
        f'{missing}:19:9: test "an error storm pages after `for`, and resolves after keep_firing_for", eval_time 40m, '
        'alertname "ErrorRateHigh": expected an alert with labels {feature="answers", model="gpt-4o", '
        'provider="openai", team="search"}, got {feature="answer", model="gpt-4o", provider="openai", team="search"}')


def test_a_bad_test_file_is_reported_with_its_line_and_column(tmp_path: Path) -> None:
    bad = tmp_path / "bad_test.yaml"
    bad.write_text(f"rule_files: ['{RULES / 'default.yaml'}']\ntests:\n  - name: t\n    input_series:\n"
                   "      - series: 'error_rate{team=\"a\"}'\n        values: '1x3 banana'\n")
    code, out, _ = invoke("test", str(bad))
    assert code == 1
    assert out == (f'{bad}:6:17: bad value "banana" (expected a number, _, axn, a+bxn, a-bxn or _xn)\n')


def test_backtest_counts_fires_and_prices_them_as_json(tmp_path: Path) -> None:
    rule_file = tmp_path / "r.yaml"
    rule_file.write_text("groups:\n  - name: g\n    rules:\n      - id: t.errors\n        alert: Errors\n"
                         "        expr: {metric: error_rate, by: [team], threshold: {statistic: share, window: 5m, "
                         "above: 0.2}}\n")
    events = tmp_path / "events.jsonl"
    lines = []
    for minute in range(180):  # two error bursts of 20 minutes, an hour apart
        burst = 30 <= minute < 50 or 110 <= minute < 130
        for j in range(10):
            lines.append(orjson.dumps({"ts": T0 + minute * 60 + j * 6, "model": "gpt-4o", "input_tokens": 1000,
                                       "output_tokens": 100, "team": "a",
                                       "status": "error" if burst and j % 2 else "ok"}))
    events.write_bytes(b"\n".join(lines) + b"\n")
    code, out, _ = invoke("backtest", str(rule_file), str(events), "--json")
    assert code == 0
    report = json.loads(out)
    assert (report["events"], report["rejected"]) == (1800, 0)
    [tally] = report["rules"]
    assert tally["fired"] == 2 and tally["first_times"] == ["2026-11-01T00:33:00Z", "2026-11-01T01:53:00Z"]
    assert tally["excess_usd"] > 0 and tally["leaked_usd"] == 0  # for: 0, fired at the first breaching minute
    assert tally["verdict"] == "fired 2× in 3 hours: more than daily; consider raising its threshold or a longer for"
    code, out, _ = invoke("backtest", str(rule_file), str(events))
    assert code == 0 and "t.errors: fired 2× in 3 hours" in out
