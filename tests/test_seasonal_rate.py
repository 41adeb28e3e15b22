"""SeasonalRate: quiet through the working week and its bursts, fast on a runaway or a surge."""

from __future__ import annotations

import math

import numpy as np
import orjson
import pytest

from detector.models import seasonal_rate
from detector.models.seasonal_rate import (
    LEARNING,
    SHIFTED,
    WATCHING,
    SeasonalRate,
    noise_fit,
)

MONDAY = 1_794_787_200 // 60  # 2026-11-16T00:00Z, a Monday, in minutes
DAY = 1440
PEAK = 60.0  # requests a minute at a weekday noon; the 3 am trough is a tenth of it
KNOTS_H = [0, 3, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24]
LEVEL = [0.12, 0.10, 0.12, 0.35, 0.90, 1.0, 1.0, 0.90, 0.60, 0.40, 0.22, 0.12]


def rates(days: int, seed: int, peak: float = PEAK, bursts_per_day: float = 3.0) -> tuple[np.ndarray, list]:
    """Expected requests per minute: day shape, quiet weekends, growth, wobble, wander and bursts."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * DAY)
    rate = peak * np.interp((t % DAY) / 60, KNOTS_H, LEVEL)
    rate *= np.where((t // DAY) % 7 >= 5, 0.4, 1.0)  # weekends at 40 % of weekdays
    rate *= 1.05 ** (t / DAY / 7) * np.repeat(rng.lognormal(0, 0.06, days), DAY)
    wander, shocks = np.empty(t.size), rng.normal(0, 0.1 * math.sqrt(1 - 0.8**2), t.size)
    level = 0.0
    for i, shock in enumerate(shocks.tolist()):  # AR(1) wandering of the log rate, minute to minute
        level = 0.8 * level + shock
        wander[i] = level
    rate *= np.exp(wander)
    bursts = []
    for start in rng.integers(0, t.size, rng.poisson(bursts_per_day * days)).tolist():
        length, factor = int(rng.integers(2, 11)), float(rng.uniform(2, 4))
        if all(abs(start - s) > 40 for s, _, _ in bursts):  # benign bursts of 2–10 minutes, apart
            rate[start : start + length] *= factor
            bursts.append((start, length, factor))
    return rate, bursts


def feed(model: SeasonalRate, amounts: np.ndarray, first: int = 0) -> tuple[list, list]:
    """One update per minute from minute ``first``; returns (alarms, resolutions) as minute indices."""
    alarms, resolved = [], []
    for i, amount in enumerate(amounts.tolist(), start=first):
        was = model.phase
        model.update(amount, (MONDAY + i) * 60.0 + 0.5)
        if model.phase == SHIFTED and was != SHIFTED:
            alarms.append((i - 1, model.shift()))
        elif was == SHIFTED and model.phase != SHIFTED:
            resolved.append(i - 1)
    return alarms, resolved


@pytest.fixture(scope="module")
def weeks():
    """Two clean weeks, a model that watched them, and its state at the start of week two."""
    rate, bursts = rates(14, seed=7)
    counts = np.random.default_rng(8).poisson(rate).astype(float)
    model = SeasonalRate()
    feed(model, counts[: 8 * DAY])
    week_two = orjson.loads(orjson.dumps(model.to_state()))
    alarms, _ = feed(model, counts[8 * DAY :], first=8 * DAY)
    return {"rate": rate, "counts": counts, "bursts": bursts, "state": week_two, "model": model, "alarms": alarms}


def incident(weeks, start: int, minutes: int, factor: float, seed: int, **params) -> tuple[list, list, SeasonalRate]:
    """Week two again from its saved state, with the rate times ``factor`` from minute ``start``."""
    counts = weeks["counts"].copy()
    rng = np.random.default_rng(seed)
    counts[start : start + minutes] = rng.poisson(weeks["rate"][start : start + minutes] * factor)
    state = dict(weeks["state"], **params)
    model = SeasonalRate.from_state(state)
    alarms, resolved = feed(model, counts[8 * DAY : start + minutes + 120], first=8 * DAY)
    return alarms, resolved, model


# -- quiet ----------------------------------------------------------------------
def test_two_weeks_of_rhythm_growth_and_benign_bursts_never_page(weeks):
    model = SeasonalRate(ratio_below=0.5)
    alarms, _ = feed(model, weeks["counts"])
    assert alarms == []
    assert weeks["alarms"] == []
    assert len(weeks["bursts"]) >= 25  # the bursts were there: up to 10 minutes at ×2–×4


def test_the_baseline_follows_the_ramp_the_weekend_and_growth(weeks):
    model = weeks["model"]  # has watched two weeks; now asked about week three
    for day, hour in ((14, 3.5), (14, 9.0), (15, 12.0), (19, 12.0), (20, 3.5)):
        minute = int(day * DAY + hour * 60)
        truth = PEAK * np.interp(hour, KNOTS_H, LEVEL) * (0.4 if day % 7 >= 5 else 1.0) * 1.05 ** (day / 7)
        assert model.expected((MONDAY + minute) * 60.0) == pytest.approx(truth, rel=0.2)


# -- detection --------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_runaway_at_3am_pages_within_minutes_and_resolves(weeks, seed):
    start = 9 * DAY + 3 * 60  # Wednesday 03:00, about 6 requests a minute
    alarms, resolved, _ = incident(weeks, start, 60, 5.0, seed)
    assert len(alarms) == 1
    minute, shift = alarms[0]
    assert minute - start + 1 <= 13  # the burst tolerance (12 minutes) plus a minute at most
    assert abs(shift.onset_ts - (MONDAY + start) * 60) <= 120
    assert shift.direction == +1 and shift.ratio == pytest.approx(5.0, rel=0.25)
    assert len(resolved) == 1 and 0 <= resolved[0] - (start + 60) <= 10


def test_a_surge_at_the_daily_peak_pages(weeks):
    start = 10 * DAY + 12 * 60  # Thursday noon, about 60 requests a minute
    alarms, resolved, _ = incident(weeks, start, 45, 3.0, seed=4)
    assert len(alarms) == 1
    minute, shift = alarms[0]
    assert minute - start + 1 <= 13
    assert shift.ratio == pytest.approx(3.0, rel=0.2)
    assert shift.excess == pytest.approx(2 * shift.minutes * shift.expected_per_minute, rel=0.3)
    assert len(resolved) == 1


def test_a_drop_pages_only_where_configured(weeks):
    start = 9 * DAY + 12 * 60
    alarms, resolved, _ = incident(weeks, start, 60, 0.3, seed=5, ratio_below=0.5)
    assert len(alarms) == 1
    minute, shift = alarms[0]
    assert shift.direction == -1 and shift.ratio == pytest.approx(0.3, rel=0.25)
    assert minute - start + 1 <= 20
    assert len(resolved) == 1
    assert incident(weeks, start, 60, 0.3, seed=5)[0] == []  # ratio_below unset: drops are not watched


def test_silence_is_heard_through_advance_and_through_the_next_event(weeks):
    start = 9 * DAY + 12 * 60
    model = SeasonalRate.from_state(dict(weeks["state"], ratio_below=0.5))
    feed(model, weeks["counts"][8 * DAY : start], first=8 * DAY)
    for minute in range(start, start + 30):  # nothing arrives; a timer calls advance()
        model.advance((MONDAY + minute) * 60.0)
    assert model.phase == SHIFTED and model.shift().direction == -1
    assert model.shift().observed_per_minute == 0

    quiet = SeasonalRate.from_state(dict(weeks["state"], ratio_below=0.5))
    feed(quiet, weeks["counts"][8 * DAY : start], first=8 * DAY)
    quiet.update(1.0, (MONDAY + start + 30) * 60.0)  # no timer: the next event closes the gap
    assert quiet.phase == SHIFTED
    assert quiet.shift().onset_ts == pytest.approx((MONDAY + start) * 60, abs=120)


def test_a_gap_longer_than_the_back_fill_cap_is_not_evidence(weeks):
    start = 9 * DAY + 12 * 60
    model = SeasonalRate.from_state(dict(weeks["state"], ratio_below=0.5, max_gap_minutes=5))
    feed(model, weeks["counts"][8 * DAY : start], first=8 * DAY)
    model.update(1.0, (MONDAY + start + 180) * 60.0)  # three hours of nothing: the source was off
    assert model.phase == WATCHING and model.score() == 0


# -- warm-up ---------------------------------------------------------------------
def test_no_alarm_in_the_first_day_even_at_ten_times_the_rate(weeks):
    counts = weeks["counts"][: 2 * DAY].copy()
    counts[10 * 60 : 20 * 60] *= 10
    model = SeasonalRate()
    alarms, _ = feed(model, counts[:DAY])
    assert alarms == [] and model.phase == LEARNING
    feed(model, counts[DAY : DAY + 2], first=DAY)
    assert model.phase == WATCHING


@pytest.mark.parametrize(("day", "pages"), [(1, False), (2, True)])
def test_a_bucket_judges_only_from_its_second_visit(weeks, day, pages):
    """A runaway at 03:00 on Tuesday meets an hour seen once; on Wednesday, one seen twice."""
    counts = weeks["counts"][: 3 * DAY + 4 * 60].copy()
    start = day * DAY + 3 * 60
    counts[start : start + 60] = np.random.default_rng(day).poisson(weeks["rate"][start : start + 60] * 5)
    alarms, _ = feed(SeasonalRate(), counts)
    assert [minute // DAY for minute, _ in alarms] == ([day] if pages else [])


def test_the_first_weekend_borrows_the_weekday_profile_for_upward_tests_only(weeks):
    counts = weeks["counts"][: 6 * DAY].copy()  # to Sunday 00:00: Saturday is the first weekend day
    start = 5 * DAY + 3 * 60
    counts[start : start + 60] = np.random.default_rng(9).poisson(weeks["rate"][start : start + 60] * 5)
    alarms, _ = feed(SeasonalRate(ratio_below=0.5), counts)
    assert [(minute // DAY, shift.direction) for minute, shift in alarms] == [(5, +1)]


# -- bursts -----------------------------------------------------------------------
@pytest.mark.parametrize("hour", [3, 9, 12, 21])
def test_ten_minutes_at_four_times_the_rate_is_a_burst_not_an_alarm(weeks, hour):
    start = 9 * DAY + hour * 60
    alarms, _, model = incident(weeks, start, 10, 4.0, seed=hour)
    assert alarms == []
    assert model.score() < 0.5  # and it left no evidence behind


# -- slow series -------------------------------------------------------------------
SLOW_PEAK = 1.0  # requests a minute at a weekday noon: a dozen in the 12-minute window


@pytest.fixture(scope="module")
def slow_weeks():
    """Two clean weeks of a slow feature (with the same bursts), watched like ``weeks``."""
    rate, bursts = rates(14, seed=17, peak=SLOW_PEAK)
    counts = np.random.default_rng(18).poisson(rate).astype(float)
    model = SeasonalRate()
    feed(model, counts[: 8 * DAY])
    week_two = orjson.loads(orjson.dumps(model.to_state()))
    alarms, _ = feed(model, counts[8 * DAY :], first=8 * DAY)
    return {"rate": rate, "counts": counts, "bursts": bursts, "state": week_two, "alarms": alarms}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_doubling_that_lasts_on_a_slow_series_pages_on_the_span_since_its_onset(slow_weeks, seed, monkeypatch):
    start = 9 * DAY + 13 * 60  # Wednesday 13:00, about a request a minute
    alarms, _, _ = incident(slow_weeks, start, 150, 2.0, seed)
    assert slow_weeks["alarms"] == []  # the clean week two is quiet
    assert len(alarms) == 1
    minute, shift = alarms[0]
    assert seasonal_rate.LONG_MINUTES <= minute - start + 1 <= 150
    assert shift.direction == +1 and shift.ratio == pytest.approx(2.0, rel=0.3)
    # The window alone cannot tell: a dozen requests never show ×1.5 at their bound.
    monkeypatch.setattr(seasonal_rate, "LONG_MINUTES", math.inf)
    assert incident(slow_weeks, start, 150, 2.0, seed)[0] == []


@pytest.mark.parametrize("seed", [3, 13])
def test_a_thin_window_does_not_reset_a_run_the_span_since_its_onset_still_carries(slow_weeks, seed, monkeypatch):
    start = 9 * DAY + 11 * 60  # Wednesday 11:00: the test crosses its threshold before an hour has passed
    alarms, _, _ = incident(slow_weeks, start, 150, 2.0, seed)
    assert len(alarms) == 1 and alarms[0][0] - start + 1 <= 90
    # Reset on the window's word (a dozen requests showing under ×1.5), the same doubling is missed.
    monkeypatch.setattr(seasonal_rate, "THIN_WINDOW", 0.0)
    assert incident(slow_weeks, start, 150, 2.0, seed)[0] == []


@pytest.mark.parametrize("wary, learns", [(seasonal_rate.WARY_KNOWN, False), (0.5, True)])
def test_in_a_known_hour_the_baseline_stops_learning_at_a_quarter_of_the_threshold(slow_weeks, wary, learns,
                                                                                  monkeypatch):
    monkeypatch.setattr(seasonal_rate, "WARY_KNOWN", wary)
    model = SeasonalRate.from_state(slow_weeks["state"])
    feed(model, slow_weeks["counts"][8 * DAY : 9 * DAY + 13 * 60], first=8 * DAY)
    counts = np.random.default_rng(2).poisson(slow_weeks["rate"] * 2.0)  # a doubling from Wednesday 13:00
    leaning = []  # the level's change over each minute that began with the upward test between h/4 and h/2
    for minute in range(9 * DAY + 13 * 60, 9 * DAY + 15 * 60):
        s_up, level = model.a[seasonal_rate.S_UP], model.level
        model.update(float(counts[minute]), (MONDAY + minute) * 60.0 + 0.5)
        if model.phase == WATCHING and model.config.h / 4 <= s_up < model.config.h / 2:
            leaning.append(model.level - level)
    assert len(leaning) >= 5
    assert any(change != 0 for change in leaning) is learns


def test_two_bursts_half_an_hour_apart_on_a_slow_series_are_not_a_lasting_excess(slow_weeks):
    counts = slow_weeks["counts"].copy()
    rng = np.random.default_rng(5)
    start = 10 * DAY + 11 * 60  # Thursday 11:00
    for first in (start, start + 35, start + 70):  # three 8-minute bursts at ×4, with calm between
        counts[first : first + 8] = rng.poisson(slow_weeks["rate"][first : first + 8] * 4.0)
    model = SeasonalRate.from_state(slow_weeks["state"])
    alarms, _ = feed(model, counts[8 * DAY : start + 200], first=8 * DAY)
    assert alarms == []


# -- dollars ----------------------------------------------------------------------
def test_spend_as_a_compound_poisson_amount(weeks):
    rng = np.random.default_rng(11)
    rate = weeks["rate"].copy()
    start = 10 * DAY + 11 * 60
    rate[start : start + 60] *= 3
    counts = rng.poisson(rate)
    costs = rng.lognormal(math.log(0.01), 1.0, counts.sum())  # $ per request, heavy-tailed
    dollars = np.bincount(np.repeat(np.arange(counts.size), counts), weights=costs, minlength=counts.size)
    model = SeasonalRate()
    alarms, _ = feed(model, dollars)
    assert len(alarms) == 1
    minute, shift = alarms[0]
    assert minute - start + 1 <= 13 and shift.ratio == pytest.approx(3.0, rel=0.25)
    assert 0.01 < model.dispersion(0.1) < 0.2  # E[c²]/E[c] in dollars, not the 1 of a count


# -- state ------------------------------------------------------------------------
def test_state_round_trips_through_plain_json_and_continues_identically(weeks):
    start = 9 * DAY + 3 * 60
    counts = weeks["counts"].copy()
    counts[start : start + 30] *= 5
    a = SeasonalRate.from_state(weeks["state"])
    feed(a, counts[8 * DAY : start + 6], first=8 * DAY)  # mid-run: the runaway is six minutes old
    assert a.run
    b = SeasonalRate.from_state(orjson.loads(orjson.dumps(a.to_state())))
    for i in range(start + 6, start + 600):
        ts = (MONDAY + i) * 60.0 + 0.5
        a.update(float(counts[i]), ts)
        b.update(float(counts[i]), ts)
        assert a.to_state() == b.to_state()
    assert len(orjson.dumps(weeks["state"])) < 1500


def test_state_of_another_version_is_refused():
    state = SeasonalRate().to_state()
    state["v"] = 99
    with pytest.raises(ValueError, match="version 99"):
        SeasonalRate.from_state(state)


def test_rebaseline_adopts_the_new_level(weeks):
    start = 9 * DAY + 10 * 60
    counts = weeks["counts"].copy()
    counts[start:] = np.random.default_rng(12).poisson(weeks["rate"][start:] * 2.5)
    model = SeasonalRate.from_state(weeks["state"])
    alarms, _ = feed(model, counts[8 * DAY : start + 30], first=8 * DAY)
    assert len(alarms) == 1
    model.rebaseline((MONDAY + start + 30) * 60.0)
    assert model.phase == WATCHING
    alarms, _ = feed(model, counts[start + 30 :], first=start + 30)
    assert alarms == []


# -- event handling -----------------------------------------------------------------
def test_one_update_per_request_equals_one_per_minute_and_late_events_count_now():
    rng = np.random.default_rng(13)
    per_minute, per_event = SeasonalRate(), SeasonalRate()
    for minute in range(2 * DAY):
        n = int(rng.poisson(5))
        per_minute.update(float(n), (MONDAY + minute) * 60.0)
        for j in range(n):
            per_event.update(1.0, (MONDAY + minute) * 60.0 + 60.0 * j / n)
    assert per_event.to_state() == per_minute.to_state()
    per_event.update(1.0, (MONDAY + 10) * 60.0)  # a day late: it lands in the open minute
    assert per_event.m_x == per_minute.m_x + 1


# -- streaming statistics against numpy ---------------------------------------------------
def test_day_one_bucket_means_are_the_hourly_means(weeks):
    counts = weeks["counts"][:DAY]
    model = SeasonalRate()
    feed(model, np.append(counts, 0.0))
    hourly = counts.reshape(24, 60).mean(axis=1)
    assert model.prof[:24] == pytest.approx(hourly.tolist(), rel=1e-4)  # kept to six digits
    assert model.seen[:24] == [60] * 24 and model.seen[24:] == [0] * 24


def test_noise_fit_is_weighted_least_squares():
    rng = np.random.default_rng(14)
    mu = rng.uniform(1, 80, 500)
    y = 1.3 + 0.02 * mu + rng.normal(0, 0.5, 500)
    w = 0.99 ** np.arange(500)[::-1]  # exponential weights, newest heaviest
    sums = [float(np.sum(w * v)) for v in (np.ones(500), mu, mu * mu, y, y * mu)]
    design = np.column_stack([np.ones(500), mu]) * np.sqrt(w)[:, None]
    a, b = np.linalg.lstsq(design, y * np.sqrt(w), rcond=None)[0]
    assert noise_fit(*sums) == pytest.approx((a, b), rel=1e-9)


def test_learned_noise_matches_the_generating_process():
    """Poisson counts on a rate that wanders 15 % with lag-1 correlation 0.7: a ≈ 1, b ≈ 0.0225, ρ ≈ 0.7."""
    rng = np.random.default_rng(15)
    minutes = 6 * DAY
    base = np.interp((np.arange(minutes) % DAY) / 60, KNOTS_H, LEVEL) * 80
    log_wander = np.zeros(minutes)
    shocks = rng.normal(0, 0.15 * math.sqrt(1 - 0.7**2), minutes)
    for i in range(1, minutes):
        log_wander[i] = 0.7 * log_wander[i - 1] + shocks[i]
    counts = rng.poisson(base * np.exp(log_wander)).astype(float)
    model = SeasonalRate()
    feed(model, counts)
    a, b = model.noise()
    assert a == pytest.approx(1.0, abs=0.25)
    assert b == pytest.approx(0.15**2, rel=0.5)  # includes the profile's own error, so a little above
    assert model.persistence() == pytest.approx((1 + 0.7) / (1 - 0.7), rel=0.5)
