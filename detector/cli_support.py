"""What every command needs from its flags: settings validated once, and the price table.

A bad value stops the command before any work, with a message that names
the setting; a bad price file the same, with its path and entry.
"""

from __future__ import annotations

from typing import TypeVar

import click
from pydantic import ValidationError

from detector.config import Settings
from detector.errors import SpendwatchError
from detector.pricing import PriceTable

S = TypeVar("S", bound=Settings)


def settings_from(cls: type[S] = Settings, **flags: object) -> S:  # type: ignore[assignment]
    """Settings from flags (those given) and ``SPENDWATCH_*`` variables; a bad value is a usage error.

    >>> settings_from(warmup_requests=50).warmup_requests
    50
    """
    try:
        return cls(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise click.UsageError(f"bad setting: {problems}") from None


def prices_from(settings: Settings) -> PriceTable:
    """The packaged price table, overridden by the settings' price file; a bad file is a usage error."""
    try:
        return PriceTable.load(settings.prices)
    except SpendwatchError as exc:
        raise click.UsageError(str(exc)) from None
