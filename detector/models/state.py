"""Model state as plain, versioned dicts, and the compact forms models keep it in.

Saved state is a plain dict of name → value plus a version ``v``: it goes to
changelog topics, so never pickle, and a version mismatch is refused rather
than misread. Lists are copied both ways so a saved state never aliases a
live model.

In memory, a model is kept per active series, thousands of times over, so
its form is chosen for size: the numbers in one ``array('d')`` with named
indices (:class:`Packed`; 8 bytes each instead of a float object and a slot),
and the parameters in one frozen object shared by every model built with the
same ones (:func:`shared`). A double holds every int up to 2**53 exactly and
the same float arithmetic on the same values gives the same bits, so packing
changes no result.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, Final, TypeVar

M = TypeVar("M")
C = TypeVar("C")

_SHARED: dict[Any, Any] = {}


class Watched:
    """What makes a model a rule's monitor on one series: the rule it answers to, and whether its shift paged.

    Kept on the model itself rather than in a wrapper object around it, until
    its series takes it: the engine then keeps the rule in the series' shared
    layout and the flags as numbers in its array (``detector.packed_monitors``).
    ``watch`` is the rule's :class:`detector.monitor.Watch`, shared by every
    series the rule selects (None for a model used on its own); ``paged``
    is set once the model's shift became an alert or was merged into one,
    so one shift pages once however long it lasts; ``held_since`` is the
    event time a derived metric's shift was first seen waiting for a cause.
    Saved state is the model's own: :func:`detector.monitor.monitor_state`
    adds these beside it.
    """

    __slots__ = ("held_since", "paged", "watch")

    def __init__(self) -> None:
        self.watch: Any = None
        self.paged = False
        self.held_since = 0.0

    @property
    def model(self) -> Any:
        """The model: a monitor is its model."""
        return self

    @property
    def kind(self) -> type:
        """Its kind of model: what a monitor kept packed in its series answers too (``detector.packed_monitors``)."""
        return type(self)

    @property
    def rule(self) -> Any:
        """The rule that asked for this model (None for a built-in one)."""
        return self.watch.rule

    @property
    def rule_id(self) -> str:
        return self.watch.rule_id

    @property
    def metric(self) -> str:
        return self.watch.metric


def shared(config: C) -> C:
    """The one instance equal to ``config``: models with the same parameters share it.

    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True, slots=True)
    ... class Knobs:
    ...     h: float
    >>> shared(Knobs(2.0)) is shared(Knobs(2.0)), shared(Knobs(2.0)) is shared(Knobs(3.0))
    (True, False)
    """
    return _SHARED.setdefault(config, config)  # type: ignore[no-any-return]


_PARAMETERS: dict[int, tuple[Any, tuple[str, ...], tuple[Any, ...]]] = {}


def _saved_fields(config: Any, numbers: Packed) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The names of a packed model's saved fields, its parameters' first, and the parameters' values.

    Worked out once per shared config, found again by the config's identity
    (hashing a frozen dataclass costs more than the lookup): a worker saves
    every model of a group after each batch. The entry holds the config, so
    its identity is not reused while the entry lasts.
    """
    entry = _PARAMETERS.get(id(config))
    if entry is None or entry[0] is not config:
        names = tuple(f.name for f in fields(config) if f.init)
        keys = (*names, *numbers.names, *numbers.vectors)
        entry = _PARAMETERS[id(config)] = (config, keys, tuple(getattr(config, name) for name in names))
    return entry[1], entry[2]


def restore_config(cls: type[C], state: Mapping[str, Any]) -> C:
    """The shared config of ``cls`` with the parameters a saved state holds."""
    return shared(cls(**{f.name: state[f.name] for f in fields(cls) if f.init}))  # type: ignore[arg-type]


class Packed:
    """Named fields in one array of doubles: the numeric state of a model.

    The model indexes the array with module constants (fast, and local to
    the hot functions); :meth:`check` proves at import that they match the
    names. They are written out one by one as ``Final`` literals, as are the
    models' other constants: the compiled build then inlines each one, where
    it otherwise looks the name up in the module's dict at every use (about
    a seventh of a compiled engine's time). ``ints`` are the fields that count, saved as ints; ``vectors``
    are fixed-length runs of numbers after the named ones (their start is
    :meth:`offset`), saved as lists.

    ``shifted`` names the last fields, those that describe a shift: they
    are in the array only while the model is in one (:meth:`widen`,
    :meth:`narrow`). A model per series spends almost all its life
    watching, so its array is ``core`` numbers long; saved state always
    has every field, zero where the array has none.

    >>> NUMBERS = Packed(("n", "mean"), ints=("n", "seen"), vectors={"seen": 3})
    >>> N, MEAN = range(2)
    >>> NUMBERS.check({"N": N, "MEAN": MEAN})
    >>> a = NUMBERS.new(mean=2.5)
    >>> a[N] += 3
    >>> a[NUMBERS.offset("seen") + 1] = 7
    >>> NUMBERS.values(a)
    [3, 2.5, [0, 7, 0]]
    >>> NUMBERS.from_dict({"n": 3, "mean": 2.5, "seen": [0, 7, 0]}, "Tiny") == a
    True

    A shift's fields, kept only while there is one:

    >>> SHIFTY = Packed(("n", "onset"), shifted=("onset",))
    >>> b = SHIFTY.new(n=4)
    >>> len(b), SHIFTY.values(b)
    (1, [4.0, 0.0])
    >>> b = SHIFTY.widen(b); b[1] = 60.0; len(b), len(SHIFTY.narrow(b))
    (2, 1)
    """

    __slots__ = ("_int_at", "_vector_at", "core", "ints", "names", "size", "vectors")

    def __init__(
        self, names: Iterable[str], ints: Iterable[str] = (), vectors: Mapping[str, int] | None = None,
        shifted: Iterable[str] = (),
    ) -> None:
        self.names = tuple(names)
        self.ints = frozenset(ints)
        self.vectors = dict(vectors or {})
        unknown = self.ints - set(self.names) - set(self.vectors)
        if unknown:
            raise ValueError(f"Packed ints: {sorted(unknown)} are not among the fields {self.names}")
        self.size = len(self.names) + sum(self.vectors.values())
        shifted = tuple(shifted)
        if shifted and (self.vectors or self.names[len(self.names) - len(shifted):] != shifted):
            raise ValueError(f"Packed shifted: {shifted} must be the last fields of {self.names}, with no vectors")
        self.core = self.size - len(shifted)
        self._int_at = tuple(i for i, name in enumerate(self.names) if name in self.ints)
        self._vector_at = tuple((self.offset(name), length, name in self.ints) for name, length in self.vectors.items())

    def __len__(self) -> int:
        """The named scalar fields (the vectors follow them)."""
        return len(self.names)

    def offset(self, vector: str) -> int:
        """Where ``vector`` starts in the array."""
        start = len(self.names)
        for name, length in self.vectors.items():
            if name == vector:
                return start
            start += length
        raise KeyError(vector)

    def check(self, namespace: Mapping[str, Any]) -> None:
        """Refuse index constants (``NAME`` for field ``name``) that do not match the fields' order."""
        wrong = [n for i, n in enumerate(self.names) if namespace.get(n.upper()) != i]
        if wrong:
            raise ValueError(f"Packed: index constants of {wrong} do not match their place in {self.names}")

    def new(self, **values: float) -> array[float]:
        """An array of the ``core`` fields, every one zero but ``values``."""
        a = array("d", [0.0] * self.core)  # from a list: allocated to size, where bytes would over-allocate
        for name, value in values.items():
            a[self.names.index(name)] = value
        return a

    def widen(self, a: array[float]) -> array[float]:
        """``a`` with room for a shift's fields (zero); a new array of exactly that size, or ``a`` if it has them."""
        return a + array("d", [0.0] * (self.size - len(a))) if len(a) < self.size else a

    def narrow(self, a: array[float]) -> array[float]:
        """``a`` without a shift's fields: a new array of exactly the ``core`` fields, or ``a`` if it has no more."""
        return a[: self.core] if len(a) > self.core else a

    def values(self, a: array[float]) -> list[Any]:
        """Every field's value in order, a shift's as zero where the array has none; ints as ints, vectors as lists.

        One list from the array's numbers, converted in place: a worker saves
        every model of a group after each batch, so this runs per model, per batch.
        """
        values: list[Any] = a.tolist()
        if len(values) < self.size:
            values += [0.0] * (self.size - len(values))
        for i in self._int_at:
            values[i] = int(values[i])
        if self._vector_at:
            scalars = values[: len(self.names)]
            for start, length, ints in self._vector_at:
                part = values[start : start + length]
                scalars.append([int(v) for v in part] if ints else part)
            return scalars
        return values

    def from_dict(self, state: Mapping[str, Any], owner: str) -> array[float]:
        """The array of a saved state; a missing field or a vector of another length is refused, naming ``owner``."""
        missing = [name for name in (*self.names, *self.vectors) if name not in state]
        if missing:
            raise ValueError(f"{owner} state: missing {missing}")
        numbers = [float(state[name]) for name in self.names]
        for name, length in self.vectors.items():
            values = state[name]
            if len(values) != length:
                raise ValueError(f"{owner} state {name}: expected {length} numbers, got {len(values)}")
            numbers += (float(v) for v in values)
        return array("d", numbers)


LEARNING: Final = "learning"
WATCHING: Final = "watching"
SHIFTED: Final = "shifted"
PHASES: Final = (LEARNING, WATCHING, SHIFTED)
"""The phases every model goes through."""


def packed_state(model: Any, numbers: Packed, version: int, **extra: Any) -> dict[str, Any]:
    """A packed model's saved state: its parameters, its numbers, its phase, ``extra`` and the version."""
    keys, parameters = _saved_fields(model.config, numbers)
    state = dict(zip(keys, (*parameters, *numbers.values(model.a)), strict=True))
    state["phase"] = model.phase
    state.update(extra)
    state["v"] = version
    return state


def restore_packed(cls: type[M], config: type[Any], numbers: Packed, state: Mapping[str, Any], version: int) -> M:
    """A model of ``cls`` with the config, numbers and phase of :func:`packed_state`'s dict; the caller adds the rest.

    Another version, a missing number or an unknown phase is refused with a ``ValueError`` naming ``cls``.
    """
    check_version(cls.__name__, state, version)
    model: Any = cls.__new__(cls)
    model.watch, model.paged, model.held_since = None, False, 0.0
    model.config = restore_config(config, state)
    model.phase = one_of(cls.__name__, "phase", state["phase"], PHASES)
    a = numbers.from_dict(state, cls.__name__)
    model.a = a if model.phase == SHIFTED else numbers.narrow(a)
    return model  # type: ignore[no-any-return]


def grow_run(run: array[float] | None, entry: tuple[float, ...], keep: int) -> array[float]:
    """The run of a CUSUM with one more minute's ``entry``; past ``keep`` minutes its two oldest merge.

    A merged entry keeps the first one's start and sums the other fields.
    The run is rebuilt at its exact size rather than extended in place:
    ``extend`` over-allocates, and a model per series keeps its runs.

    >>> run = None
    >>> for minute in range(4):
    ...     run = grow_run(run, (minute, 10.0, 1.0), keep=3)
    >>> run.tolist()
    [0.0, 20.0, 2.0, 2.0, 10.0, 1.0, 3.0, 10.0, 1.0]
    """
    width = len(entry)
    if run is None:
        return array("d", entry)
    if len(run) >= width * keep:
        head = array("d", (run[0], *[run[i] + run[width + i] for i in range(1, width)]))
        return head + run[2 * width :] + array("d", entry)
    return run + array("d", entry)


def saved_run(saved: Iterable[float]) -> array[float] | None:
    """A CUSUM run from saved state: none when it was empty (models drop a run at zero)."""
    run = array("d", saved)
    return run if run else None


def check_version(owner: str, state: Mapping[str, Any], version: int) -> None:
    """Refuse a state of another version than ``version``."""
    if state.get("v") != version:
        raise ValueError(f"{owner} state version {state.get('v')!r}, expected {version}")


def one_of(owner: str, name: str, value: Any, choices: Iterable[str]) -> str:
    """The constant among ``choices`` equal to a saved ``value`` (so restored models share it); else refused.

    >>> one_of("Tiny", "phase", "on", ("off", "on"))
    'on'
    """
    for choice in choices:
        if value == choice:
            return choice
    raise ValueError(f"{owner} state {name}: expected one of {', '.join(choices)}; got {value!r}")


def slots_state(model: object, names: tuple[str, ...], version: int) -> dict[str, Any]:
    """The model's attributes ``names`` (its slots) as a plain dict, with its state version.

    The names are passed rather than read from ``__slots__``: a class compiled
    by mypyc (``SPENDWATCH_COMPILE=1``) has no ``__slots__`` at run time.
    """
    state: dict[str, Any] = {}
    for name in names:
        value = getattr(model, name)
        state[name] = list(value) if isinstance(value, list) else value
    state["v"] = version
    return state


def restore_slots(cls: type[M], names: tuple[str, ...], state: dict[str, Any], version: int) -> M:
    """A model of ``cls`` from :func:`slots_state`'s dict; another version is refused.

    >>> class Tiny:
    ...     __slots__ = ("n", "run")
    >>> t = Tiny(); t.n, t.run = 3, [1.0]
    >>> restore_slots(Tiny, Tiny.__slots__, slots_state(t, Tiny.__slots__, 1), 1).run
    [1.0]
    """
    check_version(cls.__name__, state, version)
    model = cls.__new__(cls)
    for name in names:
        value = state[name]
        setattr(model, name, list(value) if isinstance(value, list) else value)
    return model
