"""What a person reads in the terminal: one line per alert, a closing summary.

Every string that came from an event (labels, model names) is printed as
plain text, never interpreted as rich markup, so a feature called
``[bold]`` or ``[/]`` cannot restyle or break the output.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from detector.anomaly import Anomaly, money
from detector.replay import ReplaySummary

SEVERITY_STYLE = {"critical": "bold red", "warning": "yellow", "info": "cyan"}


def alert_line(a: Anomaly) -> Text:
    """``14:09Z  CRITICAL  firing    summary`` as styled text."""
    when = a.detected_at if a.status == "firing" else (a.resolved_at or a.detected_at)
    text = Text()
    text.append(when.replace("T", " ")[:16] + "Z  ", style="dim")
    text.append(f"{a.severity.upper():<8} ", style=SEVERITY_STYLE.get(a.severity, ""))
    text.append(f"{a.status:<9}", style="bold" if a.status == "firing" else "green")
    text.append(a.summary)
    return text


def summary_table(s: ReplaySummary, elapsed_s: float) -> Table:
    table = Table(title="replay summary", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rate = s.lines / elapsed_s if elapsed_s > 0 else 0.0
    table.add_row("lines read", f"{s.lines:,}  ({rate:,.0f}/s)")
    table.add_row("events accepted", f"{s.events:,}")
    table.add_row("duplicates dropped", f"{s.duplicates:,}")
    table.add_row("rejected", f"{s.rejected:,}")
    for code, n in s.rejects.most_common():
        table.add_row(Text(f"  {code}"), f"{n:,}")
    table.add_row("series tracked", f"{s.series:,}")
    table.add_row("anomalies fired / resolved", f"{s.fired:,} / {s.resolved:,}")
    table.add_row("spend priced", money(s.ledger.total()))
    return table


def unpriced_lines(s: ReplaySummary) -> list[Text]:
    """One line per unpriced model: its traffic is not in the totals."""
    return [
        Text(
            f"unpriced: {model}: {n:,} events not counted in spend "
            "(add its prices with --prices FILE or SPENDWATCH_PRICES)",
            style="yellow",
        )
        for model, n in s.ledger.unpriced.most_common()
    ]


def spend_table(s: ReplaySummary) -> Table:
    """Spend by cost category and by team, largest first."""
    table = Table(title="spend by category and team", title_justify="left")
    table.add_column("category")
    table.add_column("spend", justify="right")
    table.add_column("team")
    table.add_column("spend", justify="right")
    cats = sorted(s.ledger.by_category().items(), key=lambda kv: -kv[1])
    teams = sorted(s.ledger.by_team().items(), key=lambda kv: -kv[1])
    for i in range(max(len(cats), len(teams))):
        c = cats[i] if i < len(cats) else ("", None)
        t = teams[i] if i < len(teams) else ("", None)
        table.add_row(
            Text(c[0]), money(c[1]) if c[1] is not None else "", Text(t[0]), money(t[1]) if t[1] is not None else ""
        )
    table.add_row(Text("total", style="bold"), money(s.ledger.total()), "", "")
    return table


def print_summary(console: Console, s: ReplaySummary, elapsed_s: float) -> None:
    console.print(summary_table(s, elapsed_s))
    for line in unpriced_lines(s):
        console.print(line)
