"""Rule files picked up by a running worker: replay's hot reload, on the worker's timer.

Every few seconds the worker looks at the rule files (packaged defaults,
then ``SPENDWATCH_RULES_DIR``). A valid change goes to the engine through
:meth:`detector.engine.Engine.use_rules`, so every series keeps what it
learned under the rule ids that stay; a broken file is refused with its
errors and the rules in force stay. One change is refused even when valid:
one that changes how LLM requests are grouped onto workers (a threshold or
budget rule that adds up a whole team, added or removed), because the events
already on the repartition topic and the state table are keyed the old way
and every worker must switch at once. That takes a restart of the workers,
and the health page says so.
"""

from __future__ import annotations

import logging
from typing import Any

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.detection_run import run_rule_paths
from detector.engine import Engine
from detector.engine_state import groups_by_feature
from detector.rules.reloader import RuleReloader

log = logging.getLogger(__name__)

RULES_POLL_S = 5.0
REGROUPING = (
    "the new rules change how LLM requests are grouped onto workers (a threshold or budget rule whose `by` "
    "leaves out `feature` was added or removed); restart every worker to take them; the previous rules stay"
)


def worker_reloader(settings: Settings, now: float) -> RuleReloader:
    """The rule files a worker runs (those ``spendwatch replay`` runs with the same settings), read once.

    The engine starts with its ``current`` rules, so what the worker runs and
    what its reloader compares changes against are the same read of the files.
    """
    return RuleReloader(run_rule_paths(settings), now=now, interval_s=0.0)


class WorkerRules:
    """The rules a worker's engine runs, reloaded when their files change."""

    def __init__(self, engine: Engine, reloader: RuleReloader) -> None:
        self.engine = engine
        self.reloader = reloader
        self.refused: str | None = None

    def poll(self, now: float) -> list[Anomaly]:
        """Take changed rule files if they are valid; return what the change resolved or fired."""
        if self.engine.rules is None or not self.reloader.poll(now):
            return []
        rules = self.reloader.current
        if groups_by_feature(rules) != self.engine.by_feature:
            if self.refused is None:
                log.error("rules not taken: %s", REGROUPING)
            self.refused = REGROUPING
            return []
        self.refused = None
        return self.engine.use_rules(rules, self.engine.watermark)

    def describe(self) -> dict[str, Any]:
        """For the health page: the files in force, the last refusal and why."""
        state = self.reloader.describe()
        in_force = self.engine.rules.files if self.engine.rules is not None else ()
        state["files"] = [{"path": f.path, "sha256": f.sha256, "rules": f.rules} for f in in_force]
        state["rules"] = sum(f.rules for f in in_force)
        state["not_taken"] = self.refused
        return state
