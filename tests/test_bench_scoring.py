"""The detection benchmark's scoring: matching alerts to incidents, false alarms, duplicates, the 3-sigma baseline."""

from __future__ import annotations

import math
import sys
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the bench/ package sits at the repository root

from bench.baseline3sigma import breaches, onsets, three_sigma_alerts
from bench.minutes import MinuteSums
from bench.oracle import requests_to_detect, share_requests_to_detect, true_shares
from bench.scenarios import TARGETS, suite
from bench.scoring import (
    GRACE_S,
    Alert,
    Window,
    match,
    outcome,
    per_thousand_series_days,
    summarize,
)
from bench.tables import beats
from detector.config import Settings
from detector.events import LlmRequest
from detector.pricing import PriceTable
from detector.simulate import DEFAULT_START, Incident, simulate

SUMMARIZE = {"team": "search", "feature": "summarize", "model": "gpt-4o-mini"}
ONSET, END = 10_000.0, 10_000.0 + 6 * 3600


def window(key: str = "w", target: dict[str, str] | None = None, start: float = ONSET, end: float = END,
           kind: str = "prompt_doubling", metric: str = "input_tokens_per_request") -> Window:
    return Window(key, kind, metric, 2.0, target or SUMMARIZE, start, end)


def alert(id_: str, at: float, labels: dict[str, str] | None = None, metric: str = "input_tokens_per_request",
          severity: str = "critical", related: tuple[str, ...] = ()) -> Alert:
    return Alert(id_, metric, labels or SUMMARIZE, severity, at, related)


# -- matching ---------------------------------------------------------------
def test_an_alert_matches_from_onset_to_end_plus_grace_and_not_outside():
    w = window()
    alerts = [alert("before", ONSET - 1), alert("at-onset", ONSET), alert("in-grace", END + GRACE_S),
              alert("after-grace", END + GRACE_S + 1)]
    m = match(alerts, [w])
    assert [a.id for a in m.by_window["w"]] == ["at-onset", "in-grace"]
    assert [a.id for a in m.unmatched] == ["before", "after-grace"]


def test_labels_must_agree_on_every_shared_key_and_share_at_least_one():
    w = window(target={"team": "search", "feature": "summarize"})  # a tier shift names no model
    coarser = alert("team", ONSET + 60, {"team": "search"})
    finer = alert("model", ONSET + 60, {"team": "search", "feature": "summarize", "model": "gpt-4o"})
    other_feature = alert("other", ONSET + 60, {"team": "search", "feature": "answer"})
    unrelated = alert("gpu", ONSET + 60, {"cluster": "inference", "node": "inf-h100-2"})
    m = match([coarser, finer, other_feature, unrelated], [w])
    assert sorted(a.id for a in m.by_window["w"]) == ["model", "team"]
    assert sorted(a.id for a in m.unmatched) == ["gpu", "other"]


def test_an_alert_matching_two_incidents_goes_to_the_more_specific_then_the_same_metric():
    by_feature = window("feature", {"team": "search", "feature": "summarize"}, kind="tier_shift", metric="tier_mix")
    by_series = window("series", SUMMARIZE)
    m = match([alert("a", ONSET + 60)], [by_feature, by_series])
    assert [a.id for a in m.by_window["series"]] == ["a"] and m.by_window["feature"] == []

    same_place = window("retries", SUMMARIZE, kind="retry_storm", metric="retry_rate")
    m = match([alert("r", ONSET + 60, metric="retry_rate")], [by_series, same_place])
    assert [a.id for a in m.by_window["retries"]] == ["r"] and m.by_window["series"] == []


def test_records_sharing_an_id_are_one_alert_and_a_record_naming_others_counts_once():
    merged = alert("a", ONSET + 60, related=("cost_per_request", "spend_rate"))
    resent = alert("a", ONSET + 120)
    second = alert("b", ONSET + 600)
    m = match([second, resent, merged], [window()])
    assert [a.id for a in m.by_window["w"]] == ["a", "b"]
    o = outcome(window(), m.by_window["w"], None, np.zeros(1), int(ONSET // 60))
    assert o.duplicates == 1


# -- outcomes and rows --------------------------------------------------------
def test_delay_requests_and_dollars_leaked_before_detection():
    w = window(start=600.0, end=4200.0)
    requests = np.array([500.0, 600.0, 650.0, 700.0, 899.0, 900.0, 1000.0])
    excess = np.array([1.0, 2.0, 3.0, 4.0, 5.0])  # $ above the clean week in minutes 10, 11, …
    o = outcome(w, [alert("a", 870.0)], requests, excess, first_minute=10)  # half way through minute 14
    assert o.detected and o.delay_min == pytest.approx(4.5)
    assert o.requests == 3  # 600, 650, 700: not the one before onset nor those after detection
    assert o.leaked_usd == pytest.approx(1 + 2 + 3 + 4 + 5 * 0.5)
    missed = outcome(w, [], requests, excess, first_minute=10)
    assert not missed.detected and missed.delay_min is None and missed.leaked_usd == pytest.approx(15.0)


def test_a_row_reports_recall_quantiles_and_duplicates_over_its_incidents():
    windows = [window(f"w{i}", start=ONSET + i * 86_400, end=END + i * 86_400) for i in range(4)]
    delays_min = [2, 4, 10]
    alerts = [alert(f"a{i}", w.start_s + d * 60) for i, (w, d) in enumerate(zip(windows, delays_min, strict=False))]
    alerts.append(alert("dup", windows[0].start_s + 3600))
    m = match(alerts, windows)
    row = summarize([outcome(w, m.by_window[w.key], None, np.zeros(1), 0) for w in windows])
    assert (row.incidents, row.detected, row.recall, row.duplicates) == (4, 3, 0.75, 1)
    assert row.delay_median_min == pytest.approx(4.0)
    assert row.delay_p90_min == pytest.approx(float(np.quantile(delays_min, 0.9)))


def test_false_alarms_per_thousand_series_days_by_severity():
    unmatched = [alert("a", 1.0), alert("b", 2.0, severity="warning"), alert("c", 3.0, severity="info")]
    assert per_thousand_series_days(unmatched, 750.0) == pytest.approx(4.0)
    assert per_thousand_series_days(unmatched, 750.0, "critical") == pytest.approx(1000 / 750)
    with pytest.raises(ValueError, match="series_days must be positive, got 0"):
        per_thousand_series_days(unmatched, 0.0)


def test_beating_the_baseline_counts_recall_above_chance_then_delay():
    windows = [window(f"w{i}", start=ONSET + i * 86_400, end=END + i * 86_400) for i in range(2)]
    noisy = [alert(f"n{i}", w.start_s + 3 * 3600) for i, w in enumerate(windows)]  # fires at random, hits both
    careful = [alert("c0", windows[0].start_s + 120)]
    rows = {name: summarize([outcome(w, match(a, windows).by_window[w.key], None, np.zeros(1), 0) for w in windows])
            for name, a in (("noisy", noisy), ("careful", careful))}
    assert rows["noisy"].recall == 1.0 and rows["careful"].recall == 0.5
    assert not beats(rows["careful"], rows["noisy"])  # raw recall alone favours the noisy one …
    # … but on the same windows of a clean week the noisy one hits both by luck, the careful one none
    assert beats(rows["careful"], rows["noisy"], sw_chance=0.0, bl_chance=1.0)


# -- the 3-sigma baseline -----------------------------------------------------
def test_three_sigma_flags_a_jump_beyond_three_trailing_deviations_once_per_run():
    rng = np.random.default_rng(5)
    x = 100 + rng.normal(0, 2, 60)
    x[40:44] = 130  # four bins far above normal, then back
    hit, mean = breaches(x, window=30, min_history=6)
    assert onsets(hit).tolist() == [40]  # one firing for the run, at its first bin
    assert hit[40] and not hit[:40].any() and not hit[44:].any()
    assert mean[40] == pytest.approx(float(x[10:40].mean()))


def test_three_sigma_needs_history_and_ignores_empty_bins():
    x = np.array([np.nan, 5.0, 5.1, 4.9, 50.0, np.nan, 5.0])
    hit, _ = breaches(x, window=10, min_history=4)
    assert not hit.any()  # only three valid bins before the jump
    hit, _ = breaches(x, window=10, min_history=3)
    assert hit.tolist() == [False, False, False, False, True, False, False]


def test_the_baseline_fires_on_a_doubled_prompt_from_events_with_the_series_labels():
    rng = np.random.default_rng(11)
    events = []
    for minute in range(24 * 60):
        for _ in range(10):
            factor = 2.0 if minute >= 20 * 60 else 1.0
            tokens = int(math.exp(math.log(1000) + 0.3 * rng.standard_normal()) * factor)
            events.append(LlmRequest(ts=minute * 60 + float(rng.uniform(0, 60)), model="gpt-4o-mini",
                                     input_tokens=tokens, output_tokens=100, team="search", feature="summarize"))
    sums = MinuteSums(PriceTable.packaged(), 0.0, 24 * 60)
    sums.add(events)
    fired = three_sigma_alerts(sums, Settings())
    prompt = [a for a in fired if a.metric == "input_tokens_per_request"]
    assert prompt and prompt[0].detected_s == 20 * 3600 + 300  # the end of the first doubled 5-minute bin
    assert dict(prompt[0].labels) == {"team": "search", "feature": "summarize", "model": "gpt-4o-mini"}
    assert [a for a in fired if a.metric == "request_rate"] == []  # 50 requests in every bin: nothing to see


# -- the oracle and the suite ---------------------------------------------------
def test_the_oracle_needs_fewer_requests_for_a_larger_shift():
    rng = np.random.default_rng(2)
    z = rng.standard_normal(2000)
    mu0, sigma = math.log(2000), 0.6
    n2 = requests_to_detect(np.exp(mu0 + math.log(2.0) + sigma * z), mu0, mu0 + math.log(2.0), sigma, 14.0)
    n15 = requests_to_detect(np.exp(mu0 + math.log(1.5) + sigma * z), mu0, mu0 + math.log(1.5), sigma, 14.0)
    assert n2 is not None and n15 is not None and n2 < n15
    assert requests_to_detect(np.exp(mu0 + sigma * z[:200]), mu0, mu0 + math.log(2.0), sigma, 14.0) is None


def test_the_share_oracle_knows_the_shares_the_simulator_draws():
    """Failed and retried shares of a busy series, before and inside a four-hour incident of each kind."""
    target = {"team": "search", "feature": "rerank-embed", "model": "text-embedding-3-small"}
    start = DEFAULT_START + timedelta(hours=8)
    for kind, magnitude, hit in (("error_spike", 0.2, "failed"), ("retry_storm", 0.3, "retry")):
        sim = simulate(days=1, seed=5, incidents=[Incident(kind, start, start + timedelta(hours=4), magnitude, target)])
        inside, before = [], []
        lo, hi = start.isoformat()[:19], (start + timedelta(hours=4)).isoformat()[:19]
        for e in sim.events():
            if e.get("feature") == "rerank-embed":
                flag = e["status"] != "ok" if hit == "failed" else e["attempt"] > 1
                (inside if lo <= e["ts"][:19] < hi else before).append(flag)
        p0, p1 = true_shares(kind, magnitude, target)
        for flags, share in ((before, p0), (inside, p1)):
            n = len(flags)
            assert n > 3000
            assert abs(np.mean(flags) - share) < 4 * math.sqrt(share * (1 - share) / n), (kind, share)
        assert share_requests_to_detect(np.array(inside), p0, p1, 12.0) is not None
        assert share_requests_to_detect(np.array(before[:3000]), p0, p1, 12.0) is None


def test_the_suite_puts_every_kind_and_magnitude_on_series_that_cannot_be_confused():
    weeks = suite([1, 2])
    planned = [p for w in weeks for p in w.planned]
    assert {(p.incident.kind, p.size) for p in planned} == {(k, s) for k in TARGETS for s in ("larger", "smaller")}
    for w in weeks:
        for i, a in enumerate(w.planned):
            for b in w.planned[i + 1:]:
                if a.place == b.place and a.incident.end and b.incident.end:
                    grace = timedelta(seconds=GRACE_S)
                    assert a.incident.end + grace <= b.incident.start or b.incident.end + grace <= a.incident.start
