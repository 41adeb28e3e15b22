"""``spendwatch rules``: check rule files, run their unit tests, backtest them on past events.

Thin commands: each reads its inputs, calls the rules package, and prints.
"""

from __future__ import annotations

import sys
from contextlib import nullcontext
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from detector.cli_support import prices_from, settings_from
from detector.config import Settings
from detector.errors import SpendwatchError
from detector.events import Decoder
from detector.inputs import open_events
from detector.pricing import PriceTable
from detector.rules.backtest import Backtest, run_backtest, verdict
from detector.rules.detection import Detection
from detector.rules.diagnostics import format_error
from detector.rules.loader import check_paths, load_rules
from detector.rules.ruletests import run_test_file

TEST_SUFFIX = "_test.yaml"


def _settings(**flags: object) -> Settings:
    return settings_from(Settings, **flags)


def _prices(settings: Settings) -> PriceTable:
    return prices_from(settings)


@click.group("rules")
def rules() -> None:
    """Team rule files: check them, test them, and backtest them before they reach the detector."""


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


@rules.command("test")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
def rules_test(files: tuple[Path, ...]) -> None:
    """Run rule unit tests (FILES: test files, or directories of *_test.yaml), like promtool test rules.

    A test file names its rule files, gives input series in a compact
    notation and the alerts expected at given times; see rules/tests/.
    Every mismatch is printed with what was expected and what was found.
    Exits 1 if any test fails.
    """
    targets: list[Path] = []
    for path in files:
        targets += sorted(path.glob("*" + TEST_SUFFIX)) if path.is_dir() else [path]
    if not targets:
        raise click.UsageError(f"no test files (*{TEST_SUFFIX}) in {', '.join(map(str, files))}")
    failed = checks = 0
    for target in targets:
        outcome = run_test_file(target)
        checks += outcome.checks
        for line in outcome.failures:
            click.echo(line)
        failed += len(outcome.failures)
        click.echo(f"{'ok' if outcome.ok else 'FAILED'}: {target} ({outcome.checks} checks)", err=True)
    if failed:
        click.echo(f"{failed} failure{'s' if failed != 1 else ''} in {checks} checks", err=True)
        sys.exit(1)


@rules.command("backtest")
@click.argument("rule_paths", metavar="RULES", type=click.Path(exists=True, path_type=Path))
@click.argument("events", metavar="EVENTS")
@click.option("--prices", type=click.Path(dir_okay=False, path_type=Path), envvar="SPENDWATCH_PRICES",
              show_envvar=True, help="Price file (LiteLLM layout) that overrides or extends the packaged table.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of a table.")
def rules_backtest(rule_paths: Path, events: str, prices: Path | None, as_json: bool) -> None:
    """Replay EVENTS (JSONL, .gz, - for stdin) through RULES (a file or directory) and say what each rule would have done.

    Per rule: how often it fired, when (the first few times), the excess
    dollars it saw, the dollars that leaked before detection, and a verdict.
    """
    loaded = load_rules([rule_paths])
    if isinstance(loaded, list):
        for error in loaded:
            click.echo(format_error(error), err=True)
        sys.exit(1)
    settings = _settings(prices=prices)
    detection = Detection(loaded, _prices(settings), settings)
    console = Console(soft_wrap=True)
    try:
        with open_events(events) as source:
            show = console.is_terminal and source.total_bytes and not as_json
            bar = Progress(TextColumn("backtesting"), BarColumn(), TimeRemainingColumn(), console=console,
                           transient=True) if show else nullcontext()
            with bar as progress:
                task = progress.add_task("backtest", total=source.total_bytes) if progress else None
                result = run_backtest(loaded, source, detection, Decoder(settings), on_chunk=lambda n: (
                    progress.update(task, completed=source.position()) if progress and task is not None else None))
    except SpendwatchError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if as_json:
        click.echo(orjson.dumps(result.to_dict(), option=orjson.OPT_INDENT_2).decode())
        return
    _print(console, result)


def _print(console: Console, result: Backtest) -> None:
    table = Table(title=f"Backtest over {result.events:,} events ({result.days:.1f} days)")
    for column in ("rule", "alert", "kind", "fired", "first times", "excess $", "leaked $"):
        table.add_column(column, justify="right" if column in ("fired", "excess $", "leaked $") else "left")
    for t in result.tallies.values():
        table.add_row(t.rule, t.alert, t.kind, str(t.fired), ", ".join(t.first_times[:3]),
                      f"{t.excess_usd:,.2f}", f"{t.leaked_usd:,.2f}")
    console.print(table)
    for t in result.tallies.values():
        console.print(f"{t.rule}: {verdict(t, result.days)}", markup=False, highlight=False)
