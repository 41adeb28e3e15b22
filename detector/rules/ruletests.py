"""Rule unit tests, in the spirit of ``promtool test rules``: input series in, expected alerts at given times.

A test file names the rule files it tests and lists tests; each test gives
input series in the compact notation of :mod:`~detector.rules.series_notation`
and, at chosen evaluation times, the alerts of one alert name (or rule id)
expected to be firing, with their labels. The runner turns the series into
events (:mod:`~detector.rules.synthesis`), runs all of detection over them
in event time (:class:`~detector.rules.detection.Detection`) and compares.
Every mismatch is reported, as ``path:line:col: test "name": eval_time 45m,
alertname "X": …`` with what was expected and what was found. The test file
is read by the same safe reader as rule files. See ``rules/tests/``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
)

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.pricing import PriceTable
from detector.rules.detection import Detection
from detector.rules.diagnostics import (
    Loc,
    Problem,
    fail,
    format_error,
    from_validation,
    quote,
    show,
)
from detector.rules.durations import format_duration
from detector.rules.loader import load_rules, read_capped
from detector.rules.ruleset import RuleSet
from detector.rules.schema import Duration, Labels
from detector.rules.series_notation import (
    NotationError,
    Series,
    parse_series,
    parse_values,
)
from detector.rules.source import Document, read_document
from detector.rules.synthesis import events_of

_CONFIG = ConfigDict(strict=True, frozen=True, extra="forbid", allow_inf_nan=False)
DEFAULT_START = "2026-11-02T00:00:00Z"  # a Monday, early in a month


def _rfc3339(value: str) -> float:
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        raise ValueError(f"not an RFC 3339 time: {quote(value)} (expected e.g. {DEFAULT_START})") from None


def _start(value: Any) -> str:
    if not isinstance(value, str):
        raise fail(f"found {show(value)}", f"an RFC 3339 time in quotes, e.g. {quote(DEFAULT_START)}")
    try:
        _rfc3339(value)
    except ValueError:
        raise fail(f"not an RFC 3339 time: {quote(value)}", f"e.g. {quote(DEFAULT_START)}") from None
    return value


def _notation(parse: Any) -> Any:
    def check(value: Any) -> Any:
        try:
            parse(value)
        except NotationError as exc:
            raise fail(str(exc), exc.expected, exc.suggestion) from None
        return value
    return check


class InputSeries(BaseModel):
    model_config = _CONFIG
    series: Annotated[str, AfterValidator(_notation(parse_series))]
    values: Annotated[str, AfterValidator(_notation(parse_values))]


class ExpectedAlert(BaseModel):
    model_config = _CONFIG
    exp_labels: Labels = {}
    exp_severity: str | None = None
    exp_summary: str | None = None


class AlertCheck(BaseModel):
    model_config = _CONFIG
    eval_time: Duration
    alertname: str
    exp_alerts: list[ExpectedAlert] = []


class RuleTestCase(BaseModel):
    model_config = _CONFIG
    name: str
    interval: Duration = 60.0
    start: Annotated[str, PlainValidator(_start)] = DEFAULT_START
    requests_per_interval: int = Field(20, ge=1, le=10_000)
    input_series: list[InputSeries]
    alert_rule_test: list[AlertCheck] = []


class RuleTestFile(BaseModel):
    model_config = _CONFIG
    rule_files: list[str] = Field(min_length=1)
    tests: list[RuleTestCase]


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What one test file gave: how many checks ran, and every failure as a one-line message."""

    path: str
    checks: int
    failures: list[str]

    @property
    def ok(self) -> bool:
        return not self.failures


def run_test_file(path: Path, prices: PriceTable | None = None, settings: Settings | None = None) -> Outcome:
    """Load ``path`` and its rule files, run every test, and compare; never raises on bad input."""
    raw = read_capped(path)
    doc, problems = read_document(str(path), raw)
    if doc is None or problems:
        return Outcome(str(path), 0, [_where(str(path), doc, p) for p in problems])
    try:
        spec = RuleTestFile.model_validate(doc.data)
    except ValidationError as exc:
        return Outcome(str(path), 0, [_where(str(path), doc, p) for p in from_validation(exc, RuleTestFile, doc.data)])
    loaded = load_rules([path.parent / name for name in spec.rule_files])
    if isinstance(loaded, list):
        return Outcome(str(path), 0, [f"{path}: rule_files: {format_error(e)}" for e in loaded])
    prices = prices or PriceTable.packaged()
    failures: list[str] = []
    checks = 0
    for i, case in enumerate(spec.tests):
        found = _run_case(case, loaded, prices, settings or Settings())
        for j, check in enumerate(case.alert_rule_test):
            checks += 1
            loc: Loc = ("tests", i, "alert_rule_test", j)
            for message in _compare(case, check, found, loaded):
                failures.append(_where(str(path), doc, Problem(loc, message)))
    return Outcome(str(path), checks, failures)


def _run_case(case: RuleTestCase, rules: RuleSet, prices: PriceTable, settings: Settings) -> list[tuple[float, Anomaly]]:
    """Every record detection gave, with the event time it was given at."""
    start = _rfc3339(case.start)
    events = []
    for item in case.input_series:
        series: Series = parse_series(item.series)
        events += events_of(series, parse_values(item.values), start=start, interval=case.interval,
                            requests=case.requests_per_interval)
    events.sort(key=lambda e: e.ts)
    detection = Detection(rules, prices, settings)
    seen: list[tuple[float, Anomaly]] = []
    for ev in events:
        seen += [(ev.ts, a) for a in detection.process(ev)]
    end = start + max((c.eval_time for c in case.alert_rule_test), default=0.0)
    for minute in range(int(events[-1].ts // 60) + 1 if events else int(start // 60), int(end // 60) + 1):
        seen += [(minute * 60.0, a) for a in detection.advance(minute * 60.0)]
    return seen


def firing_at(seen: list[tuple[float, Anomaly]], t: float) -> list[Anomaly]:
    """The alerts firing at ``t``: fired at or before it and not resolved by then."""
    active: dict[str, Anomaly] = {}
    for at, record in seen:
        if at > t:
            continue
        if record.status == "firing":
            active[record.id] = record
        else:
            active.pop(record.id, None)
    return list(active.values())


def _names(record: Anomaly, rules: RuleSet) -> set[str]:
    """The names a check may use for a record: its rule id and the alert name of the rule that produced it."""
    names = {record.rule}
    for rule in rules.for_series(record.labels, record.metric):
        if rule.id == record.rule:
            names.add(rule.alert)
    return names


def _compare(case: RuleTestCase, check: AlertCheck, seen: list[tuple[float, Anomaly]], rules: RuleSet) -> list[str]:
    t = _rfc3339(case.start) + check.eval_time
    got = [a for a in firing_at(seen, t) if check.alertname in _names(a, rules)]
    head = f"test {quote(case.name)}, eval_time {format_duration(check.eval_time)}, alertname {quote(check.alertname)}"
    unmatched = list(got)
    messages = []
    for expected in check.exp_alerts:
        match = next((a for a in unmatched if a.labels == expected.exp_labels), None)
        if match is None:
            messages.append(f"{head}: expected an alert with labels {_show(expected.exp_labels)}, "
                            f"got {_show_all(got)}")
            continue
        unmatched.remove(match)
        if expected.exp_severity is not None and match.severity != expected.exp_severity:
            messages.append(f"{head}: expected severity {quote(expected.exp_severity)}, got {quote(match.severity)}")
        if expected.exp_summary is not None and match.summary != expected.exp_summary:
            messages.append(f"{head}: expected summary {quote(expected.exp_summary)}, got {quote(match.summary)}")
    for extra in unmatched:
        messages.append(f"{head}: unexpected alert with labels {_show(extra.labels)} "
                        f"(fired at {extra.detected_at}, {extra.summary})")
    return messages


def _show(labels: dict[str, str]) -> str:
    return "{" + ", ".join(f"{k}={quote(v)}" for k, v in sorted(labels.items())) + "}"


def _show_all(records: Sequence[Anomaly]) -> str:
    return "no alert" if not records else " and ".join(_show(r.labels) for r in records)


def _where(path: str, doc: Document | None, problem: Problem) -> str:
    pos = problem.pos or (doc.pos(problem.loc, on_key=problem.on_key) if doc else None)
    where = f"{path}:{pos.line}:{pos.col}" if pos and pos.line else path
    text = f"{where}: {problem.message}"
    if problem.expected:
        text += f" (expected {problem.expected})"
    if problem.suggestion:
        text += f"; did you mean {quote(problem.suggestion)}?"
    return " ".join(text.split("\n"))
