"""What a :class:`~detector.models.proportion.ProportionShift` keeps: its parameters, phases and numbers.

The fields of the packed numbers are the saved state's format (by name:
their order is only the array's), so they live here beside its version: a change to the fields is a change of
``STATE_VERSION``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from detector.models.state import Packed

LEARNING, WATCHING, SHIFTED = "learning", "watching", "shifted"
STATE_VERSION = 3


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
NUMBERS = Packed(
    (
        "trials", "minutes", "sk", "sn", "skk", "skn", "snn", "minute", "m_first", "m_k", "m_n", "s_up", "s_dn",
        "s_big", "shift_dir", "shift_onset", "shift_n", "shift_k", "hs", "ns", "s_back", "shifted_at",
    ),
    ints=("trials", "minutes", "minute", "m_k", "m_n", "shift_dir", "shift_n", "shift_k"),
    shifted=("shift_dir", "shift_onset", "shift_n", "shift_k", "hs", "ns", "s_back", "shifted_at"),
)  # fmt: skip
(
    TRIALS, MINUTES, SK, SN, SKK, SKN, SNN, MINUTE, M_FIRST, M_K, M_N, S_UP, S_DN,
    S_BIG, SHIFT_DIR, SHIFT_ONSET, SHIFT_N, SHIFT_K, HS, NS, S_BACK, SHIFTED_AT,
) = range(len(NUMBERS))  # fmt: skip
NUMBERS.check(globals())
