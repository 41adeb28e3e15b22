"""Loading a packed monitor's model to run it, and putting it back: the half of packing that runs hot.

:mod:`detector.packed_monitors` keeps every model of a series in the
series' own array; a model runs by being loaded into an object of its kind
kept for the purpose (a *cursor*) and put back. That happens for every model
of every series each minute, so it lives here among the models, and the
compiled build (mypyc) compiles it with them.
"""

from __future__ import annotations

from array import array
from typing import Any, Final

from detector.models import drift, level_state, rate_state, share_state
from detector.models.drift import SlowCreep
from detector.models.level_shift import LogLevelShift
from detector.models.proportion import ProportionShift
from detector.models.seasonal_rate import SeasonalRate
from detector.models.state import LEARNING, SHIFTED, WATCHING, Packed

LEVEL: Final = 0
SHARE: Final = 1
RATE: Final = 2
CREEP: Final = 3
KINDS: Final[dict[type[Any], tuple[Packed, int, tuple[str, ...]]]] = {
    LogLevelShift: (level_state.NUMBERS, LEVEL, ("up", "dn")),
    ProportionShift: (share_state.NUMBERS, SHARE, ("run",)),
    SeasonalRate: (rate_state.NUMBERS, RATE, ("counts", "run")),
    SlowCreep: (drift.NUMBERS, CREEP, ()),
}
"""Each kind of model that packs: its numbers, its code (which branch of :func:`load` and :func:`put` is its),
and the arrays it keeps beside them (None while it has none)."""

FLAGS: Final = 2
"""Numbers after a model's own: its phase (and whether its shift paged), since when a derived shift waits."""
PAGED: Final = 3.0  # added to the phase's code once the monitor's shift has paged
SHIFTED_CODE: Final = 2.0
PHASE_CODE: Final = {LEARNING: 0.0, WATCHING: 1.0, SHIFTED: SHIFTED_CODE}
PHASE_OF: Final = (LEARNING, WATCHING, SHIFTED, LEARNING, WATCHING, SHIFTED)  # the phase of a code, paged or not


def _cursor(kind: Any) -> Any:
    """A model object of ``kind`` for packed monitors to be loaded into to run."""
    cursor = kind.__new__(kind)
    cursor.watch, cursor.paged, cursor.held_since = None, False, 0.0
    return cursor


# One of each kind, typed as its kind: the compiled build then stores into it directly.
_LEVEL: Final[LogLevelShift] = _cursor(LogLevelShift)
_SHARE: Final[ProportionShift] = _cursor(ProportionShift)
_RATE: Final[SeasonalRate] = _cursor(SeasonalRate)
_CREEP: Final[SlowCreep] = _cursor(SlowCreep)


class Spec:
    """One model of a series' layout: its kind, parameters and rule, and where its numbers and arrays are."""

    __slots__ = ("at", "code", "config", "end", "kind", "runs", "runs_at", "shift_at", "watch")

    def __init__(self, model: Any, at: int, extra: int) -> None:
        numbers, code, runs = KINDS[type(model)]
        self.kind: type[Any] = type(model)
        self.code = code
        self.config: Any = model.config
        self.watch: Any = model.watch
        self.at = at  # where its numbers start in the series' array
        self.end = at + numbers.core  # where its flags start, after them
        shifted = numbers.size > numbers.core
        self.shift_at = extra if shifted else -1  # where its shift's numbers are in the series' list, if kept
        self.runs_at = extra + int(shifted)  # where its runs are in that list
        self.runs = runs

    @property
    def width(self) -> int:
        """Its numbers in the series' array, flags included."""
        return self.end + FLAGS - self.at


def load(owner: Any, spec: Spec) -> Any:
    """The model of ``spec``'s kind kept for running, holding the owner's monitor's state until the next load.

    What the model changes is the monitor's once :func:`put` back.
    """
    a: array[float] = owner.a
    x: list[Any] = owner.x
    end = spec.end
    numbers = a[spec.at : end]
    shift_at = spec.shift_at
    if shift_at >= 0:
        shifted = x[shift_at]
        if shifted is not None:
            numbers += shifted
    phase = PHASE_OF[int(a[end])]
    at = spec.runs_at
    code = spec.code
    if code == LEVEL:
        level = _LEVEL
        level.a, level.phase, level.config, level.up, level.dn = numbers, phase, spec.config, x[at], x[at + 1]
        return level
    if code == SHARE:
        share = _SHARE
        share.a, share.phase, share.config, share.run = numbers, phase, spec.config, x[at]
        return share
    if code == RATE:
        rate = _RATE
        rate.a, rate.phase, rate.config, rate.counts, rate.run = numbers, phase, spec.config, x[at], x[at + 1]
        return rate
    creep = _CREEP
    creep.a, creep.phase, creep.config = numbers, phase, spec.config
    return creep


def put(owner: Any, spec: Spec, model: Any) -> bool:
    """Store ``model``'s state (a loaded cursor, or a model of the kind built apart) as the owner's monitor's.

    Returns whether the monitor is now *settled*: not in a shift, not
    paged, holding none, so the incidents have nothing to do with it. The
    engine asks that after every put; answered here, it costs no call of
    its own (a tenth of a microsecond compiled, once a model a minute).
    """
    x: list[Any] = owner.x
    at = spec.runs_at
    code = spec.code
    if code == LEVEL:
        level: LogLevelShift = model
        numbers, phase = level.a, level.phase
        x[at], x[at + 1] = level.up, level.dn
    elif code == SHARE:
        share: ProportionShift = model
        numbers, phase = share.a, share.phase
        x[at] = share.run
    elif code == RATE:
        rate: SeasonalRate = model
        numbers, phase = rate.a, rate.phase
        x[at], x[at + 1] = rate.counts, rate.run
    else:
        creep: SlowCreep = model
        numbers, phase = creep.a, creep.phase
    a: array[float] = owner.a
    at, end, shift_at = spec.at, spec.end, spec.shift_at
    if len(numbers) == end - at:
        a[at:end] = numbers
        if shift_at >= 0:
            x[shift_at] = None
    elif shift_at >= 0:
        a[at:end] = numbers[: end - at]
        x[shift_at] = numbers[end - at :]
    else:
        raise ValueError(f"{spec.kind.__name__}: {len(numbers)} numbers where it keeps {end - at}")
    flag = PHASE_CODE[phase] + (PAGED if a[end] >= PAGED else 0.0)
    a[end] = flag
    return flag < SHIFTED_CODE and a[end + 1] == 0.0
