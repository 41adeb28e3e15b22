"""spendwatch's detection library: events in, priced anomaly records out.

Pure, synchronous Python with no Kafka and no wall clock, so the same code
runs in a unit test, in ``spendwatch replay`` over a file, and inside the
stream worker. Start with :class:`Engine` (detection), :class:`Decoder`
(the event contract) and :class:`PriceTable` (what each request cost).
"""

from detector.anomaly import Anomaly
from detector.config import Settings
from detector.engine import Engine
from detector.errors import ConfigError, InputError, PriceTableError, SpendwatchError
from detector.events import Decoder, GpuSample, LlmRequest, Reject, UsageSample
from detector.pricing import ModelPrice, PriceTable

__all__ = [
    "Anomaly",
    "ConfigError",
    "Decoder",
    "Engine",
    "GpuSample",
    "InputError",
    "LlmRequest",
    "ModelPrice",
    "PriceTable",
    "PriceTableError",
    "Reject",
    "Settings",
    "SpendwatchError",
    "UsageSample",
]
