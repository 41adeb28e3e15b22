"""Making user-supplied strings safe to show in a Slack message.

Labels, model names, rule annotations and metric names of usage samples come
from whoever sends us events or writes rules. In Slack's mrkdwn, ``<!channel>``
pings a whole channel, ``<@U123>`` a person and ``<https://evil|click>`` is a
link whose target is hidden, so every such string goes through this module
before it reaches a message. Slack's documentation ("Escaping text") names
three characters to escape, ``&``, ``<`` and ``>``, as HTML entities; with
``<`` gone, no mention, channel link, date or URL link can be formed.

Formatting characters have no escape in mrkdwn, so ``*``, ``_`` and ``~``
are replaced by look-alikes wherever they could open or close formatting, and
the backtick everywhere; between two letters or digits (``search_infra``,
``gpt-4o_mini``) they cannot format and are kept as typed, so identifiers
still read and copy as they are. Control characters become spaces (a newline
in a label must not start a line of its own) and bidirectional overrides are
dropped (they make text display in an order other than the one it has).

The message itself also asks Slack not to pre-process text (``verbatim`` text
objects, ``parse: none``), so a bare ``https://…`` or ``@here`` in a label is
not turned into a link or a mention either; see :mod:`detector.notify.render`.
"""

from __future__ import annotations

import unicodedata
from urllib.parse import quote, urlsplit

ELLIPSIS = "…"

# Look-alikes for the mrkdwn formatting characters: they read the same and format nothing.
FORMATTING_LOOKALIKES: dict[str, str] = {
    "*": "\u2217",  # ∗ asterisk operator
    "_": "\uff3f",  # ＿ fullwidth low line
    "~": "\u223c",  # ∼ tilde operator
    "`": "\u02cb",  # ˋ modifier letter grave accent
}
# In plain_text Slack parses no mentions; these keep '<' and '>' out of every message we build.
ANGLE_LOOKALIKES: dict[str, str] = {"<": "\u2039", ">": "\u203a"}  # ‹ ›
_ENTITIES: dict[str, str] = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")
_INTRA_WORD_OK = frozenset("*_~")


def _normalise(text: str) -> str:
    """Control characters to spaces, bidirectional overrides removed."""
    out = []
    for ch in text:
        if ch in _BIDI_CONTROLS:
            continue
        out.append(" " if unicodedata.category(ch) == "Cc" else ch)
    return "".join(out)


def escape_mrkdwn(text: str) -> str:
    """``text`` as it must appear inside a mrkdwn text object to read as itself.

    >>> escape_mrkdwn("<!channel> & <https://evil|click>")
    '&lt;!channel&gt; &amp; &lt;https://evil|click&gt;'
    >>> escape_mrkdwn("*prod* search_infra `x`")
    '∗prod∗ search_infra ˋxˋ'
    """
    text = _normalise(text)
    out = []
    last = len(text) - 1
    for i, ch in enumerate(text):
        if ch in _ENTITIES:
            out.append(_ENTITIES[ch])
        elif ch in FORMATTING_LOOKALIKES:
            inside_word = (
                ch in _INTRA_WORD_OK and 0 < i < last and text[i - 1].isalnum() and text[i + 1].isalnum()
            )
            out.append(ch if inside_word else FORMATTING_LOOKALIKES[ch])
        else:
            out.append(ch)
    return "".join(out)


def escape_plain(text: str) -> str:
    """``text`` for a plain_text object (a header): no markup is parsed there, but
    Slack does not document how entities show, so angle brackets become look-alikes
    that read the same either way.

    >>> escape_plain("<!here> cost\\nspike")
    '‹!here› cost spike'
    """
    return "".join(ANGLE_LOOKALIKES.get(ch, ch) for ch in _normalise(text))


def code(text: str) -> str:
    """User text shown as inline code; the backtick is always replaced, so it cannot close the span.

    >>> code("a`b <x>")
    '`aˋb &lt;x&gt;`'
    """
    return f"`{escape_mrkdwn(text)}`"


def link(url: str | None, label: str) -> str:
    """A mrkdwn link to an http(s) ``url``, or the escaped text when it is anything else.

    A rule's runbook is user-supplied: ``javascript:`` or a URL smuggling ``|``
    or ``>`` must not become a link with a label of its own choosing.

    >>> link("https://wiki.example.com/run?a=1&b=2", "Runbook")
    '<https://wiki.example.com/run?a=1&amp;b=2|Runbook>'
    >>> link("javascript:alert(1)", "Runbook")
    'Runbook: javascript:alert(1)'
    >>> link("https://evil|click>", "Runbook")
    '<https://evil%7Cclick%3E|Runbook>'
    """
    target = _normalise(url or "").strip()
    try:
        parts = urlsplit(target)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return f"{escape_mrkdwn(label)}: {escape_mrkdwn(target)}" if target else escape_mrkdwn(label)
    safe = quote(target, safe="/:?#[]@!$&'()*+,;=%~-._")  # percent-encodes < > | " space and non-ASCII
    return f"<{safe.replace('&', '&amp;')}|{escape_mrkdwn(label)}>"


def clip(escaped: str, limit: int) -> str:
    """Escaped text cut to ``limit`` characters with "…", never in the middle of an entity.

    >>> clip("a &amp; b", 5), clip("short", 10)
    ('a …', 'short')
    """
    if len(escaped) <= limit:
        return escaped
    head = escaped[: limit - len(ELLIPSIS)]
    amp = head.rfind("&")
    if amp != -1 and ";" not in head[amp:]:
        head = head[:amp]
    return head + ELLIPSIS
