"""The detection benchmark's tables, with the issue's targets printed beside the figures.

"Beats 3σ" on an incident row means a higher recall above chance, or the
same and a median delay no longer. Recall by chance is what a detector gets
on the same windows of the same seed's clean week, where nothing happened:
a detector that fires often "detects" long incidents by luck. On a
false-alarm or duplicate row, "beats" means no more than the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from rich.console import Console
from rich.table import Table

from bench.scenarios import MAGNITUDES
from bench.scoring import Outcome, RowStats, per_thousand_series_days, summarize

RECALL_TARGET = 0.95
CREEP_RECALL_TARGET = 0.80
DELAY_TARGET_MIN = 5.0
BUSY_PER_MIN = 10.0
ORACLE_RATIO_TARGET = 1.5
FA_TARGET = 1.0

OK, NO, NA = "[green]✓[/]", "[red]✗[/]", "–"


def mark(ok: bool | None) -> str:
    return NA if ok is None else OK if ok else NO


def beats(sw: RowStats, bl: RowStats, sw_chance: float = 0.0, bl_chance: float = 0.0) -> bool:
    """Higher recall above chance, or the same and a median delay no longer.

    >>> a = RowStats(4, 4, 2.0, 3.0, None, None, None, 0.0, 0)
    >>> b = RowStats(4, 4, 5.0, 9.0, None, None, None, 0.0, 0)
    >>> beats(a, b), beats(b, a), beats(b, a, bl_chance=0.5)
    (True, False, True)
    """
    sw_net, bl_net = sw.recall - sw_chance, bl.recall - bl_chance
    if not math.isclose(sw_net, bl_net):
        return sw_net > bl_net
    return (sw.delay_median_min or math.inf) <= (bl.delay_median_min or math.inf)


def incident_rows(scored: dict) -> list[dict[str, object]]:
    """One row per (kind, magnitude): both detectors' figures and the targets met."""
    rows = []
    for kind, sizes in MAGNITUDES.items():
        for size, magnitude in zip(("larger", "smaller"), sizes, strict=True):
            pick = {d: [(o, i) for o, i in rows_ if i["kind"] == kind and i["size"] == size]
                    for d, rows_ in scored["outcomes"].items()}
            if not pick["spendwatch"]:
                continue
            sw, bl = (summarize([o for o, _ in pick[d]]) for d in ("spendwatch", "3sigma"))
            chance = {d: float(np.mean([i["chance_hit"] for _, i in pick[d]])) for d in pick}
            rates = [i["rate_at_onset_per_min"] for _, i in pick["spendwatch"] if i["rate_at_onset_per_min"] is not None]
            target = CREEP_RECALL_TARGET if kind == "slow_creep" else RECALL_TARGET
            rows.append({"kind": kind, "size": size, "magnitude": magnitude, "spendwatch": sw, "3sigma": bl,
                         "rate_min": min(rates) if rates else None, "rate_max": max(rates) if rates else None,
                         "recall_target": target if size == "larger" else None,
                         "recall_ok": (sw.recall >= target) if size == "larger" else None,
                         "chance": chance, "beats": beats(sw, bl, chance["spendwatch"], chance["3sigma"])})
    return rows


def busy_doubling(scored: dict) -> tuple[dict[str, RowStats], dict[str, float]]:
    """×2 prompt doublings on series with at least 10 requests/min at onset: figures and chance, per detector."""
    stats, chance = {}, {}
    for d, rows in scored["outcomes"].items():
        picked = [(o, i) for o, i in rows if i["kind"] == "prompt_doubling" and i["size"] == "larger"
                  and (i["rate_at_onset_per_min"] or 0) >= BUSY_PER_MIN]
        stats[d] = summarize([o for o, _ in picked])
        chance[d] = float(np.mean([i["chance_hit"] for _, i in picked])) if picked else 0.0
    return stats, chance


def oracle_ratio(scored: dict, size: str) -> float | None:
    ratios = [r["ratio"] for r in scored["oracle"] if r["size"] == size and r["ratio"] is not None]
    return float(np.median(ratios)) if ratios else None


def share_oracle_rows(scored: dict) -> list[dict[str, object]]:
    """Per share incident kind and magnitude: how many the oracle catches, and spendwatch among those.

    An incident the oracle does not catch before it ends carries too little
    evidence in its requests for any test at that threshold; recall over
    the ones it does catch is what is left to improve.
    """
    rows = []
    for kind in ("retry_storm", "error_spike"):
        for size, magnitude in zip(("larger", "smaller"), MAGNITUDES[kind], strict=True):
            picked = [r for r in scored.get("share_oracle", []) if r["kind"] == kind and r["size"] == size]
            if not picked:
                continue
            seen = [r for r in picked if r["oracle_requests"] is not None]
            caught = [r for r in seen if r["spendwatch_requests"] is not None]
            ratios = [r["ratio"] for r in caught if r["ratio"] is not None]
            rows.append({"kind": kind, "magnitude": magnitude, "n": len(picked), "oracle": len(seen),
                         "spendwatch_of_oracle": len(caught),
                         "spendwatch": sum(r["spendwatch_requests"] is not None for r in picked),
                         "ratio": float(np.median(ratios)) if ratios else None})
    return rows


def false_alarm_rates(scored: dict) -> dict[str, dict[str, float]]:
    """Per detector: critical and all false alarms per 1,000 series-days, clean weeks and outside windows."""
    out: dict[str, dict[str, float]] = {}
    days = scored["series_days"]
    for d, per in scored["false_alarms"].items():
        out[d] = {}
        for where in ("clean", "outside"):
            if days[where] > 0:
                out[d][f"{where}_critical"] = per_thousand_series_days(per[where], days[where], "critical")
                out[d][f"{where}_all"] = per_thousand_series_days(per[where], days[where])
    return out


def duplicates_per_incident(outcomes: Sequence[tuple[Outcome, dict]]) -> float:
    return sum(o.duplicates for o, _ in outcomes) / len(outcomes) if outcomes else 0.0


def print_report(scored: dict, trace_rows: list[dict[str, object]], meta: dict[str, object]) -> None:
    console = Console(width=220)
    console.print(_incident_table(incident_rows(scored)))
    console.print(_overall_table(scored, trace_rows))
    if scored.get("share_oracle"):
        console.print(_share_oracle_table(share_oracle_rows(scored)))
    console.print(_trace_table(trace_rows))
    console.print(f"{meta['weeks']} weeks, {meta['events']:,} events ({meta['rejected']} rejected), "
                  f"{meta['seconds']:.0f} s; grace after an incident's end {int(meta['grace_s']) // 60} min")


def _incident_table(rows: list[dict[str, object]]) -> Table:
    t = Table(title="Incidents: spendwatch vs rolling 3-sigma on 5-minute aggregates", show_lines=False)
    for col in ("kind", "mag", "n", "req/min at onset", "recall (chance)", "delay min med/p90", "requests med/p90",
                "$ leaked med (total)", "3σ recall (chance)", "3σ delay med/p90", "3σ requests med", "3σ $ leaked total",
                "recall target", "beats 3σ"):
        if col == "kind":
            t.add_column(col, no_wrap=True, min_width=16)
        else:
            t.add_column(col, justify="right")
    for r in rows:
        sw, bl = r["spendwatch"], r["3sigma"]
        target = "" if r["recall_target"] is None else f"≥{r['recall_target']:.0%} {mark(r['recall_ok'])}"
        t.add_row(
            str(r["kind"]), f"{r['magnitude']:g}", str(sw.incidents), _range(r["rate_min"], r["rate_max"]),
            f"{sw.recall:.0%} ({r['chance']['spendwatch']:.0%})", _pair(sw.delay_median_min, sw.delay_p90_min, 1),
            _pair(sw.requests_median, sw.requests_p90, 0), _money(sw.leaked_median_usd, sw.leaked_total_usd),
            f"{bl.recall:.0%} ({r['chance']['3sigma']:.0%})", _pair(bl.delay_median_min, bl.delay_p90_min, 1), _num(bl.requests_median, 0),
            f"${bl.leaked_total_usd:,.2f}", target, mark(bool(r["beats"])),
        )
    return t


def _overall_table(scored: dict, trace_rows: list[dict[str, object]]) -> Table:
    t = Table(title="Overall")
    for col in ("figure", "spendwatch", "3-sigma", "target", "met", "beats 3σ"):
        t.add_column(col, justify="left" if col == "figure" else "right")
    busy, chance = busy_doubling(scored)
    sw_d, bl_d = busy["spendwatch"].delay_median_min, busy["3sigma"].delay_median_min
    t.add_row(f"prompt ×2 on ≥{BUSY_PER_MIN:g} req/min: median delay, min (n={busy['spendwatch'].incidents})",
              _num(sw_d, 1), _num(bl_d, 1), f"≤ {DELAY_TARGET_MIN:g}",
              mark(None if sw_d is None else sw_d <= DELAY_TARGET_MIN), mark(beats(busy["spendwatch"], busy["3sigma"], chance["spendwatch"], chance["3sigma"])))
    for size in ("larger", "smaller"):
        ratio = oracle_ratio(scored, size)
        mag = MAGNITUDES["prompt_doubling"][0 if size == "larger" else 1]
        ok = None if size == "smaller" or ratio is None else ratio <= ORACLE_RATIO_TARGET
        t.add_row(f"prompt ×{mag:g}: requests to detect / CUSUM oracle's (median)", _num(ratio, 2), "",
                  f"≤ {ORACLE_RATIO_TARGET:g}" if size == "larger" else "", mark(ok), "")
    fa = false_alarm_rates(scored)
    for key, label in (("clean_critical", "false alarms / 1,000 series-days, clean weeks, critical"),
                       ("clean_all", "false alarms / 1,000 series-days, clean weeks, all severities"),
                       ("outside_critical", "false alarms / 1,000 series-days, outside incidents, critical"),
                       ("outside_all", "false alarms / 1,000 series-days, outside incidents, all")):
        sw, bl = fa["spendwatch"].get(key), fa["3sigma"].get(key)
        target = FA_TARGET if key == "clean_critical" else None
        t.add_row(label, _num(sw, 2), _num(bl, 2), "" if target is None else f"≤ {target:g}",
                  mark(None if target is None or sw is None else sw <= target),
                  mark(None if sw is None or bl is None else sw <= bl))
    dup = {d: duplicates_per_incident(rows) for d, rows in scored["outcomes"].items()}
    t.add_row("duplicate firings per incident", f"{dup['spendwatch']:.2f}", f"{dup['3sigma']:.2f}", "0",
              mark(dup["spendwatch"] == 0), mark(dup["spendwatch"] <= dup["3sigma"]))
    clean = {d: sum(int(r["clean_firings"]) for r in trace_rows if r["detector"] == d) for d in ("spendwatch", "3sigma")}
    t.add_row("firings on the clean real traces", str(clean["spendwatch"]), str(clean["3sigma"]), "0",
              mark(clean["spendwatch"] == 0), mark(clean["spendwatch"] <= clean["3sigma"]))
    return t


def _share_oracle_table(rows: list[dict[str, object]]) -> Table:
    t = Table(title="Share incidents against a CUSUM that knows both shares (the oracle), at the share tests' threshold")
    for col in ("kind", "mag", "n", "caught by the oracle", "spendwatch, of those", "spendwatch, all",
                "requests / oracle's (median)"):
        t.add_column(col, justify="left" if col == "kind" else "right")
    for r in rows:
        t.add_row(str(r["kind"]), f"{r['magnitude']:g}", str(r["n"]), str(r["oracle"]),
                  str(r["spendwatch_of_oracle"]), str(r["spendwatch"]), _num(r["ratio"], 2))  # type: ignore[arg-type]
    return t


def _trace_table(trace_rows: list[dict[str, object]]) -> Table:
    t = Table(title="Real traces (../shared/data): clean, and ×2 prompt doubling from 55 % of the trace "
                    "(or just after warm-up)")
    for col in ("trace", "req/min", "detector", "clean firings (critical)", "×2 detected", "delay min", "requests"):
        t.add_column(col, justify="left" if col in ("trace", "detector") else "right")
    for r in trace_rows:
        t.add_row(str(r["trace"]), f"{r['rate_per_min']:.0f}", str(r["detector"]),
                  f"{r['clean_firings']} ({r['clean_critical']})", mark(bool(r["detected"])),
                  _num(r["delay_min"], 1), _num(r["requests"], 0))  # type: ignore[arg-type]
    return t


def _num(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:,.{digits}f}"


def _pair(a: float | None, b: float | None, digits: int) -> str:
    return "–" if a is None else f"{_num(a, digits)} / {_num(b, digits)}"


def _range(lo: float | None, hi: float | None) -> str:
    return "gpu" if lo is None else f"{lo:.1f}–{hi:.1f}"


def _money(median: float | None, total: float) -> str:
    return f"{'–' if median is None else f'${median:,.2f}'} (${total:,.2f})"
