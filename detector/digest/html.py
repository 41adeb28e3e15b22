"""The digest as one self-contained HTML file: styles inline, charts embedded as base64 PNGs.

It opens offline, from a mail attachment or a file share, with nothing to
fetch. Every string that came from events or rules (team, feature and model
names, summaries) is HTML-escaped.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from html import escape

from detector.digest.content import Change, Digest
from detector.digest.weeks import day_label

STYLE = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:960px;margin:2em auto;color:#222}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:3px 10px;text-align:right;border-bottom:1px solid #eee}
td:first-child,th:first-child{text-align:left}.up{color:#b00020}.down{color:#1b7f3b}img{max-width:100%}
.first li{margin:.3em 0}.muted{color:#777}
"""


def usd(value: float) -> str:
    """Dollars to the cent.

    >>> usd(1234.5), usd(-3)
    ('$1,234.50', '-$3.00')
    """
    return f"{'-' if value < 0 else ''}${abs(value):,.2f}"


def pct(change: Change) -> str:
    return "new" if change.pct is None else f"{change.pct:+.0f}%"


def duration(seconds: float | None) -> str:
    """``1h 05m`` or ``12 min``; ``–`` when unknown.

    >>> duration(3900), duration(720), duration(None)
    ('1h 05m', '12 min', '–')
    """
    if seconds is None:
        return "–"
    minutes = int(seconds // 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def _table(head: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A table; cells are already-escaped HTML."""
    out = ["<table><tr>", *(f"<th>{escape(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out += ["<tr>", *(f"<td>{cell}</td>" for cell in row), "</tr>"]
    out.append("</table>")
    return "".join(out)


def _delta(c: Change) -> str:
    css = "up" if c.delta > 0 else "down" if c.delta < 0 else ""
    return f'<span class="{css}">{escape(pct(c))}</span>'


def _money_rows(changes: Iterable[Change]) -> list[list[str]]:
    return [[escape(c.name), usd(c.now), usd(c.before), _delta(c)] for c in changes]


def _img(name: str, png: bytes) -> str:
    data = base64.b64encode(png).decode()
    return f'<p><img alt="{escape(name)}" src="data:image/png;base64,{data}"></p>'


def render_html(d: Digest, charts: dict[str, bytes]) -> str:
    """The whole page.

    >>> from detector.digest.content import build_digest
    >>> from detector.history import HistoryStore
    >>> "no data for 2026-W47" in render_html(build_digest(HistoryStore.open("sqlite://"), "2026-W47"), {})
    True
    """
    title = f"spendwatch weekly digest, {d.week}"
    parts = [f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>",
             f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>",
             f'<p class="muted">{escape(day_label(d.start))} – {escape(day_label(d.end - 86400))} (UTC)</p>']
    if d.empty:
        parts.append(f"<p><strong>no data for {escape(d.week)}</strong>: the history store holds no spend and "
                     "no anomalies for this week.</p></body></html>")
        return "".join(parts)
    parts.append(f"<p>Total spend <strong>{usd(d.total.now)}</strong> ({_delta(d.total)} on last week's "
                 f"{usd(d.total.before)}).</p>")
    if d.look_first:
        parts += ["<h2>What to look at first</h2><ol class=first>",
                  *(f"<li>{escape(item)}</li>" for item in d.look_first), "</ol>"]
    parts += ["<h2>Spend by cost category</h2>", _table(["category", "this week", "last week", "change"],
                                                        _money_rows(d.by_category))]
    if "daily-spend.png" in charts:
        parts.append(_img("daily spend by category", charts["daily-spend.png"]))
    parts += ["<h2>Spend by team</h2>", _table(["team", "this week", "last week", "change"], _money_rows(d.by_team))]
    parts += _anomalies(d, charts)
    parts += ["<h2>Top movers</h2>", _table(["feature", "this week", "last week", "change"],
                                            _money_rows(d.feature_movers)),
              _table(["model", "this week", "last week", "change"], _money_rows(d.model_movers))]
    parts += ["<h2>Unit economics</h2>", _table(
        ["feature", "$ per request", "last week", "change", "$ per 1k tokens", "last week", "change"],
        ([escape(u.feature), f"${u.per_request.now:.5f}", f"${u.per_request.before:.5f}", _delta(u.per_request),
          f"${u.per_1k_tokens.now:.5f}", f"${u.per_1k_tokens.before:.5f}", _delta(u.per_1k_tokens)]
         for u in d.unit_costs))]
    parts += ["<h2>Tier mix and prompt caching</h2>", _table(
        ["tier", "share of requests", "last week", "share of spend", "last week"],
        ([escape(r.name), f"{r.now:.1%}", f"{r.before:.1%}", f"{s.now:.1%}", f"{s.before:.1%}"]
         for r, s in zip(d.tier_requests, d.tier_spend, strict=True))),
        f"<p>Prompt cache hits: {d.cache_hit.now:.1%} of input tokens (last week {d.cache_hit.before:.1%}).</p>"]
    if "tier-mix.png" in charts:
        parts.append(_img("tier mix over the week", charts["tier-mix.png"]))
    if d.gpus:
        parts += ["<h2>GPUs</h2>", _table(
            ["GPU model", "GPU-hours", "utilisation", "last week", "cost", "idle $", "idle $ last week"],
            ([escape(g.gpu_model), f"{g.hours.now:,.1f}", f"{g.utilisation.now:.0%}", f"{g.utilisation.before:.0%}",
              usd(g.cost.now), usd(g.idle_usd.now), usd(g.idle_usd.before)] for g in d.gpus))]
    if d.budgets:
        parts += ["<h2>Budgets (month to date)</h2>", _table(
            ["budget", "scope", "monthly", "spent", "projected", "of budget"],
            ([escape(b.rule_id), escape(b.scope), usd(b.monthly_usd), usd(b.spent_usd), usd(b.projected_usd),
              f'<span class="{"up" if b.share > 1 else ""}">{b.share:.0%}</span>'] for b in d.budgets))]
    if d.unpriced_requests:
        parts.append(f"<p class=muted>{d.unpriced_requests:,} requests had no price and are not in these "
                     "totals.</p>")
    parts.append("</body></html>")
    return "".join(parts)


def _anomalies(d: Digest, charts: dict[str, bytes]) -> list[str]:
    parts = ["<h2>Anomalies, by dollars</h2>"]
    if not d.anomalies:
        return [*parts, "<p>No anomalies this week.</p>"]
    rows = []
    for line in d.anomalies:
        r = line.stored.record
        rows.append([escape(r.summary), escape(line.team or "unknown"), escape(r.status), usd(line.excess_usd),
                     usd(line.leaked_usd), f"{usd(r.excess_cost_usd_per_hour)}/h", escape(duration(line.detect_s)),
                     escape(duration(line.resolve_s))])
    parts.append(_table(["anomaly", "owner", "status", "excess spend", "before detection", "rate",
                         "time to detect", "time to resolve"], rows))
    parts += [_img(name, png) for name, png in charts.items() if name.startswith("anomaly-")]
    return parts
