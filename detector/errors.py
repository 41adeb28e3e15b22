"""The one root exception of spendwatch, and the tree that hangs from it.

Callers catch :class:`SpendwatchError` to handle anything we raise on purpose;
anything else escaping is a bug. Each error carries its context in attributes
so a caller can report it without parsing the message::

    SpendwatchError
    ├── ConfigError          a setting or file given at start-up is unusable
    │   ├── PriceTableError  a price file cannot be read or has a bad entry
    │   └── RuleLoadError    rule files with errors (detector.rules.loader), all listed
    └── InputError           an input file or stream cannot be opened at all
"""

from __future__ import annotations


class SpendwatchError(Exception):
    """Root of every error spendwatch raises on purpose."""


class ConfigError(SpendwatchError):
    """A setting or a file named by a setting is unusable; the message says how to fix it."""


class PriceTableError(ConfigError):
    """A price file is unreadable or holds an entry we cannot use.

    ``path`` is the file and ``entry`` the model or GPU key at fault (or None
    when the file as a whole is bad).
    """

    def __init__(self, message: str, *, path: str, entry: str | None = None) -> None:
        where = f"{path}: {entry}: " if entry else f"{path}: "
        super().__init__(where + message)
        self.path = path
        self.entry = entry


class InputError(SpendwatchError):
    """An input (events file, stdin) cannot be read at all.

    Individual bad events are never raised: they become rejects.
    """

    def __init__(self, message: str, *, path: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
