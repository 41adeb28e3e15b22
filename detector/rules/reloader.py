"""Hot reload: changed rule files are picked up without a restart, broken ones refused.

A poll lists the rule files, compares each file's stat (modification time,
size, inode) with the last poll, and only when something changed reads the
files and compares content hashes with the rules in force. New content is
loaded in full; it replaces the rules in force only if it loads without a
single error. Otherwise the previous rules stay, and the errors are kept in
``last_errors`` for the operator. Time comes in as an argument and stat and
read are injectable, so tests drive it without sleeping or touching disks.

What is in force is visible: every (re)load logs one line per file (path,
short sha256, rule count) on the ``detector.rules.reloader`` logger, a
refused reload logs a warning with every error, and :meth:`RuleReloader.describe`
gives the same as plain data for a health endpoint.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Any

from detector.rules.diagnostics import RuleError, format_error
from detector.rules.loader import RuleLoadError, load_rules, read_capped, rule_files
from detector.rules.ruleset import FileVersion, RuleSet

log = logging.getLogger(__name__)


def _log_loaded(verb: str, rules: RuleSet) -> None:
    for line in rules.describe():
        log.info("rules %s: %s", verb, line)


def stat_signature(path: Path) -> Hashable:
    """What changes when a file is rewritten: modification time, size and inode."""
    st = os.stat(path)
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class RuleReloader:
    """The rules in force, reloaded from ``paths`` when they change.

    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> d = Path(tmp.name)
    >>> rule = "groups: [{name: g, rules: [{id: a, alert: A, expr: {metric: spend_rate, budget: {monthly_usd: %s}}}]}]"
    >>> _ = (d / "a.yaml").write_text(rule % 100)
    >>> reloader = RuleReloader([d], now=0.0)
    >>> _ = (d / "a.yaml").write_text(rule % "lots")
    >>> reloader.poll(10.0), reloader.current.rules[0].expr.budget.monthly_usd, len(reloader.last_errors)
    (False, 100.0, 1)
    >>> _ = (d / "a.yaml").write_text(rule % 250)
    >>> reloader.poll(20.0), reloader.current.rules[0].expr.budget.monthly_usd, reloader.last_errors
    (True, 250.0, [])
    >>> tmp.cleanup()
    """

    def __init__(
        self,
        paths: Sequence[Path],
        *,
        now: float,
        interval_s: float = 5.0,
        stat: Callable[[Path], Hashable] = stat_signature,
        read: Callable[[Path], bytes] = read_capped,
    ) -> None:
        self.paths = tuple(paths)
        self.interval_s = interval_s
        self._stat, self._read = stat, read
        self._seen: dict[Path, Hashable] = {}
        self._polled = now
        self.last_errors: list[RuleError] = []
        candidate = self._load()
        if isinstance(candidate, list):
            raise RuleLoadError(candidate)
        self.current: RuleSet = candidate
        self.loaded_at = now
        self.reloads = self.refusals = 0
        _log_loaded("loaded", candidate)

    @property
    def version(self) -> tuple[FileVersion, ...]:
        """The files (path, sha256, rule count) of the rules in force."""
        return self.current.files

    def poll(self, now: float) -> bool:
        """Reload if a file changed since the last poll; True when new rules took effect."""
        if now - self._polled < self.interval_s:
            return False
        self._polled = now
        files, _ = rule_files(self.paths)
        if self._signatures(files) == self._seen:
            return False
        candidate = self._load()
        if isinstance(candidate, list):
            if candidate != self.last_errors:  # said once per distinct breakage, not once per poll
                log.warning("rules refused, %d error%s; the previous rules stay in force:\n%s", len(candidate),
                            "" if len(candidate) == 1 else "s", "\n".join(format_error(e) for e in candidate))
            self.last_errors = candidate
            self.refusals += 1
            return False
        self.last_errors = []
        if candidate.version == self.current.version:
            return False  # touched, not changed
        self.current = candidate
        self.loaded_at = now
        self.reloads += 1
        _log_loaded("reloaded", candidate)
        return True

    def describe(self) -> dict[str, Any]:
        """The rules in force and the last refusal, as plain data (for a health endpoint).

        ``loaded_at`` is in the same time as ``now`` given to the reloader.
        """
        return {
            "files": [{"path": f.path, "sha256": f.sha256, "rules": f.rules} for f in self.current.files],
            "rules": len(self.current.rules),
            "loaded_at": self.loaded_at,
            "reloads": self.reloads,
            "refused": self.refusals,
            "errors": [format_error(e) for e in self.last_errors],
        }

    def _signatures(self, files: list[Path]) -> dict[Path, Hashable]:
        signatures: dict[Path, Hashable] = {}
        for file in files:
            try:
                signatures[file] = self._stat(file)
            except OSError:
                signatures[file] = None  # vanished between listing and stat: reload and report
        return signatures

    def _load(self) -> RuleSet | list[RuleError]:
        files, _ = rule_files(self.paths)
        self._seen = self._signatures(files)
        return load_rules(self.paths, read=self._read)
