"""Rule files → a :class:`RuleSet`, or every error in every file, each with its line and column.

Nothing stops at the first error: a file is read safely
(:mod:`~detector.rules.source`), its top, each group and each rule are
validated separately (so one bad rule never hides another), the checks run
on every rule that validated, and precedence is checked across all files.
The one exception: a file whose YAML itself is wrong (syntax, aliases, tags,
keys given twice) reports only those problems, since its data is not what
the author meant. The input data is never modified.

A directory stands for its ``*.yaml`` and ``*.yml`` files, sorted by name,
except ``EXAMPLE*`` (the annotated documentation of the format) and
``routing.yaml`` (alert routing, another format); name a file explicitly to
check it anyway.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from detector.errors import ConfigError
from detector.rules.checks import check_group, check_rule, group_scope
from detector.rules.diagnostics import Loc, Problem, RuleError, format_error, from_validation, quote
from detector.rules.ruleset import FileVersion, Origin, Rule, RuleSet, freeze, precedence_problems
from detector.rules.schema import FileHead, GroupHead, RuleSpec
from detector.rules.source import MAX_FILE_BYTES, Document, read_document

MAX_RULES_PER_FILE = 1000
SUFFIXES = (".yaml", ".yml")
NOT_RULE_FILES = ("routing.yaml", "routing.yml")
DOC_PREFIX = "EXAMPLE"


class RuleLoadError(ConfigError):
    """Rule files that cannot be loaded; ``errors`` holds every error found."""

    def __init__(self, errors: Sequence[RuleError]) -> None:
        lines = [format_error(e) for e in errors]
        super().__init__(f"{len(lines)} error{'s' if len(lines) != 1 else ''} in rule files:\n" + "\n".join(lines))
        self.errors = list(errors)

    def __reduce__(self) -> tuple[type[RuleLoadError], tuple[list[RuleError]]]:
        """Rebuilt from its errors: it crosses processes (a pool of replays), and the message is not an error."""
        return type(self), (self.errors,)


def rule_files(paths: Iterable[Path]) -> tuple[list[Path], list[RuleError]]:
    """The rule files named by ``paths`` (directories expanded), and errors for paths that are none."""
    files: list[Path] = []
    errors: list[RuleError] = []
    for path in paths:
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and p.is_file()
                           and p.name not in NOT_RULE_FILES and not p.name.startswith(DOC_PREFIX))
            if not found:
                errors.append(RuleError(str(path), 0, 0, "directory holds no rule files",
                                        "*.yaml or *.yml files (EXAMPLE* and routing.yaml are skipped)"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(RuleError(str(path), 0, 0, "no such file or directory",
                                    "a rule file or a directory of them"))
    return list(dict.fromkeys(files)), errors


def read_capped(path: Path) -> bytes:
    """A file's bytes, never more than one byte past the size limit (which then refuses it)."""
    with path.open("rb") as f:
        return f.read(MAX_FILE_BYTES + 1)


def load_rules(paths: Sequence[Path], read: Callable[[Path], bytes] = read_capped) -> RuleSet | list[RuleError]:
    """Every rule in ``paths`` (files or directories), or every error if there is any.

    >>> errors = load_rules([Path("no/such/dir")])
    >>> format_error(errors[0])
    'no/such/dir: no such file or directory (expected a rule file or a directory of them)'
    """
    files, errors = rule_files(paths)
    sources = []
    for file in files:
        try:
            sources.append((str(file), read(file)))
        except OSError as exc:
            errors.append(RuleError(str(file), 0, 0, f"cannot read: {exc.strerror or exc}", "a readable file"))
    loaded = load_sources(sources)
    if errors:
        return errors + (loaded if isinstance(loaded, list) else [])
    return loaded


def load_rules_or_raise(paths: Sequence[Path]) -> RuleSet:
    """:func:`load_rules` for start-up, where bad rules must stop the process."""
    loaded = load_rules(paths)
    if isinstance(loaded, list):
        raise RuleLoadError(loaded)
    return loaded


def check_paths(paths: Sequence[Path]) -> list[RuleError]:
    """Every error in the rule files under ``paths``; empty means they load (``spendwatch rules check``)."""
    loaded = load_rules(paths)
    return loaded if isinstance(loaded, list) else []


def load_sources(sources: Sequence[tuple[str, bytes]]) -> RuleSet | list[RuleError]:
    """Rules from (path, content) pairs, in order; what the loader and hot reload share."""
    rules: list[Rule] = []
    versions: list[FileVersion] = []
    errors: list[RuleError] = []
    for path, raw in sources:
        file_rules, file_errors, sha = _load_file(path, raw)
        rules += file_rules
        errors += file_errors
        versions.append(FileVersion(path, sha, len(file_rules)))
    errors += _precedence_errors(tuple(rules))
    if errors:
        order = {path: i for i, (path, _) in enumerate(sources)}
        return sorted(errors, key=lambda e: (order.get(e.path, len(order)), e.line, e.col))
    return RuleSet(tuple(rules), tuple(versions))


def _precedence_errors(rules: tuple[Rule, ...]) -> list[RuleError]:
    return [RuleError(r.origin.path, r.origin.line, r.origin.col, message, expected,
                      group=r.group, rule=r.alert, field="id")
            for r, message, expected in precedence_problems(rules)]


def load_data(data: Any, path: str = "<data>") -> RuleSet | list[RuleError]:
    """Rules from data already in memory, shaped like a rule file (errors then have no line).

    >>> load_data({"groups": [{"name": "g", "rules": []}]}).files[0].rules
    0
    """
    sha = hashlib.sha256(json.dumps(data, sort_keys=True, default=repr).encode()).hexdigest()
    rules, errors = _load_document(Document(path, sha, data), [])
    errors += _precedence_errors(tuple(rules))
    return errors or RuleSet(tuple(rules), (FileVersion(path, sha, len(rules)),))


def _load_file(path: str, raw: bytes) -> tuple[list[Rule], list[RuleError], str]:
    doc, problems = read_document(path, raw)
    if doc is None:
        return [], [_error(path, None, p) for p in problems], hashlib.sha256(raw).hexdigest()
    rules, errors = _load_document(doc, problems)
    return rules, errors, doc.sha256


def _load_document(doc: Document, problems: list[Problem]) -> tuple[list[Rule], list[RuleError]]:
    """The rules that validated (kept for the precedence check even if others did not) and the errors."""
    file = _File(doc, problems)
    if doc.data is not None and not problems:  # empty: no rules, fine; YAML problems: fix those first
        file.load()
    return file.rules, [_error(doc.path, doc, p) for p in file.problems]


class _File:
    """The state of loading one document: its rules so far and its problems."""

    def __init__(self, doc: Document, problems: list[Problem]) -> None:
        self.doc, self.problems = doc, list(problems)
        self.rules: list[Rule] = []
        self.count = 0

    def validate(self, model: type[BaseModel], data: Any, prefix: Loc) -> Any:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            self.problems += from_validation(exc, model, data, prefix, self.doc.texts)
            return None

    def load(self) -> None:
        data = self.doc.data
        self.validate(FileHead, data, ())
        groups = data.get("groups") if isinstance(data, dict) else None
        names: dict[str, Loc] = {}
        for gi, raw_group in enumerate(groups if isinstance(groups, list) else []):
            if not isinstance(raw_group, dict):
                continue  # FileHead reported it
            loc = ("groups", gi)
            head = self.validate(GroupHead, raw_group, loc)
            if head is not None:
                self.problems += [_prefixed(loc, p) for p in check_group(head)]
            name = raw_group.get("name")
            if isinstance(name, str) and name in names:
                first = self.doc.pos(names[name])
                self.problems.append(Problem((*loc, "name"), f"group name {quote(name)} is used twice "
                                             f"(first at {first.line}:{first.col})", "a unique group name per file"))
            elif isinstance(name, str):
                names[name] = (*loc, "name")
            raw_rules = raw_group.get("rules")
            for ri, raw_rule in enumerate(raw_rules if isinstance(raw_rules, list) else []):
                if not self.add_rule(head, raw_rule, (*loc, "rules", ri)):
                    return

    def add_rule(self, head: GroupHead | None, raw: Any, loc: Loc) -> bool:
        self.count += 1
        if self.count > MAX_RULES_PER_FILE:
            self.problems.append(Problem(loc, f"more than {MAX_RULES_PER_FILE} rules in one file",
                                         "fewer rules per file; split it"))
            return False
        spec = self.validate(RuleSpec, raw, loc)
        if spec is None:
            return True
        self.problems += [_prefixed(loc, p) for p in check_rule(head, spec)]
        if head is not None:
            self.rules.append(_resolve(head, spec, self.doc, loc))
        return True


def _prefixed(prefix: Loc, problem: Problem) -> Problem:
    return dataclasses.replace(problem, loc=(*prefix, *problem.loc))


def _resolve(head: GroupHead, spec: RuleSpec, doc: Document, loc: Loc) -> Rule:
    pos = doc.pos((*loc, "id"))
    return Rule(
        id=spec.id, alert=spec.alert, group=head.name, expr=spec.expr,
        for_s=spec.for_, keep_firing_for_s=spec.keep_firing_for,
        labels=freeze({**head.labels, **spec.labels}), annotations=freeze(spec.annotations),
        enabled=spec.enabled, scope=group_scope(head) + spec.expr.matchers,
        origin=Origin(doc.path, pos.line, pos.col, doc.sha256),
    )


def _error(path: str, doc: Document | None, problem: Problem) -> RuleError:
    """A problem placed in its file, with the group and rule it belongs to."""
    if doc is None:
        pos = problem.pos
        return RuleError(path, pos.line if pos else 0, pos.col if pos else 0, problem.message,
                         problem.expected, problem.suggestion)
    pos = problem.pos or doc.pos(problem.loc, on_key=problem.on_key)
    loc = problem.loc
    group = rule = None
    group_index = rule_index = None
    rest: Loc = loc
    if len(loc) >= 2 and loc[0] == "groups" and isinstance(loc[1], int):
        raw_group = _at(doc.data, loc[:2])
        group_index, rest = loc[1] + 1, loc[2:]
        name = raw_group.get("name") if isinstance(raw_group, dict) else None
        group = name if isinstance(name, str) else f"#{group_index}"
        if len(loc) >= 4 and loc[2] == "rules" and isinstance(loc[3], int):
            raw_rule = _at(doc.data, loc[:4])
            rule_index, rest = loc[3] + 1, loc[4:]
            alert = raw_rule.get("alert") if isinstance(raw_rule, dict) else None
            rule = alert if isinstance(alert, str) else None
    return RuleError(path, pos.line, pos.col, problem.message, problem.expected, problem.suggestion,
                     group=group, rule=rule, rule_index=rule_index, field=_dotted(rest) or None)


def _at(data: Any, loc: Loc) -> Any:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
