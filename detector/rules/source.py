"""Rule files as plain data, with the line and column of every key and value.

Rule files are data and nothing else. We read the YAML event stream (libyaml
when present) and build the values ourselves, which is what makes the safety
guarantees cheap and certain:

* only plain YAML types are built (mapping, list, string, number, bool,
  null); any other tag, ``!!python/...`` included, is refused;
* aliases are refused at the alias, so alias bombs ("billion laughs") cost
  nothing: nothing is ever expanded;
* the file size, the nesting depth and the number of nodes are capped, and
  the builder is iterative, so no input can make it recurse or hang;
* a key given twice in one mapping is an error (YAML libraries silently keep
  the last one).

Every value is recorded under its path (``("groups", 0, "rules", 2, "for")``)
with its 1-based line and column, and every key likewise, so later checks can
point at the exact spot.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

from detector.rules.diagnostics import REFUSED, Pos, Problem, Refused, quote, show

MAX_FILE_BYTES = 1 << 20
MAX_DEPTH = 24
MAX_NODES = 50_000
MAX_PROBLEMS = 100
PLAIN = "plain YAML values (rule files are data)"

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_RESOLVER = Resolver()
_CONSTRUCTOR = SafeConstructor()
_Y = "tag:yaml.org,2002:"
_SCALARS = {
    _Y + "str": lambda node: node.value,
    _Y + "null": lambda node: None,
    _Y + "bool": _CONSTRUCTOR.construct_yaml_bool,
    _Y + "int": _CONSTRUCTOR.construct_yaml_int,
    _Y + "float": _CONSTRUCTOR.construct_yaml_float,
}

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Document:
    """One rule file read into plain data, with positions and its content hash."""

    path: str
    sha256: str
    data: Any
    values: dict[Path_, Pos] = field(default_factory=dict)
    keys: dict[Path_, Pos] = field(default_factory=dict)
    texts: dict[Path_, str] = field(default_factory=dict)  # source text of non-string scalars

    def pos(self, loc: Path_, *, on_key: bool = False) -> Pos:
        """Where ``loc`` is written: the key itself or its value, else the nearest parent."""
        if on_key and loc in self.keys:
            return self.keys[loc]
        while loc not in self.values and loc:
            loc = loc[:-1]
        return self.values.get(loc, Pos(0, 0))


class _Abort(Exception):
    """A limit was reached: stop reading this file."""


def read_document(path: str, raw: bytes) -> tuple[Document | None, list[Problem]]:
    """Parse one rule file safely; the document is None when nothing usable was read.

    >>> doc, problems = read_document("r.yaml", b"groups:\\n  - name: a\\n    rules: []\\n")
    >>> doc.data, doc.values[("groups", 0, "name")], problems
    ({'groups': [{'name': 'a', 'rules': []}]}, Pos(line=2, col=11), [])
    >>> read_document("r.yaml", b"a: &x 1\\nb: *x\\n")[1][0].message
    'YAML aliases are not allowed in rule files'
    """
    sha = hashlib.sha256(raw).hexdigest()
    if len(raw) > MAX_FILE_BYTES:
        return None, [Problem((), f"file is larger than {MAX_FILE_BYTES:,} bytes",
                              "a smaller rule file; split it into several", pos=Pos(1, 1))]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        return None, [Problem((), f"not UTF-8 text (byte {exc.start})", "a UTF-8 encoded YAML file",
                              pos=Pos(line, 1))]
    builder = _Builder()
    try:
        data = builder.build(text)
    except yaml.MarkedYAMLError as exc:
        return None, [*builder.problems, _syntax_problem(exc)]
    except yaml.YAMLError as exc:
        problem = Problem((), f"YAML error: {_one_line(str(exc))}", "valid YAML", pos=Pos(1, 1))
        return None, [*builder.problems, problem]
    except _Abort:
        return None, builder.problems
    return Document(path, sha, data, builder.values, builder.keys, builder.texts), builder.problems


def _syntax_problem(exc: yaml.MarkedYAMLError) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    pos = Pos(mark.line + 1, mark.column + 1) if mark else Pos(1, 1)
    message = f"YAML syntax error: {_one_line(exc.problem or 'unreadable')}"
    if exc.context and exc.context_mark:
        message += f", {_one_line(exc.context)} at {exc.context_mark.line + 1}:{exc.context_mark.column + 1}"
    return Problem((), message, "valid YAML", pos=pos)


def _one_line(text: str) -> str:
    return " ".join(text.split())


class _Frame:
    """A mapping or list under construction."""

    __slots__ = ("path", "value", "key")

    def __init__(self, path: Path_, value: dict[str, Any] | list[Any]) -> None:
        self.path, self.value = path, value
        self.key: str | Refused | None = None  # a mapping's pending key, once read


class _Builder:
    """Builds plain values from YAML events, iteratively, within the limits."""

    def __init__(self) -> None:
        self.values: dict[Path_, Pos] = {}
        self.keys: dict[Path_, Pos] = {}
        self.texts: dict[Path_, str] = {}
        self.problems: list[Problem] = []
        self.stack: list[_Frame] = []
        self.nodes = 0
        self.documents = 0

    def problem(self, loc: Path_, pos: Pos, message: str, expected: str, *, fatal: bool = False) -> None:
        self.problems.append(Problem(loc, message, expected, pos=pos))
        if fatal or len(self.problems) >= MAX_PROBLEMS:
            if not fatal:
                self.problems.append(Problem(loc, f"{MAX_PROBLEMS} problems found, not reading further", pos=pos))
            raise _Abort

    def build(self, text: str) -> Any:
        root: list[Any] = []
        for event in yaml.parse(text, Loader=_Loader):
            pos = Pos(event.start_mark.line + 1, event.start_mark.column + 1)
            if isinstance(event, yaml.DocumentStartEvent):
                self.documents += 1
                if self.documents > 1:
                    self.problem((), pos, "a second YAML document (---) in one file",
                                 "one document per rule file", fatal=True)
            elif isinstance(event, yaml.MappingStartEvent | yaml.SequenceStartEvent):
                self.start(event, pos, root)
            elif isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
                self.add(self.stack.pop().value, root)
            elif isinstance(event, yaml.ScalarEvent | yaml.AliasEvent):
                self.scalar(event, pos, root)
        return root[0] if root else None

    def child_path(self) -> Path_ | None:
        """The path the next value goes to; None when it is a mapping key."""
        if not self.stack:
            return ()
        frame = self.stack[-1]
        if isinstance(frame.value, list):
            return (*frame.path, len(frame.value))
        if frame.key is None:
            return None
        return (*frame.path, frame.key) if isinstance(frame.key, str) else (*frame.path, "?")

    def count(self, pos: Pos, loc: Path_) -> None:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            self.problem(loc, pos, f"more than {MAX_NODES:,} YAML nodes", "a rule file of ordinary size", fatal=True)

    def start(self, event: yaml.CollectionStartEvent, pos: Pos, root: list[Any]) -> None:
        path = self.child_path()
        if path is None:
            self.problem(self.stack[-1].path, pos, "a mapping key is a list or mapping",
                         "plain string keys", fatal=True)
            return
        self.count(pos, path)
        if len(self.stack) >= MAX_DEPTH:
            self.problem(path, pos, f"nested more than {MAX_DEPTH} levels deep",
                         "the shape of a rule file, about 8 levels deep", fatal=True)
        self.check_tag(event, path, pos, _Y + ("map" if isinstance(event, yaml.MappingStartEvent) else "seq"))
        self.values[path] = pos
        self.stack.append(_Frame(path, {} if isinstance(event, yaml.MappingStartEvent) else []))

    def check_tag(self, event: yaml.NodeEvent, path: Path_, pos: Pos, plain: str) -> None:
        tag = getattr(event, "tag", None)
        if tag not in (None, "!", plain):
            self.problem(path, pos, f"YAML tag {_short(tag)} is not allowed", PLAIN)

    def scalar(self, event: yaml.ScalarEvent | yaml.AliasEvent, pos: Pos, root: list[Any]) -> None:
        path = self.child_path()
        self.count(pos, path or ())
        value: Any
        text = getattr(event, "value", "")
        if isinstance(event, yaml.AliasEvent):
            self.problem(path or (), pos, "YAML aliases are not allowed in rule files",
                         "each value written out where it applies")
            value = REFUSED
        else:
            value = self.construct(event, path, pos)
        if path is None:
            self.set_key(value, pos, text)
            return
        self.values[path] = pos
        if not isinstance(value, str | Refused):
            self.texts[path] = text  # what the author wrote, for "quote it" hints
        self.add(value, root)

    def construct(self, event: yaml.ScalarEvent, path: Path_ | None, pos: Pos) -> Any:
        tag, value = _scalar(event.tag, event.value, event.implicit)
        if value is REFUSED:
            self.problem(path or (), pos, f"YAML tag {_short(tag)} is not allowed", PLAIN)
        return value

    def set_key(self, key: Any, pos: Pos, text: str) -> None:
        frame = self.stack[-1]
        if isinstance(key, str) and key in frame.value:
            first = self.keys[(*frame.path, key)]
            self.problem((*frame.path, key), pos, f"key {quote(key)} is given twice (first at {first.line}:{first.col})",
                         "each key once per mapping")
            frame.key = REFUSED
        elif isinstance(key, str):
            frame.key = key
            self.keys[(*frame.path, key)] = pos
        else:
            if key is not REFUSED:
                self.problem(frame.path, pos, f"a mapping key is {show(key)}, not a string",
                             f"a string key; write it in quotes: {quote(text)}")
            frame.key = REFUSED

    def add(self, value: Any, root: list[Any]) -> None:
        if not self.stack:
            root.append(value)
            return
        frame = self.stack[-1]
        if isinstance(frame.value, list):
            frame.value.append(value)
        else:
            if isinstance(frame.key, str):
                frame.value[frame.key] = value
            frame.key = None


@functools.lru_cache(maxsize=4096)
def _scalar(tag: str | None, text: str, implicit: tuple[bool, bool]) -> tuple[str, Any]:
    """(resolved tag, value) of a scalar; cached, since rule files repeat their values."""
    if tag is None or tag == "!":
        tag = _RESOLVER.resolve(ScalarNode, text, implicit)
        if tag == _Y + "timestamp":
            return tag, text  # dates stay the text the author wrote
    make = _SCALARS.get(tag)
    return (tag, REFUSED) if make is None else (tag, make(ScalarNode(tag, text)))


def _short(tag: str) -> str:
    return "!!" + tag.removeprefix(_Y) if tag.startswith(_Y) else tag
