"""Loading a packed monitor's model to run it, and putting it back: the half of packing that runs hot.

:mod:`detector.packed_monitors` keeps every model of a series in the
series' own array; a model runs by being loaded into an object of its kind
kept for the purpose (a *cursor*) and put back. That happens for every model
of every series each minute, so it lives here among the models, and the
compiled build (mypyc) compiles it with them.
"""

from __future__ import annotations

from typing import Any, Final

from detector.models import drift, level_state, rate_state, share_state
from detector.models.drift import SlowCreep
from detector.models.level_shift import LogLevelShift
from detector.models.proportion import ProportionShift
from detector.models.seasonal_rate import SeasonalRate
from detector.models.state import LEARNING, SHIFTED, WATCHING, Packed

KINDS: Final[dict[type[Any], tuple[Packed, tuple[str, ...]]]] = {
    LogLevelShift: (level_state.NUMBERS, ("up", "dn")),
    ProportionShift: (share_state.NUMBERS, ("run",)),
    SeasonalRate: (rate_state.NUMBERS, ("counts", "run")),
    SlowCreep: (drift.NUMBERS, ()),
}
"""Each kind of model that packs: its numbers, and the arrays it keeps beside them (None while it has none)."""

FLAGS: Final = 2
"""Numbers after a model's own: its phase (and whether its shift paged), since when a derived shift waits."""
PAGED: Final = 3.0  # added to the phase's code once the monitor's shift has paged
SHIFTED_CODE: Final = 2.0
PHASE_CODE: Final = {LEARNING: 0.0, WATCHING: 1.0, SHIFTED: SHIFTED_CODE}
PHASE_OF: Final = (LEARNING, WATCHING, SHIFTED, LEARNING, WATCHING, SHIFTED)  # the phase of a code, paged or not
_CURSORS: dict[type[Any], Any] = {}


def _cursor(kind: Any) -> Any:
    """The one model object of ``kind`` that packed monitors are loaded into to run."""
    cursor = _CURSORS.get(kind)
    if cursor is None:
        cursor = _CURSORS[kind] = kind.__new__(kind)
        cursor.watch, cursor.paged, cursor.held_since = None, False, 0.0
    return cursor


class Spec:
    """One model of a series' layout: its kind, parameters and rule, and where its numbers and arrays are."""

    __slots__ = ("at", "config", "cursor", "end", "kind", "runs", "runs_at", "shift_at", "watch")

    def __init__(self, model: Any, at: int, extra: int) -> None:
        numbers, runs = KINDS[type(model)]
        self.kind: type[Any] = type(model)
        self.config: Any = model.config
        self.watch: Any = model.watch
        self.at = at  # where its numbers start in the series' array
        self.end = at + numbers.core  # where its flags start, after them
        shifted = numbers.size > numbers.core
        self.shift_at = extra if shifted else -1  # where its shift's numbers are in the series' list, if kept
        self.runs_at = extra + int(shifted)  # where its runs are in that list
        self.runs = runs
        self.cursor: Any = _cursor(self.kind)

    @property
    def width(self) -> int:
        """Its numbers in the series' array, flags included."""
        return self.end + FLAGS - self.at


def load(owner: Any, spec: Spec) -> Any:
    """The model of ``spec``'s kind kept for running, holding the owner's monitor's state until the next load.

    What the model changes is the monitor's once :func:`put` back.
    """
    a = owner.a
    end = spec.end
    cursor = spec.cursor
    numbers = a[spec.at : end]
    shift_at = spec.shift_at
    if shift_at >= 0:
        shifted = owner.x[shift_at]
        if shifted is not None:
            numbers += shifted
    cursor.a = numbers
    cursor.phase = PHASE_OF[int(a[end])]
    cursor.config = spec.config
    runs = spec.runs
    if runs:
        x = owner.x
        at = spec.runs_at
        setattr(cursor, runs[0], x[at])
        if len(runs) == 2:
            setattr(cursor, runs[1], x[at + 1])
    return cursor


def put(owner: Any, spec: Spec, model: Any) -> None:
    """Store ``model``'s state (a loaded cursor, or a model of the kind built apart) as the owner's monitor's."""
    a = owner.a
    at, end, shift_at = spec.at, spec.end, spec.shift_at
    numbers = model.a
    if len(numbers) == end - at:
        a[at:end] = numbers
        if shift_at >= 0:
            owner.x[shift_at] = None
    elif shift_at >= 0:
        a[at:end] = numbers[: end - at]
        owner.x[shift_at] = numbers[end - at :]
    else:
        raise ValueError(f"{spec.kind.__name__}: {len(numbers)} numbers where it keeps {end - at}")
    a[end] = PHASE_CODE[model.phase] + (PAGED if a[end] >= PAGED else 0.0)
    runs = spec.runs
    if runs:
        x = owner.x
        at = spec.runs_at
        x[at] = getattr(model, runs[0])
        if len(runs) == 2:
            x[at + 1] = getattr(model, runs[1])


def settled(owner: Any, spec: Spec) -> bool:
    """Nothing for the incidents to do: the monitor is not in a shift, has not paged, and holds none."""
    a = owner.a
    end = spec.end
    return bool(a[end] < SHIFTED_CODE and a[end + 1] == 0.0)
