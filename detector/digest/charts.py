"""The digest's charts as PNG bytes (matplotlib figures without pyplot: no display, no GUI toolkit).

Three charts, where a person would rather look than read: daily spend by
cost category (stacked bars), the top anomalies on their series' hourly spend
with onset and detection marked, and the tier mix over the week. Each
function returns PNG bytes, or None when there is nothing to draw.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

from detector.anomaly import where
from detector.digest.content import AnomalyLine, Digest
from detector.digest.weeks import day_label
from detector.events import CATEGORIES
from detector.history.rollup import RollupRow
from detector.history.store import HistoryStore

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100
TOP_ANOMALIES = 3
SERIES_LABELS = ("team", "feature", "model")


def _figure(width: float, height: float) -> Figure:
    """A blank figure. matplotlib takes half a second to import, so it loads with the first chart,
    not with every ``spendwatch`` command; a figure saved to PNG draws with Agg, whatever the display."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    # Fixed metadata: the same digest renders to the same bytes.
    fig.savefig(out, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return out.getvalue()


def daily_spend_chart(d: Digest) -> bytes | None:
    """Stacked bars: each day's spend, split by cost category."""
    if not d.daily_by_category:
        return None
    days = list(d.daily_by_category)
    fig = _figure(8, 3.6)
    ax = fig.subplots()
    bottom = [0.0] * len(days)
    for category in CATEGORIES:
        values = [d.daily_by_category[day].get(category, 0.0) for day in days]
        if any(values):
            ax.bar([day_label(t) for t in days], values, bottom=bottom, label=category.replace("_", " "))
            bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("USD per day")
    ax.set_title(f"Daily spend by cost category, {d.week}")
    ax.legend(fontsize=7, ncols=3, loc="upper left", bbox_to_anchor=(0, -0.12))
    return _png(fig)


def tier_mix_chart(d: Digest) -> bytes | None:
    """Stacked shares of requests per tier, day by day."""
    if not d.daily_tier_share:
        return None
    days = list(d.daily_tier_share)
    tiers = sorted({t for per in d.daily_tier_share.values() for t in per})
    fig = _figure(8, 3)
    ax = fig.subplots()
    ax.stackplot([day_label(t) for t in days],
                 [[100 * d.daily_tier_share[day].get(t, 0.0) for day in days] for t in tiers], labels=tiers)
    ax.set_ylim(0, 100)
    ax.set_ylabel("% of requests")
    ax.set_title(f"Tier mix, {d.week}")
    ax.legend(fontsize=7, loc="lower left")
    return _png(fig)


def series_rows(store: HistoryStore, line: AnomalyLine, start: float, end: float) -> dict[int, float]:
    """Hourly spend of the series an anomaly is on (the rows its team/feature/model labels select)."""
    labels = line.stored.record.labels
    wanted = {k: labels[k] for k in SERIES_LABELS if labels.get(k)}
    hours: dict[int, float] = {}
    for row in store.rollups(start, end):
        if all(_row_label(row, k) == v for k, v in wanted.items()):
            hours[row.hour_start] = hours.get(row.hour_start, 0.0) + row.cost_usd
    return dict(sorted(hours.items()))


def anomaly_chart(store: HistoryStore, d: Digest, line: AnomalyLine) -> bytes | None:
    """One anomaly's series, hour by hour over the week, with its onset and detection marked."""
    hours = series_rows(store, line, d.start, d.end)
    if not hours:
        return None
    a = line.stored
    fig = _figure(8, 2.8)
    ax = fig.subplots()
    ax.plot([(h - d.start) / 86400 for h in hours], list(hours.values()), linewidth=1, color="#555555")
    ax.axvspan((a.started_ts - d.start) / 86400, (a.detected_ts - d.start) / 86400, color="#f4a261", alpha=0.4,
               label="before detection")
    ax.axvline((a.detected_ts - d.start) / 86400, color="#d62828", linewidth=1.5, label="detected")
    if a.resolved_ts is not None:
        ax.axvline((a.resolved_ts - d.start) / 86400, color="#2a9d8f", linewidth=1.5, label="resolved")
    ax.set_xlim(0, 7)
    ax.set_xticks(range(7), [day_label(d.start + i * 86400) for i in range(7)])
    ax.set_ylabel("USD per hour")
    ax.set_title(f"{where(a.record.labels)}: {a.record.metric}")
    ax.legend(fontsize=7, loc="upper right")
    return _png(fig)


def digest_charts(store: HistoryStore, d: Digest) -> dict[str, bytes]:
    """Every chart of the digest by file name, in reading order; charts with nothing to draw are left out."""
    charts = {"daily-spend.png": daily_spend_chart(d)}
    for i, line in enumerate(d.anomalies[:TOP_ANOMALIES], 1):
        charts[f"anomaly-{i}.png"] = anomaly_chart(store, d, line)
    charts["tier-mix.png"] = tier_mix_chart(d)
    return {name: png for name, png in charts.items() if png is not None}


def _row_label(row: RollupRow, name: str) -> str:
    return getattr(row, name)
