"""Namespace knobs with an internal and an external view (the seed's first point).

A knob such as ``ipc.shm_mni`` has two writers: the container itself, through
the normal kernel interface (its *internal* view), and its parent, through a
containerfs file (the *external* view, a limit; ``max`` means none). The kernel
can hold only one value, so containerfs makes it enforce the *effective*
value: the tighter of the two. Everything here is pure: parsing, formatting and
combining values. The daemon reads and writes the kernel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from .errors import InvalidInput

# A value is a tuple of ints: one for most knobs, four for `sem`, two for a range.
Value = tuple[int, ...]


@dataclass(frozen=True)
class ValueType:
    """How a knob's value is written, read and combined."""

    arity: int = 1
    lo: int = 0
    hi: int = 2**64 - 1
    is_range: bool = False  # (low, high): the tighter of two ranges is their intersection
    # Per field upper bounds that are tighter than ``hi`` (``sem``'s SEMMNI): the
    # kernel checks some fields only after it has stored them all, so a value it
    # refuses would leave the other fields changed.
    his: tuple[int, ...] = ()

    def parse(self, text: str, what: str) -> Value:
        words = text.split()
        if len(words) != self.arity or not all(w.isdigit() for w in words):
            shape = " ".join(["N"] * self.arity)
            raise InvalidInput(f"{what}: expected {shape!r}, got {text.strip()[:40]!r}")
        value = tuple(int(w) for w in words)
        for i, v in enumerate(value):
            hi = self.his[i] if i < len(self.his) else self.hi
            if not self.lo <= v <= hi:
                shown = str(v) if v < 10**40 else f"a {len(str(v))}-digit number"
                raise InvalidInput(f"{what}: {shown} is outside {self.lo}..{hi}")
        if self.is_range and value[0] > value[1]:
            raise InvalidInput(f"{what}: the low end {value[0]} is above the high end {value[1]}")
        return value

    def read(self, text: str) -> Value:
        """A value as the kernel shows it (trusted: no range check)."""
        words = text.split()
        if len(words) != self.arity:
            raise ValueError(f"unexpected kernel value {text.strip()[:40]!r}")
        return tuple(int(w) for w in words)

    def format(self, value: Value) -> str:
        return " ".join(str(v) for v in value)

    def tighter(self, a: Value, b: Value) -> Value:
        """The value that satisfies both ``a`` (the container's) and ``b`` (the parent's)."""
        if self.is_range:
            lo, hi = max(a[0], b[0]), min(a[1], b[1])
            return (lo, hi) if lo <= hi else b  # disjoint: the parent's limit (b) wins
        return tuple(min(x, y) for x, y in zip(a, b, strict=True))


@dataclass(frozen=True)
class Knob:
    """A namespace knob with both views, backed by one sysctl of that namespace."""

    kind: str  # the namespace kind, e.g. "ipc"
    name: str  # e.g. "shm_mni": files ipc.shm_mni, ipc.shm_mni.internal, ipc.shm_mni.effective
    sysctl: str  # e.g. "kernel.shmmni", as seen inside the namespace
    type: ValueType = field(default_factory=ValueType)

    @property
    def file(self) -> str:
        return f"{self.kind}.{self.name}"

    @property
    def files(self) -> tuple[str, str, str]:
        return (self.file, self.file + ".internal", self.file + ".effective")


@dataclass
class KnobState:
    """What the engine remembers of one knob of one container."""

    internal: Value
    external: Value | None = None  # None: `max`, no limit from the parent

    def effective(self, t: ValueType) -> Value:
        return self.internal if self.external is None else t.tighter(self.internal, self.external)


def parse_external(knob: Knob, text: str) -> Value | None:
    if text.strip() == "max":
        return None
    return knob.type.parse(text, knob.file)


def format_external(knob: Knob, value: Value | None) -> str:
    return "max" if value is None else knob.type.format(value)


def knob_table(knobs: Sequence[Knob]) -> dict[str, tuple[Knob, str]]:
    """File name -> (knob, view) where view is "external", "internal" or "effective"."""
    out: dict[str, tuple[Knob, str]] = {}
    for k in knobs:
        ext, internal, eff = k.files
        out[ext] = (k, "external")
        out[internal] = (k, "internal")
        out[eff] = (k, "effective")
    return out
