"""Producing a digest end to end: store → content → charts → an HTML file and/or Slack.

What ``spendwatch digest`` and ``spendwatch demo`` call, and what a weekly
job in the stream worker would call once (on the leader) every Monday.
"""

from __future__ import annotations

from pathlib import Path

from slack_sdk import WebClient

from detector.digest.charts import digest_charts
from detector.digest.content import Digest, build_digest
from detector.digest.html import render_html
from detector.digest.slack import send_digest
from detector.history.store import HistoryStore
from detector.rules import RuleSet


def write_digest(store: HistoryStore, week: str, out: Path, rules: RuleSet | None = None) -> Digest:
    """Compute the digest of ``week`` and write it to ``out`` as one self-contained HTML file."""
    digest = build_digest(store, week, rules)
    charts = digest_charts(store, digest) if not digest.empty else {}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_html(digest, charts), encoding="utf-8")
    return digest


def post_digest(store: HistoryStore, week: str, client: WebClient, channel: str,
                rules: RuleSet | None = None) -> Digest:
    """Compute the digest of ``week`` and send it to ``channel`` (summary, then the charts)."""
    digest = build_digest(store, week, rules)
    send_digest(client, channel, digest, digest_charts(store, digest) if not digest.empty else {})
    return digest
