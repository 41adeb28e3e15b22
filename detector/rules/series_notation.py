"""The compact input of rule unit tests: ``metric{label="v",…}`` and promtool-style values.

A series is written as in Prometheus, ``error_rate{team="search",model="gpt-4o"}``,
and its values one per interval, in promtool's expanding notation:

* ``7`` one value; ``_`` no data for one interval;
* ``axn`` the value ``a``, ``n + 1`` times (``5x2`` is ``5 5 5``);
* ``a+bxn`` / ``a-bxn`` ``n + 1`` values from ``a`` in steps of ``b``
  (``1+1x3`` is ``1 2 3 4``);
* ``_xn`` no data for ``n`` intervals.

Nothing here is evaluated: each token is matched against these forms and
anything else is an error naming the token.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from detector.rules.catalog import (
    METRICS,
    USAGE_NAME,
    USAGE_PREFIX,
    closest,
    is_series_label,
)
from detector.rules.diagnostics import quote

MAX_VALUES = 100_000
_SERIES = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z0-9_][A-Za-z0-9_.\-]*)?)\s*(?:\{(.*)\})?\s*", re.DOTALL)
_LABEL = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_.\-]*)\s*=\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')
_NUMBER = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_TOKEN = re.compile(rf"(?P<a>{_NUMBER})(?:(?P<op>[-+])(?P<b>{_NUMBER}))?(?:x(?P<n>\d+))?")
_BLANKS = re.compile(r"_(?:x(\d+))?")


class NotationError(ValueError):
    """A series or values text cannot be read; ``expected`` says what would be."""

    def __init__(self, message: str, expected: str, suggestion: str | None = None) -> None:
        super().__init__(message)
        self.expected, self.suggestion = expected, suggestion


@dataclass(frozen=True, slots=True)
class Series:
    """A metric and the labels of the events that feed it."""

    metric: str
    labels: dict[str, str]


def parse_series(text: str) -> Series:
    """A series from ``metric{label="value",…}``.

    >>> parse_series('error_rate{team="search", model="gpt-4o"}')
    Series(metric='error_rate', labels={'team': 'search', 'model': 'gpt-4o'})
    >>> parse_series("usage:vector_db_usd").metric
    'usage:vector_db_usd'
    """
    match = _SERIES.fullmatch(text)
    if match is None:
        raise NotationError(f"bad series {quote(text)}", 'metric{label="value", ...}')
    metric, body = match.group(1), match.group(2) or ""
    if metric not in METRICS and not (metric.startswith(USAGE_PREFIX)
                                      and USAGE_NAME.fullmatch(metric.removeprefix(USAGE_PREFIX))):
        raise NotationError(f"unknown metric {quote(metric)}", "one of " + ", ".join(METRICS) + ", or usage:<name>",
                            closest(metric, METRICS))
    labels: dict[str, str] = {}
    pos = 0
    body = body.strip()
    while pos < len(body):
        label = _LABEL.match(body, pos)
        if label is None:
            raise NotationError(f"bad labels at {quote(body[pos:pos + 30])} in series {quote(text)}",
                                'label="value" pairs separated by commas')
        name = label.group(1)
        if not is_series_label(name):
            raise NotationError(f"unknown label {quote(name)} in series {quote(text)}",
                                "a series label or tags.<name>")
        labels[name] = re.sub(r"\\(.)", r"\1", label.group(2))
        pos = label.end()
    return Series(metric, labels)


def parse_values(text: str) -> list[float | None]:
    """The values of a series, one per interval (None: no data).

    >>> parse_values("1+1x3 _ 5x2 _x2 0.5")
    [1.0, 2.0, 3.0, 4.0, None, 5.0, 5.0, 5.0, None, None, 0.5]
    """
    values: list[float | None] = []
    for token in text.split():
        blanks = _BLANKS.fullmatch(token)
        if blanks is not None:
            values += [None] * int(blanks.group(1) or 1)
        else:
            values += _expand(token)
        if len(values) > MAX_VALUES:
            raise NotationError(f"more than {MAX_VALUES:,} values", "a shorter series")
    return values


def _expand(token: str) -> list[float | None]:
    match = _TOKEN.fullmatch(token)
    if match is None:
        raise NotationError(f"bad value {quote(token)}", "a number, _, axn, a+bxn, a-bxn or _xn")
    start = float(match.group("a"))
    if match.group("n") is None:
        if match.group("op"):
            raise NotationError(f"bad value {quote(token)}: a step needs a count", "a+bxn, e.g. 1+1x3")
        return [start]
    count = int(match.group("n"))
    if count >= MAX_VALUES:
        raise NotationError(f"{quote(token)} expands to more than {MAX_VALUES:,} values", "a shorter series")
    step = float(match.group("b") or 0) * (-1 if match.group("op") == "-" else 1)
    return [start + step * i for i in range(count + 1)]
