"""Slack messages shown in a terminal: what ``spendwatch demo`` would post, readable as text.

Takes the Block Kit messages exactly as they would be sent and draws each as
a panel: the header as its title, sections and fields as lines, the context
dimmed. mrkdwn is turned back into what Slack would display (entities
decoded, ``<url|label>`` as "label (url)", ``*bold*`` in bold) and printed
as rich :class:`~rich.text.Text`, never as rich markup, so a label such as
``[bold]`` or ``[/]`` prints as itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.text import Text

EMOJI = {":red_circle:": "🔴", ":large_orange_circle:": "🟠", ":large_blue_circle:": "🔵",
         ":white_check_mark:": "✅", ":repeat:": "🔁", ":book:": "📖", ":hourglass:": "⌛"}
BORDER = {"firing": "red", "reminder": "yellow", "resolved": "green"}
_LINK = re.compile(r"<(https?://[^|>]+)\|([^>]*)>")
_BOLD = re.compile(r"(?<![\w*])\*([^*\n]+)\*(?![\w*])")


def _emoji(text: str) -> str:
    for code, char in EMOJI.items():
        text = text.replace(code, char)
    return text


def _decoded(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def mrkdwn_text(source: str) -> Text:
    """A mrkdwn string as the styled text Slack would display.

    >>> mrkdwn_text("*Cost now* $41 per hour &lt;!channel&gt; <https://w.example/r|Open the runbook>").plain
    'Cost now $41 per hour <!channel> Open the runbook (https://w.example/r)'
    """
    source = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})", _emoji(source))
    out, pos = Text(), 0
    for m in _BOLD.finditer(source):
        out.append(_decoded(source[pos:m.start()]))
        out.append(_decoded(m.group(1)), style="bold")
        pos = m.end()
    out.append(_decoded(source[pos:]))
    return out


def message_panel(message: dict[str, Any], *, channel: str = "", kind: str = "firing") -> Panel:
    """One Block Kit message as a panel titled by its header."""
    title, parts = Text(channel + "  ", style="dim"), []
    for block in message.get("blocks", []):
        kind_of = block.get("type")
        if kind_of == "header":
            title.append(_emoji(block["text"]["text"]), style="bold")
        elif kind_of == "section":
            if "text" in block:
                parts.append(mrkdwn_text(block["text"]["text"]))
            fields = [mrkdwn_text(f["text"].replace("\n", ": ", 1)) for f in block.get("fields", [])]
            parts += fields
        elif kind_of == "context":
            parts += [Text.assemble(mrkdwn_text(e["text"]), style="dim") for e in block.get("elements", [])]
    if not parts:
        parts.append(mrkdwn_text(message.get("text", "")))
    return Panel(Group(*parts), title=title, title_align="left", border_style=BORDER.get(kind, "white"))


def print_messages(console: Console, messages: Iterable[tuple[str, str, dict[str, Any]]]) -> int:
    """Print (channel, kind, message) triples as panels; returns how many were printed."""
    count = 0
    for channel, kind, message in messages:
        console.print(message_panel(message, channel=channel, kind=kind))
        count += 1
    if count == 0:
        console.print(Text("no Slack messages would be sent", style="dim"))
    return count
