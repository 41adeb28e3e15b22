"""The digest in Slack: a Block Kit summary of the top items, then the charts uploaded beside it.

Rendering is pure (:func:`render_digest`); :func:`send_digest` is given its
slack-sdk ``WebClient``, posts the summary (``chat.postMessage``) and uploads
the charts into the same channel with ``files_upload_v2``. Every string from
events or rules is escaped (:mod:`detector.notify.escape`) and every mrkdwn
text is ``verbatim``, so no team or feature name becomes a mention or a link.
"""

from __future__ import annotations

from typing import Any

from slack_sdk import WebClient

from detector.digest.content import Change, Digest
from detector.digest.html import duration, pct, usd
from detector.notify.escape import clip, escape_mrkdwn, escape_plain

SECTION_MAX = 3000
FIELD_MAX = 2000
SHOWN = 5


def _text(markdown: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(markdown, SECTION_MAX), "verbatim": True}


def _field(markdown: str) -> dict[str, Any]:
    return {"type": "mrkdwn", "text": clip(markdown, FIELD_MAX), "verbatim": True}


def _section(markdown: str) -> dict[str, Any]:
    return {"type": "section", "text": _text(markdown)}


def _lines(changes: list[Change]) -> str:
    return "\n".join(f"{escape_mrkdwn(c.name)}: {usd(c.now)} ({pct(c)})" for c in changes[:SHOWN] if c.now or c.before)


def render_digest(d: Digest) -> dict[str, Any]:
    """``text`` (the notification fallback) and ``blocks`` of the summary message.

    >>> from detector.history import HistoryStore
    >>> from detector.digest.content import build_digest
    >>> render_digest(build_digest(HistoryStore.open("sqlite://"), "2026-W47"))["text"]
    'spendwatch weekly digest 2026-W47: no data for 2026-W47'
    """
    header = {"type": "header", "text": {"type": "plain_text", "text": escape_plain(f"AI spend digest {d.week}")}}
    if d.empty:
        return {"text": f"spendwatch weekly digest {d.week}: no data for {d.week}",
                "blocks": [header, _section(f"No data for {escape_mrkdwn(d.week)}: the history store holds no "
                                            "spend and no anomalies for this week.")]}
    text = f"spendwatch weekly digest {d.week}: {usd(d.total.now)} spent ({pct(d.total)} on last week)"
    blocks: list[dict[str, Any]] = [
        header,
        _section(f"*Total spend {usd(d.total.now)}* ({pct(d.total)} on last week's {usd(d.total.before)}), "
                 f"{len(d.anomalies)} anomal{'y' if len(d.anomalies) == 1 else 'ies'}."),
    ]
    if d.look_first:
        blocks.append(_section("*What to look at first*\n" + "\n".join(
            f"{i}. {escape_mrkdwn(item)}" for i, item in enumerate(d.look_first, 1))))
    blocks.append({"type": "section", "fields": [_field("*By cost category*\n" + _lines(d.by_category)),
                                                 _field("*By team*\n" + _lines(d.by_team))]})
    if d.anomalies:
        rows = []
        for line in d.anomalies[:SHOWN]:
            r = line.stored.record
            rows.append(f"• {usd(line.excess_usd)} ({usd(line.leaked_usd)} before detection): "
                        f"{escape_mrkdwn(r.summary)} owner *{escape_mrkdwn(line.team or 'unknown')}*, {r.status}, "
                        f"detected in {duration(line.detect_s)}")
        blocks += [{"type": "divider"}, _section("*Anomalies, by dollars*\n" + "\n".join(rows))]
    idle = sum(g.idle_usd.now for g in d.gpus)
    blocks.append({"type": "context", "elements": [_text(
        f"Cache hits {d.cache_hit.now:.0%} of input tokens (last week {d.cache_hit.before:.0%}) · "
        f"idle GPU {usd(idle)} · charts below")]})
    return {"text": text, "blocks": blocks}


def send_digest(client: WebClient, channel: str, d: Digest, charts: dict[str, bytes]) -> str:
    """Post the summary and upload the charts in its thread; return the message's ``ts``."""
    message = render_digest(d)
    posted = client.chat_postMessage(channel=channel, text=message["text"], blocks=message["blocks"],
                                     unfurl_links=False, unfurl_media=False, parse="none")
    ts = posted["ts"]
    if charts:
        client.files_upload_v2(
            channel=posted["channel"],
            thread_ts=ts,
            file_uploads=[{"content": png, "filename": name, "title": name.removesuffix(".png").replace("-", " ")}
                          for name, png in charts.items()],
        )
    return ts
