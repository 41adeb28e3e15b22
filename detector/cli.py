"""The ``spendwatch`` command (DESIGN.md, Contract 4).

Each command builds its parts from settings, runs, and reports; none holds
detection logic. Settings come from flags and ``SPENDWATCH_*`` variables,
validated once here, so a bad value stops the command before any work with a
message that names the setting.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
import orjson
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.errors import SpendwatchError
from detector.events import Decoder, Reject
from detector.inputs import LineSource, open_events
from detector.notify import SlackNotifier
from detector.rules import check_paths, format_error
from detector.pricing import PriceTable
from detector.replay import ReplaySummary, replay_lines, tune_gc_for_streaming
from detector.report import alert_line, print_summary, spend_table
from detector.simulate import DEFAULT_START, Simulation, parse_incident, write_simulation
from detector.simulate import simulate as simulate_traffic

err = Console(stderr=True, soft_wrap=True)


def _settings(**flags: Any) -> Settings:
    try:
        return Settings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"bad setting: {problems}") from None


def _prices(settings: Settings) -> PriceTable:
    try:
        return PriceTable.load(settings.prices)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="spendwatch")
def main() -> None:
    """spendwatch: streaming anomaly detection for AI spend.

    Reads LLM usage events and GPU samples, learns how every team, feature
    and model normally behaves, and reports what changed, where, since when
    and what it costs, in minutes.
    """


prices_option = click.option(
    "--prices",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="SPENDWATCH_PRICES",
    show_envvar=True,
    help="Price file (LiteLLM layout) that overrides or extends the packaged table.",
)


@main.command()
@click.argument("events", metavar="EVENTS")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write anomaly records here (JSONL).")
@click.option(
    "--deadletter",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write rejected events here (default: OUT.deadletter.jsonl, or ./spendwatch-deadletter.jsonl).",
)
@prices_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary, not each alert.")
def replay(events: str, out: Path | None, deadletter: Path | None, prices: Path | None, quiet: bool) -> None:
    """Run detection over EVENTS, a JSONL file of usage events (- for stdin, .gz accepted).

    Detection runs in event time, so the alerts are those the live stream
    would have raised. Rejected events go to a dead-letter file with the
    reason; the command exits 0 unless the input cannot be read.

    \b
    Example:
      spendwatch simulate --days 2 --incident prompt_doubling@1d10h --out events.jsonl
      spendwatch replay events.jsonl --out anomalies.jsonl
    """
    settings = _settings(prices=prices)
    engine = Engine(_prices(settings), settings)
    decoder = Decoder(settings)
    notifier = _notifier(settings)
    tune_gc_for_streaming()
    if deadletter is None:
        deadletter = out.with_name(out.name + ".deadletter.jsonl") if out else Path("spendwatch-deadletter.jsonl")
    console = Console(soft_wrap=True)
    started = time.perf_counter()
    try:
        with open_events(events) as source, _sinks(out, deadletter) as (write_anomaly, write_reject):
            def on_anomaly(a: Anomaly) -> None:
                write_anomaly(a)
                if notifier is not None:
                    notifier.notify(a)
                if not quiet:
                    console.print(alert_line(a))

            summary = _run_with_progress(source, engine, decoder, on_anomaly, write_reject, console)
    except SpendwatchError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        sys.exit(2)
    except (OSError, EOFError) as exc:
        err.print(f"error: {events}: cannot read: {exc}", markup=False)
        sys.exit(2)
    print_summary(console, summary, time.perf_counter() - started)
    if notifier is not None:
        _deliver(notifier, console)
    if out:
        console.print(f"anomalies written to {out}", markup=False)
    if summary.rejected:
        console.print(f"rejected events written to {deadletter}", markup=False)


def _notifier(settings: Settings) -> SlackNotifier | None:
    """The Slack notifier the settings ask for, or None when no token or webhook is set."""
    token = settings.slack_token
    if not (token or settings.slack_token_file or settings.slack_webhook_url):
        return None
    try:
        return SlackNotifier.from_settings(
            token=token,
            webhook_url=settings.slack_webhook_url,
            channel=settings.slack_channel,
            api_url=settings.slack_api_url,
            token_file=settings.slack_token_file,
            outbox_path=settings.slack_outbox,
            max_age_s=settings.slack_max_age_s,
        )
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None


def _deliver(notifier: SlackNotifier, console: Console) -> None:
    """Send what the outbox holds; what Slack refused waits there for the next run."""
    report = notifier.deliver_pending()
    notifier.close()
    line = f"Slack: {len(report.delivered)} delivered"
    if report.summarised:
        line += f", {len(report.summarised)} summarised"
    if report.pending:
        line += f", {report.pending} still pending in the outbox (sent on the next run)"
    console.print(line, markup=False)
    for key, error in report.failed:
        console.print(f"Slack: {key}: {error}", markup=False, style="yellow")


@contextmanager
def _sinks(
    out: Path | None, deadletter: Path
) -> Iterator[tuple[Callable[[Anomaly], None], Callable[[Reject], None]]]:
    """Writers for anomaly records and rejects; the dead-letter file is made only if needed."""
    out_file = out.open("wb") if out else None
    dead: list[BinaryIO] = []

    def write_anomaly(a: Anomaly) -> None:
        if out_file:
            out_file.write(orjson.dumps(a.to_dict()) + b"\n")

    def write_reject(r: Reject) -> None:
        if not dead:
            dead.append(deadletter.open("wb"))
        dead[0].write(
            orjson.dumps({"line": r.line, "code": r.code, "reason": r.reason, "raw": r.raw}) + b"\n"
        )

    try:
        yield write_anomaly, write_reject
    finally:
        if out_file:
            out_file.close()
        for f in dead:
            f.close()


def _run_with_progress(
    source: LineSource,
    engine: Engine,
    decoder: Decoder,
    on_anomaly: Callable[[Anomaly], None],
    on_reject: Callable[[Reject], None],
    console: Console,
) -> ReplaySummary:
    """Replay with a progress bar over the file's bytes when a person is watching."""
    show = console.is_terminal and source.total_bytes
    progress = (
        Progress(
            TextColumn("replaying"),
            BarColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        if show
        else nullcontext()
    )
    with progress as bar:
        if bar is None:
            return replay_lines(source, engine, decoder, on_anomaly=on_anomaly, on_reject=on_reject)
        task = bar.add_task("replay", total=source.total_bytes)
        return replay_lines(
            source,
            engine,
            decoder,
            on_anomaly=on_anomaly,
            on_reject=on_reject,
            on_chunk=lambda n: bar.update(task, completed=source.position()),
        )

@main.command()
@click.option("--days", type=click.IntRange(1, 366), default=7, show_default=True, help="Days of traffic.")
@click.option("--seed", type=click.IntRange(0), default=7, show_default=True, help="Same seed, same bytes.")
@click.option(
    "--start",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    help="First day, UTC (default 2026-11-16, a Monday).",
)
@click.option(
    "--incident",
    "incidents",
    multiple=True,
    metavar="KIND@START[~DUR][xMAG][:k=v,...]",
    help="Inject an incident, e.g. prompt_doubling@2d14h or retry_storm@3d9h~2hx0.5:team=search. "
    "START is an offset from the start (2d14h) or an RFC 3339 time. Repeatable.",
)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="Events JSONL (.gz to compress)."
)
@click.option(
    "--truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Ground-truth JSON (default: OUT with .truth.json).",
)
def simulate(
    days: int, seed: int, start: datetime | None, incidents: tuple[str, ...], out: Path, truth: Path | None
) -> None:
    """Write realistic synthetic traffic with injected incidents, and their ground truth.

    Teams × features × models across price tiers, with daily and weekly
    seasonality, bursts, retries, errors, prompt caching, GPU samples and
    spend lines.

    \b
    Incident kinds: prompt_doubling, output_explosion, tier_shift, retry_storm,
    error_spike, cache_break, traffic_runaway, gpu_idle, slow_creep.
    """
    sim = _simulation(days, seed, start, incidents)
    truth = truth or out.with_name(_stem(out) + ".truth.json")
    with Console(stderr=True).status("simulating…"):
        written = write_simulation(sim, out, truth)
    click.echo(f"{written:,} events written to {out}; ground truth in {truth}")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl", ".json"):
        name = name.removesuffix(suffix)
    return name


def _simulation(days: int, seed: int, start: datetime | None, specs: tuple[str, ...]) -> Simulation:
    first = (start or DEFAULT_START).replace(tzinfo=UTC)
    try:
        incidents = [parse_incident(spec, first) for spec in specs]
        return simulate_traffic(days=days, seed=seed, start=first, incidents=incidents)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--incident") from None


DEMO_INCIDENT = "prompt_doubling@2d14h~4h:team=search,feature=answer,model=claude-sonnet-4-5"


@main.command()
@click.option(
    "--dir",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("spendwatch-demo"),
    show_default=True,
    help="Where the anomalies and the ground truth are written.",
)
@click.option("--days", type=click.IntRange(3, 31), default=7, show_default=True, help="Days to simulate.")
@prices_option
def demo(out_dir: Path, days: int, prices: Path | None) -> None:
    """Simulate a week of AI traffic with an incident, detect it, and show what spendwatch saw.

    Runs entirely on this machine, no Kafka: the same detection as
    `spendwatch replay`, fed from the simulator in memory.
    """
    settings = _settings(prices=prices)
    console = Console(soft_wrap=True)
    sim = _simulation(days, 7, None, (DEMO_INCIDENT,))
    out_dir.mkdir(parents=True, exist_ok=True)
    anomalies_path = out_dir / "anomalies.jsonl"
    (out_dir / "truth.json").write_bytes(orjson.dumps(sim.truth(), option=orjson.OPT_INDENT_2))
    console.print(
        f"Simulated {days} days: {len(sim):,} events from {sim.counts['llm_request']:,} LLM requests, "
        f"GPU samples and spend lines. Injected: {DEMO_INCIDENT}",
        markup=False,
    )
    engine = Engine(_prices(settings), settings)
    tune_gc_for_streaming()
    started = time.perf_counter()
    with _sinks(anomalies_path, out_dir / "deadletter.jsonl") as (write_anomaly, write_reject):

        def on_anomaly(a: Anomaly) -> None:
            write_anomaly(a)
            console.print(alert_line(a))

        with Progress(
            TextColumn("detecting"), BarColumn(), TimeRemainingColumn(), console=console, transient=True
        ) as bar:
            task = bar.add_task("demo", total=len(sim))
            summary = replay_lines(
                sim.lines(),
                engine,
                Decoder(settings),
                on_anomaly=on_anomaly,
                on_reject=write_reject,
                on_chunk=lambda n: bar.advance(task, n),
            )
    print_summary(console, summary, time.perf_counter() - started)
    console.print(spend_table(summary))
    console.print(f"anomaly records: {anomalies_path}; ground truth: {out_dir / 'truth.json'}", markup=False)


@main.group()
def rules() -> None:
    """Team rule files: check them before they reach the detector."""


@rules.command("check")
@click.argument("paths", nargs=-1, type=click.Path(exists=True, path_type=Path))
def rules_check(paths: tuple[Path, ...]) -> None:
    """Validate rule files (PATHS: files or directories; default SPENDWATCH_RULES_DIR or ./rules).

    Every problem is reported at once, one per line, as
    path:line:col: group "g", rule "Name": what is wrong (what was expected).
    Exits 1 if there is any.
    """
    targets = list(paths) or [_settings().rules_dir or Path("rules")]
    missing = [p for p in targets if not p.exists()]
    if missing:
        raise click.UsageError(f"no rules at {missing[0]}: name a file or directory, or set SPENDWATCH_RULES_DIR")
    errors = check_paths(targets)
    for error in errors:
        click.echo(format_error(error))
    if errors:
        click.echo(f"{len(errors)} problem{'s' if len(errors) != 1 else ''} found", err=True)
        sys.exit(1)
    click.echo(f"ok: {', '.join(str(p) for p in targets)}")
