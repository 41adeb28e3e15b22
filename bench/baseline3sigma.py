"""The baseline to beat: a rolling 3-sigma detector on 5-minute aggregates per series.

What a team would write in an afternoon: per series, every 5 minutes, take
the mean input and output tokens per request, the request count, the retry,
error and cache-hit shares and the spend (per GPU node: the mean
utilisation); compare each value with the mean and standard deviation of the
same aggregate over the trailing 24 hours (the current bin excluded); fire
when it is more than 3σ away, once per run of consecutive breaching bins, at
the end of the bin that first breaches. Severity comes from dollars, as in
spendwatch: the bin's spend above its trailing mean, per hour.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from bench.minutes import MinuteSums
from bench.scoring import Alert
from detector.anomaly import severity_for
from detector.config import Settings

BIN_MIN = 5
WINDOW_BINS = 24 * 60 // BIN_MIN
MIN_HISTORY_BINS = 6
K_SIGMA = 3.0


def breaches(values: np.ndarray, window: int = WINDOW_BINS, k: float = K_SIGMA,
             min_history: int = MIN_HISTORY_BINS) -> tuple[np.ndarray, np.ndarray]:
    """Which bins lie beyond ``k``σ of the trailing ``window`` bins before them; and that mean.

    NaN bins (nothing to average) neither breach nor count as history.

    >>> x = np.array([10, 11, 9, 10, 11, 9, 10, 30, 10], dtype=float)
    >>> hit, mean = breaches(x, window=6, min_history=4)
    >>> hit.tolist()
    [False, False, False, False, False, False, False, True, False]
    """
    valid = ~np.isnan(values)
    x = np.where(valid, values, 0.0)
    c0 = np.concatenate([[0.0], np.cumsum(valid)])
    c1 = np.concatenate([[0.0], np.cumsum(x)])
    c2 = np.concatenate([[0.0], np.cumsum(x * x)])
    idx = np.arange(len(values))
    lo = np.maximum(0, idx - window)
    n, s1, s2 = c0[idx] - c0[lo], c1[idx] - c1[lo], c2[idx] - c2[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        std = np.sqrt(np.maximum(s2 / n - mean * mean, 0.0))
        hit = valid & (n >= min_history) & (std > 0) & (np.abs(values - mean) > k * std)
    return hit, mean


def onsets(hit: np.ndarray) -> np.ndarray:
    """First bin of each run of consecutive breaching bins.

    >>> onsets(np.array([False, True, True, False, True])).tolist()
    [1, 4]
    """
    prev = np.concatenate([[False], hit[:-1]])
    return np.flatnonzero(hit & ~prev)


def to_bins(per_minute: np.ndarray, bin_min: int = BIN_MIN) -> np.ndarray:
    """Sum a per-minute series into bins (a partial last bin is dropped).

    >>> to_bins(np.arange(7.0), 3).tolist()
    [3.0, 12.0]
    """
    whole = len(per_minute) // bin_min * bin_min
    return per_minute[:whole].reshape(-1, bin_min).sum(axis=1)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / den, np.nan)


def three_sigma_alerts(sums: MinuteSums, settings: Settings | None = None) -> list[Alert]:
    """Every firing of the baseline over the span of ``sums``."""
    settings = settings or Settings()
    alerts: list[Alert] = []
    for key in sums.llm_keys:
        labels = {k: v for k, v in zip(("team", "feature", "model"), key, strict=True) if v is not None}
        b = {name: to_bins(sums.llm(key, name)) for name in
             ("requests", "input_tokens", "output_tokens", "cached_tokens", "retries", "errors", "cost_usd")}
        n = b["requests"]
        spend_hit, spend_mean = breaches(b["cost_usd"])
        excess = (b["cost_usd"] - spend_mean) * (60 / BIN_MIN)
        metrics = {
            "input_tokens_per_request": _ratio(b["input_tokens"], n),
            "output_tokens_per_request": _ratio(b["output_tokens"], n),
            "request_rate": n,
            "retry_rate": _ratio(b["retries"], n),
            "error_rate": _ratio(b["errors"], n),
            "cache_hit_rate": _ratio(b["cached_tokens"], b["input_tokens"]),
        }
        runs = {name: breaches(values)[0] for name, values in metrics.items()}
        runs["spend_rate"] = spend_hit
        alerts.extend(_fire(sums, labels, runs, excess, settings))
    for key in sums.gpu_keys:
        cluster, node = key
        labels = {"node": node} if cluster is None else {"cluster": cluster, "node": node}
        util = _ratio(to_bins(sums.gpu(key, "utilization")), to_bins(sums.gpu(key, "samples")))
        hit, mean = breaches(util)
        info = sums.gpu_nodes[key]
        excess = (mean - util) * info.hourly_usd * len(info.gpus)  # idle dollars per hour above normal
        alerts.extend(_fire(sums, labels, {"gpu_utilization": hit}, np.nan_to_num(excess), settings))
    return sorted(alerts, key=lambda a: a.detected_s)


def _fire(sums: MinuteSums, labels: dict[str, str], runs: dict[str, np.ndarray], excess: np.ndarray,
          settings: Settings) -> Iterator[Alert]:
    where = ",".join(f"{k}={v}" for k, v in labels.items())
    for metric, hit in runs.items():
        for b in onsets(hit).tolist():
            detected = sums.start_s + (b + 1) * BIN_MIN * 60.0
            severity = severity_for(float(np.nan_to_num(excess[b])), settings.critical_usd_per_hour,
                                    settings.warning_usd_per_hour)
            yield Alert(f"3sigma:{metric}:{where}:{b}", metric, labels, severity, detected)
