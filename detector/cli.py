"""The ``spendwatch`` command (DESIGN.md, Contract 4).

Each command builds its parts from settings, runs, and reports; none holds
detection logic. Settings come from flags and ``SPENDWATCH_*`` variables,
validated once here, so a bad value stops the command before any work with a
message that names the setting.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from detector.alerts import print_messages
from detector.alerts.cli import silence
from detector.cli_support import prices_from, settings_from
from detector.config import Settings
from detector.detection_run import DetectionRun
from detector.digest import week_of, write_digest
from detector.digest.cli import digest as digest_command
from detector.errors import SpendwatchError
from detector.export.cli import export as export_group
from detector.history import HistoryStore, HistoryWriter
from detector.history.cli import history as history_group
from detector.inputs import LineSource, open_events
from detector.models import build
from detector.pricing import PriceTable
from detector.replay import ReplaySummary
from detector.report import print_summary, spend_table
from detector.rules.cli import rules as rules_group
from detector.simulate import (
    DEFAULT_START,
    Simulation,
    parse_incident,
    write_simulation,
)
from detector.simulate import simulate as simulate_traffic
from streams.cli import produce, worker
from streams.sink_cli import sink

err = Console(stderr=True, soft_wrap=True)


def _settings(**flags: object) -> Settings:
    return settings_from(Settings, **flags)


def _prices(settings: Settings) -> PriceTable:
    return prices_from(settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="spendwatch", message=f"spendwatch, version %(version)s (models: {build()})")
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


rules_option = click.option(
    "--rules",
    "rules",
    multiple=True,
    type=click.Path(exists=True, path_type=Path),
    envvar="SPENDWATCH_RULES_DIR",
    show_envvar=True,
    help="Rule file or directory, added to the packaged defaults (a default.yaml there replaces them). "
    "Repeatable; changed files are picked up while the command runs.",
)


@main.command()
@click.argument("events", metavar="EVENTS")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write anomaly records here (JSONL).")
@click.option(
    "--deadletter",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write rejected events here (default: OUT.deadletter.jsonl, or ./spendwatch-deadletter.jsonl).",
)
@rules_option
@prices_option
@click.option("--history/--no-history", default=True, show_default=True,
              help="Write hourly spend rollups and the anomalies to the history store (SPENDWATCH_DB_URL).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary, not each alert.")
def replay(events: str, out: Path | None, deadletter: Path | None, rules: tuple[Path, ...], prices: Path | None,
           history: bool, quiet: bool) -> None:
    """Run detection over EVENTS, a JSONL file of usage events (- for stdin, .gz accepted).

    Detection runs in event time, so the alerts are those the live stream
    would have raised. Rejected events go to a dead-letter file with the
    reason; the command exits 0 unless the input cannot be read. With
    SPENDWATCH_SLACK_TOKEN or SPENDWATCH_SLACK_WEBHOOK_URL set, alerts are
    sent to Slack through the routing of rules/routing.yaml.

    \b
    Example:
      spendwatch simulate --days 2 --incident prompt_doubling@1d10h --out events.jsonl
      spendwatch replay events.jsonl --out anomalies.jsonl
    """
    settings = _settings(prices=prices)
    if deadletter is None:
        deadletter = out.with_name(out.name + ".deadletter.jsonl") if out else Path("spendwatch-deadletter.jsonl")
    console = Console(soft_wrap=True)
    store = _store(settings.db_url) if history else None
    run = _detection_run(settings, console, rules, quiet, store)
    started = time.perf_counter()
    try:
        with open_events(events) as source:
            summary = _run_with_progress(source, run, out, deadletter, console)
    except SpendwatchError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        sys.exit(2)
    except (OSError, EOFError) as exc:
        err.print(f"error: {events}: cannot read: {exc}", markup=False)
        sys.exit(2)
    print_summary(console, summary, time.perf_counter() - started)
    run.deliver()
    run.close()
    if store is not None:
        store.close()
        console.print(f"history written to {settings.db_url}", markup=False)
    if out:
        console.print(f"anomalies written to {out}", markup=False)
    if summary.rejected:
        console.print(f"rejected events written to {deadletter}", markup=False)


def _detection_run(settings: Settings, console: Console, rules: tuple[Path, ...], quiet: bool,
                   store: HistoryStore | None, durable_ids: bool = True) -> DetectionRun:
    prices = _prices(settings)
    history = HistoryWriter(store, prices, durable_ids=durable_ids) if store is not None else None
    try:
        return DetectionRun(settings, prices, console, rules=rules, quiet=quiet, history=history)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None


def _store(url: str) -> HistoryStore:
    try:
        return HistoryStore.open(url)
    except SpendwatchError as exc:
        raise click.UsageError(f"history store {url}: {exc}") from None


def _run_with_progress(
    source: LineSource, run: DetectionRun, out: Path | None, deadletter: Path, console: Console
) -> ReplaySummary:
    """Replay with a progress bar over the file's bytes when a person is watching."""
    show = console.is_terminal and source.total_bytes
    progress = (
        Progress(TextColumn("replaying"), BarColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
                 console=console, transient=True)
        if show
        else nullcontext()
    )
    with progress as bar:
        if bar is None:
            return run.run(source, out, deadletter)
        task = bar.add_task("replay", total=source.total_bytes)
        return run.run(source, out, deadletter, on_chunk=lambda n: bar.update(task, completed=source.position()))


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
    (out_dir / "history.db").unlink(missing_ok=True)
    store = _store(f"sqlite:///{out_dir / 'history.db'}")
    run = _detection_run(settings, console, (), False, store, durable_ids=False)
    started = time.perf_counter()
    with Progress(TextColumn("detecting"), BarColumn(), TimeRemainingColumn(), console=console, transient=True) as bar:
        task = bar.add_task("demo", total=len(sim))
        summary = run.run(sim.lines(), anomalies_path, out_dir / "deadletter.jsonl",
                          on_chunk=lambda n: bar.advance(task, n))
    print_summary(console, summary, time.perf_counter() - started)
    console.print(spend_table(summary))
    previews = run.pipeline.previews()
    if previews:
        console.print(f"\nThe Slack messages spendwatch would send ({len(previews)}; set SPENDWATCH_SLACK_TOKEN "
                      "or SPENDWATCH_SLACK_WEBHOOK_URL to send them):", markup=False)
        print_messages(console, previews)
    run.deliver()
    run.close()
    digest_path = out_dir / "digest.html"
    write_digest(store, week_of(sim.timeline.start.timestamp()), digest_path)
    store.close()
    console.print(f"anomaly records: {anomalies_path}; ground truth: {out_dir / 'truth.json'}", markup=False)
    console.print(f"weekly digest for FinOps: {digest_path} (open it in a browser)", markup=False)


main.add_command(rules_group)
main.add_command(silence)
main.add_command(digest_command)
main.add_command(export_group)
main.add_command(history_group)
main.add_command(worker)
main.add_command(produce)
main.add_command(sink)
