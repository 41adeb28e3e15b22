"""Anomaly records as Slack messages (Block Kit): pure, no I/O.

An on-call engineer reads the alert on a phone, so it answers in order: how
loud (severity), what changed, where (team / feature / model), observed
against normal, since when, what it costs now and by month end (always with
the unit written out), what drives it, where the runbook is and how to
silence it. A resolved anomaly gives two messages: a short reply in the
alert's thread and the original alert rewritten to show it resolved, how long
it lasted and what it cost in all.

Every user-supplied string goes through :mod:`detector.notify.escape`, and
every mrkdwn text object is ``verbatim`` so Slack does not turn a bare URL or
``@here`` inside a label into a link or a mention. Every text is clipped to
Slack's limits with "…", so a huge label cannot get a message rejected.
How a value, a time, a duration or the silence command is worded lives in
:mod:`detector.notify.wording`; this module lays those words out as blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from detector.anomaly import Anomaly, cause_part, money, vs_normal, where
from detector.notify.blocks import FIELD_MAX, FIELDS_MAX, SECTION_MAX
from detector.notify.blocks import context as _context
from detector.notify.blocks import header as _header
from detector.notify.blocks import message as _message
from detector.notify.blocks import mrkdwn as _mrkdwn
from detector.notify.blocks import section as _section
from detector.notify.escape import clip, code, escape_mrkdwn, link
from detector.notify.wording import (
    duration_text,
    format_value,
    parse_rfc3339,
    silence_command,
    utc_text,
    what_changed,
)

DRIVERS_SHOWN = 5

SEVERITY_ICONS = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}
RESOLVED_ICON = ":white_check_mark:"
WHERE_LABELS = ("team", "feature", "model")
REQUIRED = (
    "id", "rule", "metric", "labels", "severity", "status", "started_at", "detected_at",
    "observed", "baseline", "ratio", "excess_cost_usd_per_hour", "summary",
)

class Driver(NamedTuple):
    """One contributor to an anomaly's excess spend, e.g. a feature on a model."""

    labels: dict[str, str]
    usd_per_hour: float


class Resolved(NamedTuple):
    """The two messages of a resolved anomaly: thread reply and rewritten original."""

    reply: dict[str, Any]
    original: dict[str, Any]


def render_alert(
    anomaly: Anomaly | Mapping[str, Any],
    *,
    silence_hint: str | None = None,
    drivers: Sequence[Driver] | None = None,
) -> dict[str, Any]:
    """The firing alert: ``{"text": fallback, "blocks": [...]}`` for chat.postMessage.

    ``silence_hint`` defaults to :func:`silence_command` for the alert's rule
    and labels; the record's ``drivers`` (causes → $/h) or ``drivers`` given
    here (contributors) add the breakdown, its ``related`` what was merged in.

    >>> msg = render_alert(_example())
    >>> msg["blocks"][0]["text"]["text"]
    ':red_circle: Critical: input tokens per request doubled'
    >>> [f["text"] for f in msg["blocks"][2]["fields"]][-2:]
    ['*Cost now*\\n$41 per hour above normal', '*Projected*\\n$29,800 by month end']
    """
    record = as_record(anomaly)
    hint = silence_hint if silence_hint is not None else silence_command(str(record["rule"]), _labels(record))
    blocks = [
        _header(f"{SEVERITY_ICONS.get(record['severity'], '')} {record['severity'].capitalize()}: {what_changed(record)}"),
        _section(escape_mrkdwn(record["summary"])),
        {"type": "section", "fields": _fields(record)},
        *_other_labels(record),
        *_drivers(record, drivers),
        *_related(record),
        _section(_runbook(record)),
        _context(f"Silence it: {code(hint)}", _ids(record)),
    ]
    return _message(_fallback(record, record["severity"].upper()), blocks)


def render_resolved(
    anomaly: Anomaly | Mapping[str, Any],
    *,
    firing: Anomaly | Mapping[str, Any] | None = None,
    total_usd: float | None = None,
    drivers: Sequence[Driver] | None = None,
) -> Resolved:
    """The resolved notice (thread reply) and the original alert rewritten as resolved.

    ``firing`` is the record the original message showed (its summary is kept);
    ``total_usd`` the excess spend over the whole anomaly (or the record's
    ``excess_total_usd``). Without either, the total is estimated as the excess
    rate at detection times the duration, and marked "(estimated)".

    >>> done = render_resolved(_example().resolve("2025-11-16T15:40:00Z", "Back to normal after 1h 35m"))
    >>> done.reply["blocks"][0]["text"]["text"]
    ':white_check_mark: *Resolved* after 1h 35m: Back to normal after 1h 35m'
    >>> done.original["blocks"][0]["text"]["text"]
    ':white_check_mark: Resolved: input tokens per request doubled'
    """
    record = as_record(anomaly)
    shown = as_record(firing) if firing is not None else record
    lasted, total = _lasted(record), _total(record, total_usd)
    reply = [
        _section(f"{RESOLVED_ICON} *Resolved* after {lasted}: {escape_mrkdwn(record['summary'])}"),
        _context(f"{total} · resolved {utc_text(record['resolved_at'])}", _ids(record)),
    ]
    original = [
        _header(f"{RESOLVED_ICON} Resolved: {what_changed(shown)}"),
        _section(
            f"*Resolved* {utc_text(record['resolved_at'])} after {lasted}; {total}.\n"
            f"~{escape_mrkdwn(shown['severity'])}~ {escape_mrkdwn(shown['summary'])}"
        ),
        {"type": "section", "fields": _fields(shown, resolved=True)},
        *_other_labels(shown),
        *_drivers(shown, drivers),
        _section(_runbook(shown)),
        _context(_ids(record)),
    ]
    fallback = f"RESOLVED after {lasted} ({total}): {_fallback(shown, shown['severity'].upper())}"
    return Resolved(
        reply=_message(f"RESOLVED after {lasted}: {escape_mrkdwn(record['summary'])}", reply),
        original=_message(fallback, original),
    )


def render_reminder(anomaly: Anomaly | Mapping[str, Any], *, at: str) -> dict[str, Any]:
    """A reply in the alert's thread while it still fires: how long, and what it has cost so far.

    >>> msg = render_reminder(_example(), at="2025-11-16T18:05:00Z")
    >>> msg["text"]
    'Still firing after 4h 00m: input tokens per request doubled for search/summarize on gpt-4o, $41 per hour above normal'
    """
    record = as_record(anomaly)
    lasted = duration_text((parse_rfc3339(at) - parse_rfc3339(record["started_at"])).total_seconds())
    excess = float(record["excess_cost_usd_per_hour"])
    hours = (parse_rfc3339(at) - parse_rfc3339(record["started_at"])).total_seconds() / 3600
    text = (
        f":repeat: *Still firing* after {lasted}: {vs_normal(excess, ' per hour')}, "
        f"about {money(abs(excess) * hours)} {'above' if excess >= 0 else 'below'} normal in all so far (estimated)."
    )
    fallback = (f"Still firing after {lasted}: {escape_mrkdwn(what_changed(record))} for "
                f"{escape_mrkdwn(where(_labels(record)))}, {vs_normal(excess, ' per hour')}")
    return _message(fallback, [_section(text), _context(_ids(record))])


def render_summary(records: Sequence[Mapping[str, Any]], *, reason: str) -> dict[str, Any]:
    """One message standing for many delayed notifications, so a backlog is not a flood.

    >>> render_summary([_example().to_dict()], reason="a Slack outage")["text"]
    '1 notification delayed by a Slack outage: 1 firing, 0 resolved'
    """
    firing = [r for r in records if r["status"] == "firing"]
    head = (
        f"{len(records)} notification{'s' if len(records) != 1 else ''} delayed by {reason}: "
        f"{len(firing)} firing, {len(records) - len(firing)} resolved"
    )
    lines = []
    by_cost = sorted(records, key=lambda r: -abs(float(r["excess_cost_usd_per_hour"])))
    for r in by_cost[:20]:
        state = "resolved" if r["status"] == "resolved" else r["severity"]
        lines.append(
            f"• {escape_mrkdwn(state)}: {escape_mrkdwn(what_changed(r))} for {escape_mrkdwn(where(_labels(r)))}, "
            f"{money(float(r['excess_cost_usd_per_hour']))} per hour, since {utc_text(r['started_at'])} "
            f"(id {code(str(r['id']))})"
        )
    if len(by_cost) > 20:
        lines.append(f"… and {len(by_cost) - 20} more")
    blocks = [_header(":hourglass: " + head), _section("\n".join(lines))]
    return _message(head, blocks)


# -- pieces -------------------------------------------------------------------
def as_record(anomaly: Anomaly | Mapping[str, Any]) -> dict[str, Any]:
    """The record as a plain dict (what the outbox stores), checked for the fields we render.

    >>> as_record({"id": "x"})  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: anomaly record 'x': expected the fields of Contract 3, missing rule, metric, labels, ..., summary
    """
    record = anomaly.to_dict() if isinstance(anomaly, Anomaly) else dict(anomaly)
    subject = f"anomaly record {record.get('id')!r}"
    missing = [k for k in REQUIRED if k not in record]
    if missing:
        raise ValueError(f"{subject}: expected the fields of Contract 3, missing {', '.join(missing)}")
    if record["status"] not in ("firing", "resolved"):
        raise ValueError(f"{subject}: status must be firing or resolved, found {record['status']!r}")
    stamps = ["started_at", "detected_at"] + (["resolved_at"] if record["status"] == "resolved" else [])
    for key in stamps:
        try:
            parse_rfc3339(record[key])
        except (TypeError, ValueError):
            raise ValueError(f"{subject}: {key} must be an RFC 3339 time, found {record.get(key)!r}") from None
    for key in ("observed", "baseline", "ratio", "excess_cost_usd_per_hour"):
        if not isinstance(record[key], int | float):
            raise ValueError(f"{subject}: {key} must be a number, found {record[key]!r}")
    return record


def _labels(record: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in (record.get("labels") or {}).items()}


def _fields(record: Mapping[str, Any], *, resolved: bool = False) -> list[dict[str, Any]]:
    """The facts side by side; on a resolved card the money is what it was when detected."""
    labels, metric = _labels(record), str(record["metric"])
    observed, baseline = float(record["observed"]), float(record["baseline"])
    excess = float(record["excess_cost_usd_per_hour"])
    projected = record.get("projected_month_usd")
    fields = [(k.capitalize(), escape_mrkdwn(labels[k])) for k in WHERE_LABELS if labels.get(k)]
    fields += [
        ("Observed", f"{format_value(metric, observed)} ({float(record['ratio']):.1f}× normal)"),
        ("Normal", format_value(metric, baseline)),
        ("Since", f"{utc_text(record['started_at'])} (detected {utc_text(record['detected_at'])[11:]})"),
        (
            "Cost when detected" if resolved else "Cost now",
            vs_normal(excess, " per hour"),
        ),
        (
            "Projected",
            "not yet (no spend this month)" if projected is None else f"{money(float(projected))} by month end",
        ),
    ]
    return [_mrkdwn(clip(f"*{title}*\n{text}", FIELD_MAX)) for title, text in fields[:FIELDS_MAX]]


def _other_labels(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    rest = {k: v for k, v in _labels(record).items() if k not in WHERE_LABELS}
    if not rest:
        return []
    pairs = " · ".join(f"{escape_mrkdwn(k)}={escape_mrkdwn(v)}" for k, v in sorted(rest.items()))
    return [_context(f"Labels: {pairs}")]


def _drivers(record: Mapping[str, Any], drivers: Sequence[Driver] | None) -> list[dict[str, Any]]:
    causes = record.get("drivers")
    if drivers is None and isinstance(causes, Mapping):
        return _causes(causes)
    if drivers is None:
        drivers = [Driver(dict(d["labels"]), float(d["usd_per_hour"])) for d in causes or ()]
    if not drivers:
        return []
    ranked = sorted(drivers, key=lambda d: -abs(d.usd_per_hour))
    total = sum(abs(d.usd_per_hour) for d in ranked) or 1.0
    lines = [
        f"• {escape_mrkdwn(where({str(k): str(v) for k, v in d.labels.items()}))}: "
        f"{money(d.usd_per_hour)} per hour ({abs(d.usd_per_hour) / total:.0%} of the excess)"
        for d in ranked[:DRIVERS_SHOWN]
    ]
    if len(ranked) > DRIVERS_SHOWN:
        lines.append(f"… and {len(ranked) - DRIVERS_SHOWN} more")
    return [_section("*What drives it*\n" + "\n".join(lines))]


def _causes(causes: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``+$30/h longer prompts, +$8/h more requests``: the excess split by cause, largest first."""
    ranked = sorted(((str(k), float(v)) for k, v in causes.items()), key=lambda kv: -abs(kv[1]))
    parts = [
        escape_mrkdwn(cause_part(cause, usd))
        for cause, usd in ranked[:DRIVERS_SHOWN] if usd
    ]
    if not parts:
        return []
    return [_section("*What drives it* (excess dollars per hour, by cause)\n" + ", ".join(parts))]


def _related(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    related = [str(r) for r in record.get("related") or ()]
    if not related:
        return []
    return [_context("Also moved, merged into this alert: " + ", ".join(escape_mrkdwn(r) for r in related))]


def _runbook(record: Mapping[str, Any]) -> str:
    runbook = record.get("runbook")
    if not runbook:
        return f"No runbook is linked to rule {code(str(record['rule']))}."
    text = f":book: {link(str(runbook), 'Open the runbook')}"
    return text if len(text) <= SECTION_MAX else f":book: Runbook: {escape_mrkdwn(str(runbook))}"


def _ids(record: Mapping[str, Any]) -> str:
    return f"Rule {code(str(record['rule']))} · alert {code(str(record['id']))}"


def _lasted(record: Mapping[str, Any]) -> str:
    end = record.get("resolved_at") or record["detected_at"]
    return duration_text((parse_rfc3339(end) - parse_rfc3339(record["started_at"])).total_seconds())


def _total(record: Mapping[str, Any], total_usd: float | None) -> str:
    if total_usd is None and record.get("excess_total_usd") is not None:
        total_usd = float(record["excess_total_usd"])
    if total_usd is not None:
        return f"{vs_normal(total_usd)} in all"
    end = record.get("resolved_at") or record["detected_at"]
    hours = (parse_rfc3339(end) - parse_rfc3339(record["started_at"])).total_seconds() / 3600
    estimate = float(record["excess_cost_usd_per_hour"]) * hours
    return f"about {vs_normal(estimate)} in all (estimated)"


def _fallback(record: Mapping[str, Any], loudness: str) -> str:
    excess = float(record["excess_cost_usd_per_hour"])
    return (
        f"[{loudness}] {escape_mrkdwn(what_changed(record))} for {escape_mrkdwn(where(_labels(record)))}: "
        f"{vs_normal(excess, ' per hour')}"
    )


def _example() -> Anomaly:
    """A record for the examples above."""
    return Anomaly(
        id="3f2a9c", rule="search.prompt-length", metric="input_tokens_per_request",
        labels={"team": "search", "feature": "summarize", "model": "gpt-4o"}, severity="critical",
        status="firing", started_at="2025-11-16T14:05:00Z", detected_at="2025-11-16T14:12:00Z",
        resolved_at=None, observed=3400.0, baseline=1700.0, ratio=2.0, excess_cost_usd_per_hour=41.2,
        projected_month_usd=29800.0, summary="Input tokens per request for search/summarize on gpt-4o doubled",
        runbook="https://wiki.example.com/runbooks/prompt-length",
    )
