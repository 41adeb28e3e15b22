"""The weekly digest for FinOps leads, computed from the history store.

:func:`build_digest` gives the numbers (:class:`Digest`); :mod:`.charts`
draws them, :func:`render_html` writes one self-contained page,
:func:`render_digest` / :func:`send_digest` put it in Slack;
:func:`write_digest` and :func:`post_digest` do it all, and ``digest``
(:mod:`.cli`) is the command.
"""

from detector.digest.budgets import BudgetLine
from detector.digest.charts import digest_charts
from detector.digest.content import AnomalyLine, Change, Digest, UnitCost, build_digest
from detector.digest.html import render_html
from detector.digest.publish import post_digest, write_digest
from detector.digest.slack import render_digest, send_digest
from detector.digest.weeks import last_complete_week, parse_week, week_of

__all__ = [
    "AnomalyLine",
    "BudgetLine",
    "Change",
    "Digest",
    "UnitCost",
    "build_digest",
    "digest_charts",
    "last_complete_week",
    "parse_week",
    "post_digest",
    "render_digest",
    "render_html",
    "send_digest",
    "week_of",
    "write_digest",
]
