"""Streaming statistics the models keep, checked against numpy on the same data at every prefix.

Each model keeps sufficient statistics instead of the data: exponentially
weighted sums by event time, moment sums, running means. Here the same data
is kept whole and the statistic recomputed by numpy from scratch after each
step, so an off-by-one decay or a mis-weighted sum shows at once.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from detector.models.drift import SlowCreep
from detector.models.gpu_utilization import UNIT, GpuUtilization
from detector.models.proportion import ProportionShift
from detector.models.seasonal_rate import noise_fit
from detector.models.usage_metric import UsageMetric

MONDAY = 1_794_787_200.0  # 2026-11-16T00:00Z
HOUR = 3600.0


def test_slow_creep_recent_and_baseline_are_event_time_ew_means_of_every_request():
    rng = np.random.default_rng(1)
    # 60 hours, a few of them silent, 0–40 requests each; log sizes uniform in [6, 8] so none is clipped.
    per_hour = rng.integers(0, 40, 60)
    per_hour[[5, 6, 30]] = 0
    hours = np.repeat(np.arange(60), per_hour)
    ts = MONDAY + hours * HOUR + np.sort(rng.uniform(0, HOUR, hours.size))
    ts.sort()
    logs = rng.uniform(6.0, 8.0, hours.size)
    model = SlowCreep(recent_half_life_h=6.0, baseline_half_life_h=168.0)
    closed = -1
    for i, (t, x) in enumerate(zip(ts.tolist(), logs.tolist(), strict=True)):
        model.update(math.expm1(x), t)
        last = int(hours[i]) - 1 if i + 1 < hours.size else -1  # hours before this request's are closed
        done = hours[:i] <= last
        if last < 0 or not done.any() or last == closed:
            continue
        closed = last
        seen_last = int(hours[:i][done].max())
        age = seen_last - hours[:i][done]
        xs = logs[:i][done]
        wr, wb = 0.5 ** (age / 6.0), 0.5 ** (age / 168.0)
        assert model.recent == pytest.approx(np.average(xs, weights=wr), abs=1e-9)
        assert model.baseline == pytest.approx(np.average(xs, weights=wb), abs=1e-9)
        var = np.average(xs**2, weights=wb) - np.average(xs, weights=wb) ** 2
        assert model.bq / model.bw - (model.bx / model.bw) ** 2 == pytest.approx(var, rel=1e-6)
        assert model.sampling_var() == pytest.approx(var * (wr**2).sum() / wr.sum() ** 2, rel=1e-6)
    assert closed >= 55


def test_proportion_shift_baseline_share_and_overdispersion_match_the_moment_estimator():
    rng = np.random.default_rng(2)
    n = rng.integers(1, 30, 200)
    p = rng.beta(2, 40, 200)  # a share that wanders minute to minute: overdispersed
    k = rng.binomial(n, p)
    model = ProportionShift(warmup=10**9)  # stays in warm-up: plain sums
    for minute in range(200):
        model.update(int(k[minute]), MONDAY + minute * 60, trials=int(n[minute]))
        if minute == 0:
            continue
        kk, nn = k[:minute], n[:minute]  # closed minutes
        share = kk.sum() / nn.sum()
        assert model.baseline_share == pytest.approx(min(max(kk.sum(), 0.5), nn.sum() - 0.5) / nn.sum())
        pq = share * (1 - share)
        if pq == 0 or (nn * (nn - 1)).sum() == 0:
            continue
        rho = (((kk - nn * share) ** 2).sum() - pq * nn.sum()) / (pq * (nn * (nn - 1)).sum())
        assert model.rho == pytest.approx(min(max(rho, 0.0), 0.95), abs=1e-9)
    assert 0.01 < model.rho < 0.95


@pytest.mark.parametrize("seed", [3, 4, 5])
def test_seasonal_rate_noise_fit_is_least_squares(seed):
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.5, 50, 300)
    y = 1.2 + 0.08 * mu + rng.normal(0, 0.3, 300)
    a, b = noise_fit(len(mu), mu.sum(), (mu**2).sum(), y.sum(), (y * mu).sum())
    slope, intercept = np.polyfit(mu, y, 1)
    assert (a, b) == pytest.approx((intercept, slope), rel=1e-9)


def test_gpu_profile_is_the_running_mean_of_minute_means_on_a_first_visit():
    rng = np.random.default_rng(6)
    model = GpuUtilization()
    start = int(MONDAY // 60) + 9 * 60  # 09:00, one hour bucket
    means = []
    for minute in range(60):
        samples = np.clip(0.5 + 0.2 * rng.standard_normal(int(rng.integers(1, 7))), 0, 1)
        for j, u in enumerate(samples.tolist()):
            model.update(u, (start + minute) * 60.0 + j * 5.0)
        means.append(samples.mean())
        if minute >= 12:  # the bucket predicts once it holds twelve minutes; minute ``minute`` is still open
            assert model.expected_at(start) == pytest.approx(np.mean(means[:-1]), abs=3 / UNIT)


def test_usage_metric_warm_up_takes_offset_and_spread_from_the_median():
    rng = np.random.default_rng(7)
    values = 3.2 * rng.lognormal(0, 0.1, 15)
    values[4] = 40.0  # one wild bill does not move the robust statistics
    model = UsageMetric(warmup=15)
    for i, v in enumerate(values.tolist()):
        model.update(v, MONDAY + i * HOUR)
    c = 0.01 * np.median(values)
    x = np.log(values + c)
    assert model.c == pytest.approx(c, rel=1e-5)
    assert model.sd == pytest.approx(1.4826 * np.median(np.abs(x - np.median(x))), rel=1e-4)
