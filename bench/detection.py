"""Detection quality: recall, delay, dollars leaked, false alarms and duplicates, against a 3-sigma baseline.

Runs the simulator over a suite of scenarios (bench/scenarios.py: every
incident kind at two magnitudes on series from ~0.5 to ~60 requests/min, and
a clean week per seed), replays each week through spendwatch exactly as
``spendwatch replay`` does, and scores in the same run a rolling 3-sigma
detector on 5-minute aggregates (bench/baseline3sigma.py) the same way
(bench/scoring.py: the matching rule). Then the real traces of
../shared/data: clean, and with every prompt doubled from 55 % of the trace on (or from just after
the models' warm-up, if that is later).

Figures, per incident kind and magnitude: recall; median and p90 delay in
minutes of event time and in requests of the target series; dollars leaked
before detection (spend above the same seed's clean week, which the
simulator makes exactly the counterfactual). Overall: false alarms per 1,000
series-days (critical, and all severities) on clean weeks and outside
incident windows, the recall each detector gets by chance (the same windows
scored against the same seed's clean week, where nothing happened), duplicate firings per incident, and for prompt doubling
the ratio of requests-to-detect to a CUSUM that knew the true distributions
(bench/oracle.py). The targets of the issue are printed beside the figures.

    python bench/detection.py [--seeds 6] [--quick] [--workers 2] [--json FILE]
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import orjson

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import traces
from bench.baseline3sigma import three_sigma_alerts
from bench.minutes import MinuteSums
from bench.observation import FAILED, RETRY, observe
from bench.oracle import (
    requests_to_detect,
    share_requests_to_detect,
    true_prompt_distribution,
    true_shares,
)
from bench.scenarios import DAYS, QUICK_TARGETS, TARGETS, Week, suite
from bench.scoring import (
    GRACE_S,
    Alert,
    Outcome,
    Window,
    match,
    outcome,
)
from bench.tables import print_report
from bench.week_run import WeekResult, run_week, window_of
from detector.config import Settings
from detector.models.level_shift import LevelConfig
from detector.models.share_state import ShareConfig
from detector.pricing import PriceTable
from detector.replay import tune_gc_for_streaming

DETECTORS = ("spendwatch", "3sigma")
SHARE_FLAGS = {"error_spike": FAILED, "retry_storm": RETRY}  # incidents of a share, and what counts as a hit
SHARE_H = ShareConfig().h  # the share oracle judges at the share tests' own threshold
TRACE_ONSET_SHARE = 0.55  # the doubling starts this far into each trace ...
TRACE_AFTER_WARMUP_MINUTES = 3  # ... or this many active minutes after the models' warm-up, if that is later


def run_suite(weeks: Sequence[Week], workers: int) -> list[WeekResult]:
    """Every week of the suite, ``workers`` at a time; a clean week prices its seed's incident windows."""
    windows_of_seed: dict[int, list[Window]] = {}
    for week in weeks:
        windows_of_seed.setdefault(week.seed, []).extend(window_of(week, p) for p in week.planned)
    jobs = [(w, windows_of_seed[w.seed] if not w.planned else []) for w in weeks]
    if workers <= 1:
        return [_job(job) for job in jobs]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        return list(pool.imap(_job, jobs))


def _job(job: tuple[Week, list[Window]]) -> WeekResult:
    tune_gc_for_streaming()
    week, counterfactual = job
    result = run_week(week, counterfactual)
    print(f"  {result.name}: {result.events:,} events, {len(result.windows)} incidents, "
          f"{len(result.spendwatch)} spendwatch / {len(result.baseline)} 3-sigma firings, "
          f"{result.seconds:.0f} s", flush=True)
    return result


def score_suite(results: Sequence[WeekResult], oracle_h: float) -> dict[str, object]:
    """Every figure of the suite, per detector: incident rows, false alarms, duplicates, the oracle."""
    clean = {r.seed: r for r in results if r.clean}
    outcomes: dict[str, list[tuple[Outcome, dict[str, object]]]] = {d: [] for d in DETECTORS}
    false_alarms: dict[str, dict[str, list[Alert]]] = {d: {"clean": [], "outside": []} for d in DETECTORS}
    series_days = {"clean": 0.0, "outside": 0.0}
    oracle_rows, share_rows = [], []
    for r in results:
        series_days["clean" if r.clean else "outside"] += r.series * DAYS
        twin = clean[r.seed]
        for detector, alerts, quiet in zip(DETECTORS, (r.spendwatch, r.baseline), (twin.spendwatch, twin.baseline),
                                           strict=True):
            m = match(alerts, r.windows)
            chance = match(quiet, r.windows)  # the same windows on the clean week: hits there are luck
            false_alarms[detector]["clean" if r.clean else "outside"].extend(m.unmatched)
            for w in r.windows:
                o = _outcome(w, m.by_window[w.key], r, twin)
                info = {**_describe(w, r), "chance_hit": bool(chance.by_window[w.key])}
                outcomes[detector].append((o, info))
                if detector == "spendwatch" and w.kind == "prompt_doubling":
                    oracle_rows.append(_oracle(w, o, r, oracle_h, info))
                if detector == "spendwatch" and w.kind in SHARE_FLAGS:
                    share_rows.append(_share_oracle(w, o, r, info))
    return {"outcomes": outcomes, "false_alarms": false_alarms, "series_days": series_days,
            "oracle": oracle_rows, "share_oracle": share_rows}


def _outcome(w: Window, firings: list[Alert], r: WeekResult, clean: WeekResult) -> Outcome:
    ts = r.requests[w.key][0] if "node" not in w.target else None
    excess = r.spend[w.key] - clean.spend[w.key]
    return outcome(w, firings, ts, excess, int(w.start_s // 60))


def _describe(w: Window, r: WeekResult) -> dict[str, object]:
    meta = r.meta[w.key]
    ts = r.requests[w.key][0]
    rate = None if "node" in w.target else float(np.sum((ts >= w.start_s - 3600) & (ts < w.start_s)) / 60.0)
    return {"key": w.key, "kind": meta.kind, "size": meta.size, "magnitude": meta.magnitude,
            "peak_rate_per_min": meta.peak_rate, "rate_at_onset_per_min": rate, "week": meta.week}


def _oracle(w: Window, o: Outcome, r: WeekResult, h: float, info: dict[str, object]) -> dict[str, object]:
    ts, tokens, _ = r.requests[w.key]
    mu0, sigma = true_prompt_distribution(dict(w.target))
    after = tokens[(ts >= w.start_s) & (ts <= w.end_s)]
    needed = requests_to_detect(after, mu0, mu0 + math.log(w.magnitude), sigma, h)
    ratio = None if (needed is None or o.requests is None) else o.requests / needed
    return {**info, "oracle_requests": needed, "spendwatch_requests": o.requests, "ratio": ratio}


def _share_oracle(w: Window, o: Outcome, r: WeekResult, info: dict[str, object]) -> dict[str, object]:
    """Would a test that knew both shares have caught it before the incident ended, and after how many requests?"""
    ts, _, flags = r.requests[w.key]
    p0, p1 = true_shares(w.kind, w.magnitude, dict(w.target))
    during = (ts >= w.start_s) & (ts <= w.end_s)
    hits = (flags[during] & SHARE_FLAGS[w.kind]) > 0
    needed = share_requests_to_detect(hits, p0, p1, SHARE_H)
    ratio = None if (needed is None or o.requests is None) else o.requests / needed
    return {**info, "oracle_requests": needed, "spendwatch_requests": o.requests, "ratio": ratio,
            "requests_during": int(during.sum()), "hits_during": int(hits.sum()),
            "share_before": p0, "share_during": p1}


def run_traces(settings: Settings) -> list[dict[str, object]]:
    """Per real trace and detector: firings on the clean trace; delay with a ×2 doubling injected."""
    rows = []
    prices = PriceTable.packaged()
    for name in traces.TRACES:
        trace = traces.load(name)
        minutes = int((trace.end_s - trace.start_s) // 60) + 2
        start = math.floor(trace.start_s / 60) * 60.0
        # A doubling inside warm-up is what a new series looks like, for any model: it must come after.
        # (azure-code has quiet minutes, so 55 % of it falls before its 30th minute with requests.)
        settled = trace.active_minute_start(LevelConfig().warmup_minutes + TRACE_AFTER_WARMUP_MINUTES)
        onset = max(trace.start_s + TRACE_ONSET_SHARE * (trace.end_s - trace.start_s), settled)
        window = Window(f"trace:{name}", "prompt_doubling", "input_tokens_per_request", 2.0, trace.labels,
                        onset, trace.end_s)
        clean = observe(trace.lines(), [], start, minutes, settings, prices)
        doubled = observe(trace.lines(doubled_from_s=onset), [window], start, minutes, settings, prices)
        ts = np.asarray(trace.ts)
        for detector in DETECTORS:
            fired_clean = _firings(detector, clean.firings, clean.sums, settings)
            fired = _firings(detector, doubled.firings, doubled.sums, settings)
            o = outcome(window, match(fired, [window]).by_window[window.key], ts, np.zeros(1), 0)
            rows.append({"trace": name, "detector": detector, "events": len(trace.events),
                         "clean_firings": len(fired_clean),
                         "clean_critical": sum(a.severity == "critical" for a in fired_clean),
                         "detected": o.detected, "delay_min": o.delay_min, "requests": o.requests,
                         "rate_per_min": len(trace.events) / ((trace.end_s - trace.start_s) / 60.0)})
    return rows


def _firings(detector: str, engine_firings: list[Alert], sums: MinuteSums, settings: Settings) -> list[Alert]:
    return engine_firings if detector == "spendwatch" else three_sigma_alerts(sums, settings)


def to_json(scored: dict[str, object], trace_rows: list[dict[str, object]], meta: dict[str, object]) -> bytes:
    """Machine-readable results: every incident's outcome per detector, the false alarms, the traces."""
    outcomes = {d: [{**info, "detected": o.detected, "delay_min": o.delay_min, "requests": o.requests,
                     "leaked_usd": round(o.leaked_usd, 4), "duplicates": o.duplicates}
                    for o, info in rows]
                for d, rows in scored["outcomes"].items()}  # type: ignore[union-attr]
    fa: dict[str, dict[str, object]] = {}
    for d, per in scored["false_alarms"].items():  # type: ignore[union-attr]
        fa[d] = {where: _false_alarm_summary(alerts, listed=d == "spendwatch") for where, alerts in per.items()}
    return orjson.dumps({"run": meta, "outcomes": outcomes, "false_alarms": fa,
                         "series_days": scored["series_days"], "oracle": scored["oracle"],
                         "share_oracle": scored["share_oracle"], "traces": trace_rows},
                        option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)


def _false_alarm_summary(alerts: Sequence[Alert], listed: bool) -> dict[str, object]:
    """Counts by severity and metric; every alert too when ``listed`` (the baseline raises thousands)."""
    by: dict[str, int] = {}
    for a in alerts:
        by[f"{a.severity}:{a.metric}"] = by.get(f"{a.severity}:{a.metric}", 0) + 1
    out: dict[str, object] = {"count": len(alerts), "by_severity_and_metric": dict(sorted(by.items()))}
    if listed:
        out["alerts"] = [{"metric": a.metric, "labels": dict(a.labels), "severity": a.severity,
                          "detected_s": a.detected_s} for a in alerts]
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=6,
                        help="simulated seeds, each a clean week and an incident week (6: 18 or 24 incidents per kind "
                             "and magnitude; 3 seeds' 9 or 12 hid misses that 6 show)")
    parser.add_argument("--quick", action="store_true", help="one seed; per kind its slowest and busiest target, one magnitude each (~1–2 min)")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="weeks run in parallel")
    parser.add_argument("--json", type=Path, help="also write machine-readable results here")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.workers < 1:
        parser.error(f"--seeds and --workers must be at least 1, got {args.seeds} and {args.workers}")
    seeds = [1] if args.quick else list(range(1, args.seeds + 1))
    weeks = suite(seeds, QUICK_TARGETS, both_sizes=False) if args.quick else suite(seeds, TARGETS)
    settings = Settings()
    oracle_h = float(getattr(settings, "shift_threshold", 14.0))
    started = time.perf_counter()
    print(f"{len(weeks)} simulated weeks ({sum(len(w.planned) for w in weeks)} incidents, seeds {seeds}), "
          f"{args.workers} at a time")
    results = run_suite(weeks, args.workers)
    scored = score_suite(results, oracle_h)
    trace_rows = run_traces(settings)
    elapsed = time.perf_counter() - started
    meta = {"seeds": seeds, "quick": args.quick, "weeks": len(weeks), "seconds": round(elapsed, 1),
            "events": sum(r.events for r in results), "rejected": sum(r.rejected for r in results),
            "grace_s": GRACE_S, "oracle_threshold": oracle_h}
    print_report(scored, trace_rows, meta)
    if args.json:
        args.json.write_bytes(to_json(scored, trace_rows, meta))
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main()
