"""Monitors kept in their series' own array: no object and no array of their own per model.

A series has seven models (three level-shift tests, slow creep, three share
tests; a pricier one also its share of its feature's requests), a feature
two more (its request and spend rates), and an engine keeps a series per
(team, feature, model), up to ``max_series`` of them. Kept as objects, each
model cost its object (~96 bytes) and the header of its own array (~70
bytes) on top of its numbers: a quarter of what a series cost. Here the
numbers of all the models of a series (or of a feature) follow its own in
its one array, each with two flags (its phase, and whether its shift has
paged, in one number; since when a derived shift waits for a cause); what
is the same for every series with the same rules (each model's kind,
parameters and rule, and where its numbers are) is one shared
:class:`Layout`; and the arrays a model keeps only some of the time (its
CUSUM runs, a shift's numbers) sit in one list per series.

The models' code is unchanged: to run one, its numbers are *loaded* into a
model object of its kind kept for the purpose (one per kind, reused), the
method runs, and the numbers are *put* back. The same arithmetic runs on
the same doubles, so the results, the records and the saved state are
those of the model kept as an object. Loading and putting back cost about
0.4 µs a model compiled, 0.6 µs as Python: on the stream benchmark's
traffic, about one load an event, a seventh of the engine's time
(bench/engine_throughput.py). A :class:`PackedMonitor` is
the handle the engine and the incidents work with: it answers as the model
would.

The objects loaded into are one per kind for the whole process, so engines
must not run in two threads at once (none does: the worker is one asyncio
loop, replay one loop, the benchmarks separate processes).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from itertools import accumulate
from typing import Any
from weakref import WeakValueDictionary

from detector.models.packed import PAGED, PHASE_OF, Spec, load, put


class Layout:
    """Where each monitor of a series keeps what: shared by every series with the same rules and kinds.

    ``ends``: where each group of monitors ends, the series' own order (a
    series' are those fed each request, those fed each minute, and its share
    of its feature's requests).
    """

    __slots__ = ("__weakref__", "base", "ends", "extras", "size", "specs")

    def __init__(self, models: Sequence[Any], base: int, ends: tuple[int, ...]) -> None:
        specs, at, extra = [], base, 0
        for model in models:
            spec = Spec(model, at, extra)
            specs.append(spec)
            at += spec.width
            extra = spec.runs_at + len(spec.runs)
        self.specs = tuple(specs)
        self.base, self.size, self.extras, self.ends = base, at, extra, ends


EMPTY = Layout((), 0, ())
_LAYOUTS: WeakValueDictionary[tuple[Any, ...], Layout] = WeakValueDictionary()


def layout_for(models: Sequence[Any], base: int, ends: tuple[int, ...]) -> Layout:
    """The shared layout of ``models`` after ``base`` numbers of the series' own.

    Found by the identity of each model's (shared) parameters and rule: the
    layout holds both, so neither identity is reused while it lives.
    """
    key = (base, ends, *((type(m), id(m.config), id(m.watch)) for m in models))
    layout = _LAYOUTS.get(key)
    if layout is None:
        layout = _LAYOUTS[key] = Layout(models, base, ends)
    return layout


def pack(owner: Any, groups: Sequence[Sequence[Any]]) -> None:
    """Give ``owner`` the monitors of ``groups`` (new models, built for it), their state included.

    ``owner`` has an array ``a``, a list ``x`` and a ``layout`` (``EMPTY`` at
    first). Its array keeps the numbers of its own it had before its first
    monitors, and is rebuilt at its exact size to hold the models' after them.
    """
    base = len(owner.a) if owner.layout is EMPTY else owner.layout.base
    models = [model for group in groups for model in group]
    ends = tuple(accumulate(len(group) for group in groups))
    layout = layout_for(models, base, ends)
    owner.a = owner.a[:base] + array("d", [0.0] * (layout.size - base))
    owner.x = [None] * layout.extras
    owner.layout = layout
    for i, model in enumerate(models):
        handle = PackedMonitor(owner, i)
        handle.put(model)
        handle.paged, handle.held_since = model.paged, model.held_since


def monitors_of(owner: Any, start: int = 0, stop: int | None = None) -> tuple[PackedMonitor, ...]:
    """Handles on the owner's monitors ``start`` to ``stop``."""
    n = len(owner.layout.specs)
    return tuple(PackedMonitor(owner, i) for i in range(start, n if stop is None else stop))


class PackedMonitor:
    """A rule's model on one series, kept in the series' array: it answers as the model would.

    Two handles on the same monitor are equal. Each method call loads the
    model, runs it and stores it back, so a handle holds nothing of its own.
    """

    __slots__ = ("i", "owner")

    def __init__(self, owner: Any, i: int) -> None:
        self.owner = owner
        self.i = i

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PackedMonitor) and other.owner is self.owner and other.i == self.i

    def __hash__(self) -> int:
        return hash((id(self.owner), self.i))

    def __repr__(self) -> str:
        return f"<{self.kind.__name__} of {self.rule_id} on {getattr(self.owner, 'key', '?')}>"

    # -- what it watches, and its alert flags -----------------------------
    @property
    def spec(self) -> Spec:
        return self.owner.layout.specs[self.i]  # type: ignore[no-any-return]

    @property
    def kind(self) -> type[Any]:
        """The kind of model (what ``type(model)`` is for a model kept as an object)."""
        return self.spec.kind

    @property
    def model(self) -> PackedMonitor:
        """The model: a monitor is its model."""
        return self

    @property
    def watch(self) -> Any:
        return self.spec.watch

    @property
    def rule(self) -> Any:
        return self.spec.watch.rule

    @property
    def rule_id(self) -> str:
        return self.spec.watch.rule_id  # type: ignore[no-any-return]

    @property
    def metric(self) -> str:
        return self.spec.watch.metric  # type: ignore[no-any-return]

    @property
    def config(self) -> Any:
        return self.spec.config

    @property
    def phase(self) -> str:
        owner = self.owner
        return PHASE_OF[int(owner.a[owner.layout.specs[self.i].end])]

    @property
    def paged(self) -> bool:
        owner = self.owner
        return owner.a[owner.layout.specs[self.i].end] >= PAGED

    @paged.setter
    def paged(self, value: bool) -> None:
        spec = self.spec
        a, end = self.owner.a, spec.end
        a[end] = a[end] % PAGED + (PAGED if value else 0.0)

    @property
    def held_since(self) -> float:
        owner = self.owner
        return owner.a[owner.layout.specs[self.i].end + 1]  # type: ignore[no-any-return]

    @held_since.setter
    def held_since(self, value: float) -> None:
        spec = self.spec
        self.owner.a[spec.end + 1] = value

    # -- running the model ------------------------------------------------
    def load(self) -> Any:
        """The model of its kind kept for running, holding this monitor's state (see :func:`load`)."""
        owner = self.owner
        return load(owner, owner.layout.specs[self.i])

    def put(self, model: Any) -> None:
        """Store ``model``'s state (a loaded cursor, or a model built apart) as this monitor's."""
        owner = self.owner
        put(owner, owner.layout.specs[self.i], model)

    def _run(self, name: str, *args: Any) -> Any:
        cursor = self.load()
        result = getattr(cursor, name)(*args)
        self.put(cursor)
        return result

    def update(self, *args: Any) -> None:
        self._run("update", *args)

    def update_many(self, values: Sequence[float], ts: float) -> None:
        self._run("update_many", values, ts)

    def close(self, ts: float) -> None:
        self._run("close", ts)

    def peek(self, ts: float) -> bool:
        return self._run("peek", ts)  # type: ignore[no-any-return]

    def advance(self, ts: float) -> None:
        self._run("advance", ts)

    def rebaseline(self, ts: float) -> None:
        self._run("rebaseline", ts)

    def shift(self) -> Any:
        return self.load().shift()

    def to_state(self) -> dict[str, Any]:
        return self.load().to_state()  # type: ignore[no-any-return]

    def restore(self, state: dict[str, Any]) -> None:
        """Take a saved model state (``to_state``'s dict); another version or a missing number is refused."""
        self.put(self.kind.from_state(state))

    def __getattr__(self, name: str) -> Any:
        """Anything else the model answers: a method is run and stored back like those above, the rest read."""
        if name.startswith("__"):
            raise AttributeError(name)
        if callable(getattr(self.kind, name, None)):  # a method, known from the class without loading
            return lambda *args: self._run(name, *args)
        return getattr(self.load(), name)
