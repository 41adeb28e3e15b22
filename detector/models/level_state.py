"""What a :class:`~detector.models.level_shift.LogLevelShift` keeps: its parameters, phases and numbers.

The fields of the packed numbers are the saved state's format (by name:
their order is only the array's), so they live here beside its version: the model and the modules that work on its numbers
(:mod:`~detector.models.level_wander`, :mod:`~detector.models.level_verdict`)
all index the one array with the constants below, and a change to the
fields is a change of ``STATE_VERSION``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from detector.models.state import Packed

STATE_VERSION: Final = 5


@dataclass(frozen=True, slots=True)
class LevelConfig:
    """A level-shift test's parameters: one instance shared by every series with the same ones."""

    warmup: int = 200
    warmup_minutes: int = 30
    delta: float = math.log(1.6)
    h: float = 14.0
    clip: float = 3.0
    half_life: float = 5000.0
    min_ratio: float = 1.3
    min_run: int = 10
    alpha: float = field(init=False)  # per request, from half_life
    worth: float = field(init=False)  # log(min_ratio): the smallest effect that matters, in log units

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", 1.0 - 0.5 ** (1.0 / self.half_life))
        object.__setattr__(self, "worth", math.log(self.min_ratio))


# The numbers of a LogLevelShift, one double each (see detector.models.state).
NUMBERS: Final = Packed(
    (
        "n", "minutes", "mean", "var", "tau2", "zz", "zlag", "z_prev", "prev_minute", "lim", "last_close",
        "minute", "m_first", "m_n", "m_sum", "m_sq", "m_raw", "s_up", "s_dn", "held_since",
        "shift_dir", "shift_onset", "shift_n", "shift_mean", "s_back", "shifted_at",
    ),
    ints=("n", "minutes", "prev_minute", "last_close", "minute", "m_n", "shift_dir", "shift_n"),
    shifted=("shift_dir", "shift_onset", "shift_n", "shift_mean", "s_back", "shifted_at"),
)  # fmt: skip
N: Final = 0
MINUTES: Final = 1
MEAN: Final = 2
VAR: Final = 3
TAU2: Final = 4
ZZ: Final = 5
ZLAG: Final = 6
Z_PREV: Final = 7
PREV_MINUTE: Final = 8
LIM: Final = 9
LAST_CLOSE: Final = 10
MINUTE: Final = 11
M_FIRST: Final = 12
M_N: Final = 13
M_SUM: Final = 14
M_SQ: Final = 15
M_RAW: Final = 16
S_UP: Final = 17
S_DN: Final = 18
HELD_SINCE: Final = 19
SHIFT_DIR: Final = 20
SHIFT_ONSET: Final = 21
SHIFT_N: Final = 22
SHIFT_MEAN: Final = 23
S_BACK: Final = 24
SHIFTED_AT: Final = 25
NUMBERS.check(globals())
