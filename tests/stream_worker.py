"""Stream workers as separate processes, the way they run in production.

:func:`start_worker` runs ``spendwatch worker`` (the click command, through
``python -c``) against a test broker, with the test-broker workarounds set in
its environment (see :data:`TEST_BROKER_ENV`), and :meth:`WorkerProcess.kill`
ends it by PID with SIGKILL or SIGTERM. Run as a script, this module is a
worker whose engine raises on events of one feature: the way the tests make
an event fail inside processing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")

WAIT_S = 120.0
"""How long a test waits for what the processes are to do: ample. It only bounds a failing test; the suite
runs on two workers at once (pytest-xdist), each test with its own broker and processes, on shared cores."""

TEST_BROKER_ENV = {
    # Tansu 0.6 (memory engine) answers ListOffsets with a wrong end offset when a
    # partition's last batch holds more than one record, which cuts faust's
    # changelog recovery short. One-record batches (a 1-byte batch size) avoid
    # it; a real Kafka needs nothing of the kind. Tests only.
    "SPENDWATCH_PRODUCER_MAX_BATCH_BYTES": "1",
    # Tansu makes a group join wait about half the rebalance timeout. Tests only.
    "SPENDWATCH_REBALANCE_TIMEOUT_S": "4",
    "SPENDWATCH_WEB_HOST": "127.0.0.1",
}

POISON_FEATURE = "poison"


@dataclass
class WorkerProcess:
    process: subprocess.Popen[bytes]
    web_port: int
    log: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(5)

    def show_log(self, lines: int = 60) -> None:
        """Print the end of the process's log: pytest shows it only when the test failed."""
        text = self.log.read_text(errors="replace").splitlines() if self.log.exists() else ["(no log)"]
        print(f"--- last {lines} lines of {self.log.name} ---", *text[-lines:], sep="\n")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=5) as response:
            return bytes(response.read())

    def health(self) -> dict[str, Any]:
        return dict(json.loads(self.get("/health")))

    def metric(self, name: str, **labels: str) -> float:
        """One sample of the worker's /metrics, 0 when it has not been reported yet."""
        from prometheus_client.parser import text_string_to_metric_families

        total = 0.0
        for family in text_string_to_metric_families(self.get("/metrics").decode()):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total += sample.value
        return total

    def wait_ready(self, timeout: float = WAIT_S) -> None:
        """Until the web endpoint answers and the worker holds partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                if self.health()["assigned"]:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"worker not ready in {timeout}s: {self.log.read_text()[-3000:]}")


def start_worker(broker_url: str, tmp_path: Path, web_port: int, *, poison: bool = False,
                 loglevel: str = "info", **settings: str) -> WorkerProcess:
    env = {**os.environ, **TEST_BROKER_ENV, "PYTHONPATH": str(REPO), "SPENDWATCH_BROKER": broker_url,
           "SPENDWATCH_WEB_PORT": str(web_port), "SPENDWATCH_DATA_DIR": str(tmp_path / f"data-{web_port}")}
    env.update({f"SPENDWATCH_{k.upper()}": v for k, v in settings.items()})
    if poison:
        command = [sys.executable, str(Path(__file__).resolve())]
    else:
        command = [sys.executable, "-c", "from streams.cli import worker; worker()", "--loglevel", loglevel]
    log = tmp_path / f"worker-{web_port}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    return WorkerProcess(process, web_port, log)


def start_sink(broker_url: str, tmp_path: Path, web_port: int, *, loglevel: str = "info",
               **settings: str) -> WorkerProcess:
    """``spendwatch sink`` as a process, with the same test-broker workarounds as the workers."""
    env = {**os.environ, **TEST_BROKER_ENV, "PYTHONPATH": str(REPO), "SPENDWATCH_BROKER": broker_url,
           "SPENDWATCH_WEB_PORT": str(web_port), "SPENDWATCH_DATA_DIR": str(tmp_path / f"sink-data-{web_port}")}
    env.update({f"SPENDWATCH_{k.upper()}": v for k, v in settings.items()})
    command = [sys.executable, "-c", "from streams.sink_cli import sink; sink()", "--loglevel", loglevel]
    log = tmp_path / f"sink-{web_port}-{time.monotonic_ns()}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL)
    return WorkerProcess(process, web_port, log)


class RaisingPrices:
    """A real price table, except that pricing a request of one feature raises: a bug met inside the engine's loop."""

    def __init__(self, real: Any, feature: str, error: type[Exception], message: str) -> None:
        self.real, self.feature, self.error, self.message = real, feature, error, message

    def cost(self, ev: Any) -> float | None:
        if getattr(ev, "feature", None) == self.feature:
            raise self.error(self.message)
        return self.real.cost(ev)  # type: ignore[no-any-return]

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def _run_poisoned_worker() -> None:
    import faust

    from detector.engine import Engine
    from detector.pricing import PriceTable
    from streams.app import build_app
    from streams.settings import StreamSettings

    def engine(settings: StreamSettings, rules: object) -> Engine:
        prices = RaisingPrices(PriceTable.load(settings.prices), POISON_FEATURE, RuntimeError, "poisoned event")
        return Engine(prices, settings)  # type: ignore[arg-type]

    stream = build_app(StreamSettings(), engine)
    faust.Worker(stream.app, loglevel="info", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    _run_poisoned_worker()


def wait_for(what: str, probe: Callable[[], T], done: Callable[[T], bool], timeout: float = WAIT_S) -> T:
    """Poll ``probe`` until ``done`` says yes; fail with the last value seen after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = probe()
        except OSError as exc:  # the worker's web server is not up yet
            value = exc  # type: ignore[assignment]
        else:
            if done(value):
                return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}; last seen: {value!r}")
        time.sleep(0.25)
