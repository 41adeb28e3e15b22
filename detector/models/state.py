"""Model state as plain, versioned dicts: what every model's to_state/from_state share.

Models keep their state in ``__slots__`` of numbers and flat lists, so state
is those slots by name plus a version ``v``; lists are copied both ways so a
saved state never aliases a live model. Plain data, never pickle: it goes to
changelog topics, and a version mismatch is refused rather than misread.
"""

from __future__ import annotations

from typing import Any, TypeVar

M = TypeVar("M")


def slots_state(model: object, version: int) -> dict[str, Any]:
    """The model's slots as a plain dict, with its state version."""
    state: dict[str, Any] = {}
    for name in type(model).__slots__:  # type: ignore[attr-defined]
        value = getattr(model, name)
        state[name] = list(value) if isinstance(value, list) else value
    state["v"] = version
    return state


def restore_slots(cls: type[M], state: dict[str, Any], version: int) -> M:
    """A model of ``cls`` from :func:`slots_state`'s dict; another version is refused.

    >>> class Tiny:
    ...     __slots__ = ("n", "run")
    >>> t = Tiny(); t.n, t.run = 3, [1.0]
    >>> restore_slots(Tiny, slots_state(t, 1), 1).run
    [1.0]
    """
    if state.get("v") != version:
        raise ValueError(f"{cls.__name__} state version {state.get('v')!r}, expected {version}")
    model = cls.__new__(cls)
    for name in cls.__slots__:  # type: ignore[attr-defined]
        value = state[name]
        setattr(model, name, list(value) if isinstance(value, list) else value)
    return model
