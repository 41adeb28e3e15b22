"""Detection on simulated traffic: incidents are caught, clean weeks stay quiet."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from detector.engine import Engine
from detector.events import Decoder
from detector.models import rate_profile
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


def test_a_nightly_job_that_stops_on_the_hour_does_not_page_as_a_runaway(monkeypatch):
    """The eval suite runs 01:00–04:00 at its full rate; a profile sliding towards the quiet 4 am expects half."""
    sim = simulate(days=4, seed=2, world=World.default().only(team="research", feature="eval-suite"))
    assert [r.summary for r in detect(sim) if r.status == "firing"] == []
    monkeypatch.setattr(rate_profile, "STEP", math.inf)  # the slide alone, as for people's traffic
    paged = [r for r in detect(sim) if r.status == "firing"]
    assert [(r.metric, r.detected_at) for r in paged] == [("request_rate", "2026-11-18T04:00:00Z")]


@pytest.mark.slow
def test_a_clean_simulated_week_raises_no_firing_record():
    records = detect(simulate(days=7, seed=11))
    assert [r.summary for r in records if r.status == "firing"] == []
