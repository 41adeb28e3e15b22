"""Block Kit's building blocks, each kept within Slack's limits.

Every mrkdwn text object is ``verbatim``, so Slack does not turn a bare URL
or ``@here`` into a link or a mention; every text is clipped with "…" to
the limit of where it goes, so a huge label cannot get a message refused;
a header is plain text with angle brackets replaced by look-alikes.
"""

from __future__ import annotations

from typing import Any

from detector.notify.escape import clip, escape_plain

# Slack's Block Kit limits (characters and counts) that our messages can reach.
HEADER_MAX = 150
SECTION_MAX = 3000
FIELD_MAX = 2000
FIELDS_MAX = 10
CONTEXT_MAX = 2000
BLOCKS_MAX = 50
FALLBACK_MAX = 3000


def mrkdwn(text: str) -> dict[str, Any]:
    """A mrkdwn text object, not pre-processed by Slack.

    >>> mrkdwn("*x*")
    {'type': 'mrkdwn', 'text': '*x*', 'verbatim': True}
    """
    return {"type": "mrkdwn", "text": text, "verbatim": True}


def header(text: str) -> dict[str, Any]:
    """A header block; ``text`` is raw (it is made plain and clipped here).

    >>> header("<!here> " + "x" * 200)["text"]["text"][:9], len(header("x" * 200)["text"]["text"])
    ('‹!here› x', 150)
    """
    text = clip(escape_plain(text), HEADER_MAX)
    return {"type": "header", "text": {"type": "plain_text", "text": text, "emoji": True}}


def section(text: str) -> dict[str, Any]:
    """A section of escaped mrkdwn; Slack refuses an empty one, and a record's summary may be empty.

    >>> section("  ")["text"]["text"]
    '—'
    """
    return {"type": "section", "text": mrkdwn(clip(text, SECTION_MAX) if text.strip() else "—")}


def context(*texts: str) -> dict[str, Any]:
    """A context block of escaped mrkdwn texts (small, grey)."""
    return {"type": "context", "elements": [mrkdwn(clip(t, CONTEXT_MAX)) for t in texts]}


def message(fallback: str, blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """``{"text": fallback, "blocks": [...]}``, the fallback shown in notifications and old clients."""
    return {"text": clip(fallback, FALLBACK_MAX), "blocks": blocks[:BLOCKS_MAX]}
