"""What a :class:`~detector.models.seasonal_rate.SeasonalRate` keeps: its parameters and its numbers.

The parameters are a frozen :class:`RateConfig`, one instance shared by
every series built alike; the numbers are one array of doubles laid out by
:data:`NUMBERS`, indexed by the constants below (see
:mod:`detector.models.state` for why). The profile, the noise, the shift and the model
each read and write their own fields of that one array, so the layout is
written down once, here, and checked at import; so are the sizes the
saved state is held to (buckets, the cap on their counts, the run's length).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from detector.models.state import Packed

BUCKETS: Final = 48  # hour of day × (weekday, weekend)
SEEN_CAP: Final = 999
RUN_MINUTES: Final = 16  # minutes a run keeps apart (at least min_minutes); older ones merge into its first entry


@dataclass(frozen=True, slots=True)
class RateConfig:
    """A seasonal rate test's parameters: one instance shared by every series with the same ones."""

    ratio_above: float | None = 2.0
    ratio_below: float | None = None
    min_ratio: float = 1.5
    h: float = 25.0
    z: float = 2.0
    min_minutes: int = 12
    warmup_minutes: int = 1440
    min_bucket_minutes: int = 120
    bucket_half_life: float = 180.0  # in minutes of that bucket
    level_half_life: float = 1440.0
    noise_half_life: float = 2880.0
    max_gap_minutes: int = 720
    utc_offset_minutes: int = 0
    # Derived once, the same numbers the methods would compute each minute:
    level_keep: float = field(init=False)  # per minute, from level_half_life
    level_rate: float = field(init=False)  # 1 − level_keep
    bucket_rate: float = field(init=False)  # per minute of a bucket, from bucket_half_life
    noise_keep: float = field(init=False)  # per minute, from noise_half_life

    def __post_init__(self) -> None:
        if self.ratio_above is not None and self.ratio_above <= 1:
            raise ValueError(f"SeasonalRate ratio_above: expected > 1 or None, got {self.ratio_above!r}")
        if self.ratio_below is not None and not 0 < self.ratio_below < 1:
            raise ValueError(f"SeasonalRate ratio_below: expected in (0, 1) or None, got {self.ratio_below!r}")
        if not 3 <= self.min_minutes <= RUN_MINUTES:
            raise ValueError(f"SeasonalRate min_minutes: expected 3 to {RUN_MINUTES}, got {self.min_minutes!r}")
        object.__setattr__(self, "level_keep", 0.5 ** (1.0 / self.level_half_life))
        object.__setattr__(self, "level_rate", 1.0 - 0.5 ** (1.0 / self.level_half_life))
        object.__setattr__(self, "bucket_rate", 1.0 - 0.5 ** (1.0 / self.bucket_half_life))
        object.__setattr__(self, "noise_keep", 0.5 ** (1.0 / self.noise_half_life))


# The numbers of a SeasonalRate, one double each (see detector.models.state), then prof: the EW mean
# amount per minute of each bucket, in units of the level. The minutes each bucket has learned (capped
# at 999) are counts of their own, two bytes each: SeasonalRate.counts.
NUMBERS: Final = Packed(
    (
        "first_minute", "minute", "m_x", "gx", "gm", "n1", "nm", "nmm", "ny", "nym",
        "lag_rr", "lag_mm", "r_prev", "mu_prev", "prev_minute", "s_up", "s_dn",
        "shift_dir", "shift_onset", "shift_minutes", "rx", "rm", "shift_x", "shift_m", "s_back", "shifted_at",
    ),
    ints=("first_minute", "minute", "prev_minute", "shift_dir", "shift_minutes"),
    vectors={"prof": BUCKETS},
)  # fmt: skip
FIRST_MINUTE: Final = 0
MINUTE: Final = 1
M_X: Final = 2
GX: Final = 3
GM: Final = 4
N1: Final = 5
NM: Final = 6
NMM: Final = 7
NY: Final = 8
NYM: Final = 9
LAG_RR: Final = 10
LAG_MM: Final = 11
R_PREV: Final = 12
MU_PREV: Final = 13
PREV_MINUTE: Final = 14
S_UP: Final = 15
S_DN: Final = 16
SHIFT_DIR: Final = 17
SHIFT_ONSET: Final = 18
SHIFT_MINUTES: Final = 19
RX: Final = 20
RM: Final = 21
SHIFT_X: Final = 22
SHIFT_M: Final = 23
S_BACK: Final = 24
SHIFTED_AT: Final = 25
NUMBERS.check(globals())
PROF: Final = NUMBERS.offset("prof")


def six_digits(v: float) -> float:
    """``v`` as the state keeps a learned amount: six digits are plenty and keep the state small.

    >>> six_digits(2 / 3)
    0.666667
    """
    return float(f"{v:.6g}")


def saved_counts(seen: Sequence[int]) -> array[int]:
    """The minutes each bucket has learned, from saved state: refused unless 48 counts within the cap."""
    if len(seen) != BUCKETS or not all(0 <= n <= SEEN_CAP for n in seen):
        raise ValueError(f"SeasonalRate state seen: expected {BUCKETS} counts of 0 to {SEEN_CAP}, got {seen!r}")
    return array("H", seen)
