"""Stand-ins for a spec as a proposer may see it (DESIGN 3): scope names and the instruction
API, never the capacities, paths, alignments or costs.

``hide(spec)`` is a proxy on which every hidden field, and every route to one, raises;
``hidden_reads_trapped()`` makes any read of a hidden field of any spec object in the
process raise while a proposer works (so a proposer that loaded a preset by the target's
name would be caught too).
"""

from __future__ import annotations

import dataclasses
import inspect
import weakref
from contextlib import contextmanager

from hawk.npu import DataPath, FaultCode, Fractal, HardwareSpec, MatrixShape, Scope, Unit

# What the api view is built from: names, and the instruction API of the units (operand
# scopes, dtypes, shapes, vector repeat width). Everything else of a spec is hidden.
VISIBLE = {
    HardwareSpec: {"name", "offchip", "scopes", "units", "scope", "unit", "unit_of_kind", "onchip_scopes"},
    Scope: {"name"},
    Unit: {"name", "kind", "reads", "writes", "dtypes", "shapes", "repeat_bytes"},
    MatrixShape: {"in_dtype", "acc_dtype", "m", "n", "k"},
    DataPath: set(),
    Fractal: set(),
    FaultCode: set(),
}
# Dunders that hand out an object's whole state.
_STATE = {"__dict__", "__getstate__", "__reduce__", "__reduce_ex__"}


class HiddenFieldRead(AssertionError):
    pass


def _refuse(cls: type, name: str):
    raise HiddenFieldRead(f"read the hidden {cls.__name__}.{name}")


# --- the proxy -----------------------------------------------------------------------------

_inner: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # kept off the proxy itself


class Hidden:
    """A spec object as a proposer may see it. Visible fields pass (spec objects in them
    wrapped again); methods run against the proxy, so they see only what it shows; anything
    else, and repr, copy and pickle, raises."""

    __slots__ = ("__weakref__",)

    def __getattr__(self, name):
        inner = _inner[self]
        cls = type(inner)
        if name not in VISIBLE[cls]:
            _refuse(cls, name)
        attr = inspect.getattr_static(cls, name, None)
        if isinstance(attr, property):
            return _wrap(attr.fget(self))
        if inspect.isfunction(attr):
            return attr.__get__(self)
        return _wrap(getattr(inner, name))

    def __repr__(self):
        _refuse(type(_inner[self]), "__repr__")

    def __reduce_ex__(self, protocol):
        _refuse(type(_inner[self]), "__reduce_ex__")


def hide(obj):
    proxy = Hidden()
    _inner[proxy] = obj
    return proxy


def _wrap(value):
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return hide(value)
    if isinstance(value, tuple):
        return tuple(_wrap(v) for v in value)
    return value


# --- the trap ------------------------------------------------------------------------------


@contextmanager
def hidden_reads_trapped():
    """Within the block, reading a hidden field (or the whole state) of any spec object
    raises HiddenFieldRead and is listed in the yielded list, in case a caller swallows it."""
    reads: list[str] = []

    def guard(cls):
        def __getattribute__(obj, name):
            hidden = name in _STATE or (not name.startswith("__") and name not in VISIBLE[cls])
            if hidden:
                reads.append(f"{cls.__name__}.{name}")
                _refuse(cls, name)
            return object.__getattribute__(obj, name)
        return __getattribute__

    for cls in VISIBLE:
        cls.__getattribute__ = guard(cls)
    try:
        yield reads
    finally:
        for cls in VISIBLE:
            del cls.__getattribute__


def hidden_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.name not in VISIBLE[cls]]
