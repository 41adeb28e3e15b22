"""What a :class:`~detector.models.proportion.ProportionShift` keeps: its parameters, phases and numbers.

The fields of the packed numbers are the saved state's format (by name:
their order is only the array's), so they live here beside its version: a change to the fields is a change of
``STATE_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from detector.models.state import Packed

STATE_VERSION: Final = 3


@dataclass(frozen=True, slots=True)
class ShareConfig:
    """A share test's parameters: one instance shared by every series with the same ones."""

    ratio_above: float | None = 5.0
    ratio_below: float | None = None
    min_delta: float = 0.05
    min_ratio: float = 2.0
    h: float = 12.0
    z: float = 2.0
    warmup: int = 200
    warmup_minutes: int = 30
    half_life: float = 1000.0
    alpha: float = field(init=False)  # per minute with trials, from half_life

    def __post_init__(self) -> None:
        if self.ratio_above is not None and self.ratio_above <= 1:
            raise ValueError(f"ProportionShift ratio_above: expected > 1 or None, got {self.ratio_above!r}")
        if self.ratio_below is not None and not 0 < self.ratio_below < 1:
            raise ValueError(f"ProportionShift ratio_below: expected in (0, 1) or None, got {self.ratio_below!r}")
        object.__setattr__(self, "alpha", 1.0 - 0.5 ** (1.0 / self.half_life))


# The numbers of a ProportionShift, one double each (see detector.models.state). sk … snn: sums over
# minutes of k, n, k², k·n, n² (plain in warm-up, then exponentially weighted).
NUMBERS: Final = Packed(
    (
        "trials", "minutes", "sk", "sn", "skk", "skn", "snn", "minute", "m_first", "m_k", "m_n", "s_up", "s_dn",
        "s_big", "shift_dir", "shift_onset", "shift_n", "shift_k", "hs", "ns", "s_back", "shifted_at",
    ),
    ints=("trials", "minutes", "minute", "m_k", "m_n", "shift_dir", "shift_n", "shift_k"),
    shifted=("shift_dir", "shift_onset", "shift_n", "shift_k", "hs", "ns", "s_back", "shifted_at"),
)  # fmt: skip
TRIALS: Final = 0
MINUTES: Final = 1
SK: Final = 2
SN: Final = 3
SKK: Final = 4
SKN: Final = 5
SNN: Final = 6
MINUTE: Final = 7
M_FIRST: Final = 8
M_K: Final = 9
M_N: Final = 10
S_UP: Final = 11
S_DN: Final = 12
S_BIG: Final = 13
SHIFT_DIR: Final = 14
SHIFT_ONSET: Final = 15
SHIFT_N: Final = 16
SHIFT_K: Final = 17
HS: Final = 18
NS: Final = 19
S_BACK: Final = 20
SHIFTED_AT: Final = 21
NUMBERS.check(globals())
