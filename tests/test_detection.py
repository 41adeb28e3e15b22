"""Detection on simulated traffic: incidents are caught, clean weeks stay quiet."""

from __future__ import annotations

from datetime import datetime

import pytest

from detector.engine import Engine
from detector.events import Decoder
from detector.pricing import PriceTable
from detector.replay import replay_lines
from detector.simulate import DEFAULT_START, World, parse_incident, simulate


def detect(sim):
    records = []
    summary = replay_lines(sim.lines(), Engine(PriceTable.packaged()), Decoder(), on_anomaly=records.append)
    assert summary.rejected == 0
    return records


def seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def test_a_prompt_doubling_is_caught_within_minutes_with_the_right_labels_and_ratio():
    spec = "prompt_doubling@3d14h~3h:team=search,feature=answer,model=claude-sonnet-4-5"
    incident = parse_incident(spec, DEFAULT_START)
    sim = simulate(days=4, incidents=[incident], world=World.default().only(team="search"))
    truth = sim.truth()["incidents"][0]
    records = detect(sim)
    firing = [r for r in records if r.status == "firing"]
    assert len(firing) == 1, [r.summary for r in firing]
    alert = firing[0]
    assert alert.labels == {"team": "search", "feature": "answer", "model": "claude-sonnet-4-5"}
    onset = seconds(truth["start"])
    assert abs(seconds(alert.started_at) - onset) <= 5 * 60
    assert 0 <= seconds(alert.detected_at) - onset <= 10 * 60
    assert alert.ratio == pytest.approx(2.0, rel=0.15)
    assert alert.excess_cost_usd_per_hour > 0 and alert.projected_month_usd > 0
    resolved = [r for r in records if r.status == "resolved"]
    assert [r.id for r in resolved] == [alert.id]
    assert 0 <= seconds(resolved[0].resolved_at) - seconds(truth["end"]) <= 15 * 60


@pytest.mark.slow
def test_a_clean_simulated_week_raises_no_firing_record():
    records = detect(simulate(days=7, seed=11))
    assert [r.summary for r in records if r.status == "firing"] == []
