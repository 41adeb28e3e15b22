"""One detection run over a stream of lines: what ``replay`` and ``demo`` share.

It builds the parts from settings (prices, rules with hot reload, engine,
alert pipeline, history), feeds the lines through :func:`replay_lines`, and
routes what comes out: anomaly records to the JSONL file, the terminal and
the alert pipeline; rejects to the dead-letter file; spend to the history
store. Keeping this out of the commands keeps them a page each, and means a
fix to the run is a fix to both.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import orjson
from rich.console import Console

from detector.alerts import AlertPipeline
from detector.alerts.lifecycle import event_time
from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.events import Decoder, Reject
from detector.history import HistoryWriter
from detector.pricing import PriceTable
from detector.replay import ReplaySummary, replay_lines, tune_gc_for_streaming
from detector.report import alert_line
from detector.rules.loader import load_rules_or_raise
from detector.rules.reloader import RuleReloader
from detector.rules.ruleset import RuleSet

PACKAGED_RULES = Path(__file__).parent / "data" / "rules" / "default.yaml"
RELOAD_EVERY_S = 2.0  # wall-clock seconds between looks at the rule files during a long replay


def rule_paths(user: Iterable[Path]) -> list[Path]:
    """The packaged defaults, then the user's files; a user ``default.yaml`` replaces the packaged one.

    >>> [p.name for p in rule_paths([])]
    ['default.yaml']
    """
    user = list(user)
    names = {p.name for p in user if p.is_file()} | {c.name for p in user if p.is_dir() for c in p.iterdir()}
    return user if "default.yaml" in names else [PACKAGED_RULES, *user]


def run_rule_paths(settings: Settings, user: Iterable[Path] = ()) -> list[Path]:
    """The rule files a run reads: packaged defaults, then ``SPENDWATCH_RULES_DIR`` and ``user``."""
    return rule_paths([*([settings.rules_dir] if settings.rules_dir else []), *user])


def rules_in_force(settings: Settings, user: Iterable[Path] = ()) -> RuleSet:
    """The rules a run starts with (see :func:`run_rule_paths`)."""
    return load_rules_or_raise(run_rule_paths(settings, user))


def engine_for(settings: Settings, prices: PriceTable) -> Engine:
    """The engine ``replay`` and the stream worker both run: same settings, same rules, same answers."""
    return Engine(prices, settings, rules=rules_in_force(settings))


class DetectionRun:
    """Engine, rules, alerts and sinks for one run; :meth:`run` feeds it lines."""

    def __init__(self, settings: Settings, prices: PriceTable, console: Console, *, rules: Iterable[Path] = (),
                 quiet: bool = False, history: HistoryWriter | None = None) -> None:
        self.settings = settings
        self.console = console
        self.quiet = quiet
        self.history = history
        self.reloader = RuleReloader(rule_paths(rules), now=time.time())
        self.engine = Engine(prices, settings, rules=self.reloader.current)
        self.pipeline = AlertPipeline.from_settings(settings, rules=self.reloader.current)
        self.records: list[Anomaly] = []
        self._next_look = time.monotonic() + RELOAD_EVERY_S

    def run(self, lines: Iterable[bytes], out: Path | None, deadletter: Path,
            on_chunk: Callable[[int], None] | None = None) -> ReplaySummary:
        """Detect over ``lines``; records go to ``out`` (JSONL), rejects to ``deadletter``."""
        tune_gc_for_streaming()
        with _sinks(out, deadletter) as (write_anomaly, write_reject):
            def on_anomaly(a: Anomaly) -> None:
                write_anomaly(a)
                self.records.append(a)
                self.pipeline.push(a)
                self.pipeline.advance(event_time(a.resolved_at or a.detected_at))
                if self.history is not None:
                    self.history.add_anomaly(a)
                if not self.quiet:
                    self.console.print(alert_line(a))

            def chunk(n: int) -> None:
                self._maybe_reload(on_anomaly)
                if self.engine.watermark > 0:
                    self.pipeline.advance(self.engine.watermark)
                if on_chunk is not None:
                    on_chunk(n)

            on_events = self.history.add_events if self.history is not None else None
            summary = replay_lines(lines, self.engine, Decoder(self.settings), on_anomaly=on_anomaly,
                                   on_reject=write_reject, on_chunk=chunk, on_events=on_events)
        self.pipeline.flush()
        if self.history is not None:
            self.history.flush()
        return summary

    def _maybe_reload(self, on_anomaly: Callable[[Anomaly], None]) -> None:
        """Pick up changed rule files mid-run; a broken file is refused and the rules in force stay."""
        now = time.monotonic()
        if now < self._next_look:
            return
        self._next_look = now + RELOAD_EVERY_S
        if self.reloader.poll(time.time()):
            for record in self.engine.use_rules(self.reloader.current, self.engine.watermark):
                on_anomaly(record)
        for error in self.reloader.last_errors:
            self.console.print(f"rules refused, previous rules stay in force: {error}", markup=False,
                               style="yellow")

    def deliver(self) -> None:
        """Send what the outboxes hold; what a receiver refused waits there for the next run."""
        report = self.pipeline.deliver_pending()
        slack = report.slack
        if slack is not None:
            line = f"Slack: {len(slack.delivered)} delivered"
            if slack.summarised:
                line += f", {len(slack.summarised)} summarised"
            if slack.pending:
                line += f", {slack.pending} still pending in the outbox (sent on the next run)"
            self.console.print(line, markup=False)
            for key, error in slack.failed:
                self.console.print(f"Slack: {key}: {error}", markup=False, style="yellow")
        if report.webhook is not None:
            self.console.print(f"webhook: {report.webhook}", markup=False)

    def close(self) -> None:
        self.pipeline.close()


@contextmanager
def _sinks(out: Path | None, deadletter: Path) -> Iterator[tuple[Callable[[Anomaly], None], Callable[[Reject], None]]]:
    """Writers for anomaly records and rejects; the dead-letter file is made only if needed."""
    out_file = out.open("wb") if out else None
    dead: list[BinaryIO] = []

    def write_anomaly(a: Anomaly) -> None:
        if out_file:
            out_file.write(orjson.dumps(a.to_dict()) + b"\n")

    def write_reject(r: Reject) -> None:
        if not dead:
            dead.append(deadletter.open("wb"))
        dead[0].write(orjson.dumps({"line": r.line, "code": r.code, "reason": r.reason, "raw": r.raw}) + b"\n")

    try:
        yield write_anomaly, write_reject
    finally:
        if out_file:
            out_file.close()
        for f in dead:
            f.close()
