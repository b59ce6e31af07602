"""HardwareSpec: an NPU described as data (scopes, data paths, units, fault manual).

Specs are frozen dataclasses with a stable content hash. They load from and save to JSON;
every validation error names the offending field (``paths[3].src: ...``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .manual import CODES, STANDARD_MANUAL, FaultCode

UNIT_KINDS = ("matrix", "vector", "scalar")
DTYPES = (
    "float16", "bfloat16", "float32", "float64",
    "int8", "uint8", "int16", "int32", "int64", "bool",
)


class SpecError(ValueError):
    """A hardware spec that cannot be used; the message names the bad field."""


@dataclass(frozen=True)
class Fractal:
    """The tile granularity of a scope for one dtype: buffers hold whole rows x cols tiles."""

    dtype: str
    rows: int
    cols: int


@dataclass(frozen=True)
class Scope:
    """A memory scope. ``capacity`` is None only for the off-chip scope."""

    name: str
    capacity: int | None
    alignment: int = 32
    fractal: tuple[Fractal, ...] = ()

    def fractal_for(self, dtype: str) -> Fractal | None:
        return next((f for f in self.fractal if f.dtype == dtype), None)


@dataclass(frozen=True)
class DataPath:
    """A legal DMA route between two scopes, executed by the engine of ``pipe``.

    ``bandwidth`` is bytes per cycle at full efficiency; a burst shorter than ``burst``
    bytes is charged as a full burst. ``convert`` says the engine can cast on the way.
    """

    src: str
    dst: str
    pipe: str
    bandwidth: float
    latency: int
    burst: int = 32
    convert: bool = False


@dataclass(frozen=True)
class MatrixShape:
    """One matrix-unit instruction form: C[m, n] (acc_dtype) += A[m, k] * B[k, n] (in_dtype)."""

    in_dtype: str
    acc_dtype: str
    m: int
    n: int
    k: int


@dataclass(frozen=True)
class Unit:
    """A compute unit and the scopes it may read and write.

    ``throughput`` is per cycle: matrix instructions (matrix), bytes (vector) or
    elements (scalar). ``issue_overhead`` is cycles per instruction issue;
    ``transcendental_factor`` slows exp/log/sqrt-class ops. ``repeat_bytes`` is the vector
    ISA's width, the bytes one vector repeat covers (part of the instruction API, unlike
    the throughput, which is a cost).
    """

    name: str
    kind: str
    pipe: str
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    dtypes: tuple[str, ...]
    throughput: float
    issue_overhead: int = 0
    transcendental_factor: float = 1.0
    shapes: tuple[MatrixShape, ...] = ()
    repeat_bytes: int = 0


@dataclass(frozen=True)
class HardwareSpec:
    """An NPU: memory scopes, legal data paths, compute units, clock and fault manual."""

    name: str
    description: str
    clock_ghz: float
    scopes: tuple[Scope, ...]
    paths: tuple[DataPath, ...]
    units: tuple[Unit, ...]
    faults: tuple[FaultCode, ...] = STANDARD_MANUAL
    offchip: str = "global"

    def __post_init__(self) -> None:
        _validate(self)

    # --- lookups -------------------------------------------------------------------
    def scope(self, name: str) -> Scope | None:
        return next((s for s in self.scopes if s.name == name), None)

    def path(self, src: str, dst: str) -> DataPath | None:
        return next((p for p in self.paths if p.src == src and p.dst == dst), None)

    def unit(self, name: str) -> Unit | None:
        return next((u for u in self.units if u.name == name), None)

    def unit_of_kind(self, kind: str) -> Unit | None:
        return next((u for u in self.units if u.kind == kind), None)

    def fault(self, code: str) -> FaultCode:
        found = next((f for f in self.faults if f.code == code), None)
        if found is None:
            raise KeyError(f"fault code {code!r} is not in the manual of {self.name}")
        return found

    @property
    def onchip_scopes(self) -> tuple[Scope, ...]:
        return tuple(s for s in self.scopes if s.name != self.offchip)

    # --- serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def fingerprint(self) -> str:
        """A hash of the content that is stable across processes and machines."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def from_dict(cls, data: Any) -> HardwareSpec:
        return _from_plain(cls, data, "spec")

    @classmethod
    def from_json(cls, text: str, source: str = "<string>") -> HardwareSpec:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpecError(f"{source}: not valid JSON: {err}") from None
        try:
            return cls.from_dict(data)
        except SpecError as err:
            raise SpecError(f"{source}: {err}") from None

    @classmethod
    def load(cls, path: str | Path) -> HardwareSpec:
        path = Path(path)
        try:
            text = path.read_text()
        except OSError as err:
            raise SpecError(f"{path}: cannot read spec file: {err.strerror}") from None
        return cls.from_json(text, str(path))


# --- plain <-> dataclass ------------------------------------------------------------


def _to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    return value


def _from_plain(cls: type, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise SpecError(f"{where}: expected an object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise SpecError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(fields)})")
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise SpecError(f"{where}.{name}: missing required field")
            continue
        kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except SpecError:
        raise
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


def _convert(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise SpecError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_convert(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(hint):
        return _from_plain(hint, value, where)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"{where}: expected an integer, got {value!r}")
        return value
    if not isinstance(value, hint):
        raise SpecError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


# --- validation ---------------------------------------------------------------------


def _validate(spec: HardwareSpec) -> None:
    def fail(where: str, msg: str) -> None:
        raise SpecError(f"{where}: {msg}")

    if not spec.name or not all(c.isalnum() or c in "-_" for c in spec.name):
        fail("name", f"must be non-empty letters, digits, '-' or '_', got {spec.name!r}")
    if spec.clock_ghz <= 0:
        fail("clock_ghz", f"must be positive, got {spec.clock_ghz}")
    names = [s.name for s in spec.scopes]
    for i, scope in enumerate(spec.scopes):
        where = f"scopes[{i}]"
        if names.index(scope.name) != i:
            fail(f"{where}.name", f"duplicate scope {scope.name!r}")
        if scope.name != spec.offchip and not scope.name.startswith("global."):
            # TVM only accepts custom scopes behind a known rank.
            fail(f"{where}.name", f"on-chip scope must be spelled 'global.<tag>', got {scope.name!r}")
        if scope.name == spec.offchip:
            if scope.capacity is not None:
                fail(f"{where}.capacity", "the off-chip scope has no capacity (use null)")
        elif scope.capacity is None or scope.capacity <= 0:
            fail(f"{where}.capacity", f"must be a positive number of bytes, got {scope.capacity}")
        if scope.alignment <= 0 or scope.alignment & (scope.alignment - 1):
            fail(f"{where}.alignment", f"must be a positive power of two, got {scope.alignment}")
        for j, fr in enumerate(scope.fractal):
            if fr.dtype not in DTYPES:
                fail(f"{where}.fractal[{j}].dtype", f"unknown dtype {fr.dtype!r}")
            if fr.rows <= 0 or fr.cols <= 0:
                fail(f"{where}.fractal[{j}]", f"rows and cols must be positive, got {fr.rows}x{fr.cols}")
    if spec.offchip not in names:
        fail("offchip", f"off-chip scope {spec.offchip!r} is not declared in scopes")
    pipes = set()
    for i, p in enumerate(spec.paths):
        where = f"paths[{i}]"
        for end in ("src", "dst"):
            if getattr(p, end) not in names:
                fail(f"{where}.{end}", f"unknown scope {getattr(p, end)!r}")
        if p.src == p.dst:
            fail(where, f"a path must join two different scopes, got {p.src} -> {p.dst}")
        if spec.path(p.src, p.dst) is not p:
            fail(where, f"duplicate path {p.src} -> {p.dst}")
        if p.bandwidth <= 0:
            fail(f"{where}.bandwidth", f"must be positive, got {p.bandwidth}")
        if p.latency < 0:
            fail(f"{where}.latency", f"must not be negative, got {p.latency}")
        if p.burst <= 0:
            fail(f"{where}.burst", f"must be positive, got {p.burst}")
        pipes.add(p.pipe)
    unit_names = [u.name for u in spec.units]
    for i, u in enumerate(spec.units):
        where = f"units[{i}]"
        if unit_names.index(u.name) != i:
            fail(f"{where}.name", f"duplicate unit {u.name!r}")
        if u.kind not in UNIT_KINDS:
            fail(f"{where}.kind", f"must be one of {', '.join(UNIT_KINDS)}, got {u.kind!r}")
        if u.pipe in pipes:
            fail(f"{where}.pipe", f"pipe {u.pipe!r} is already a DMA pipe")
        for access in ("reads", "writes"):
            for j, s in enumerate(getattr(u, access)):
                if s not in names:
                    fail(f"{where}.{access}[{j}]", f"unit reads or writes undeclared scope {s!r}")
        for j, d in enumerate(u.dtypes):
            if d not in DTYPES:
                fail(f"{where}.dtypes[{j}]", f"unknown dtype {d!r}")
        if u.throughput <= 0:
            fail(f"{where}.throughput", f"must be positive, got {u.throughput}")
        if u.transcendental_factor < 1:
            fail(f"{where}.transcendental_factor", f"must be at least 1, got {u.transcendental_factor}")
        if u.kind == "vector" and u.repeat_bytes <= 0:
            fail(f"{where}.repeat_bytes", f"a vector unit needs its repeat width in bytes, got {u.repeat_bytes}")
        if u.kind == "matrix" and not u.shapes:
            fail(f"{where}.shapes", "a matrix unit needs at least one instruction shape")
        for j, sh in enumerate(u.shapes):
            if min(sh.m, sh.n, sh.k) <= 0:
                fail(f"{where}.shapes[{j}]", f"m, n, k must be positive, got {sh.m}x{sh.n}x{sh.k}")
            for d in ("in_dtype", "acc_dtype"):
                if getattr(sh, d) not in DTYPES:
                    fail(f"{where}.shapes[{j}].{d}", f"unknown dtype {getattr(sh, d)!r}")
        if u.kind == "matrix" and (len(u.reads) < 2 or len(u.writes) != 1):
            fail(where, "a matrix unit reads two operand scopes and writes one accumulator scope")
    for kind in ("vector", "scalar"):
        if sum(u.kind == kind for u in spec.units) > 1:
            fail("units", f"at most one {kind} unit is supported")
    codes = [f.code for f in spec.faults]
    for i, f in enumerate(spec.faults):
        if codes.index(f.code) != i:
            fail(f"faults[{i}].code", f"duplicate fault code {f.code!r}")
    missing = [c for c in CODES if c not in codes]
    if missing:
        fail("faults", f"the fault manual lacks code {missing[0]!r}")


def replace(spec: HardwareSpec, **changes: Any) -> HardwareSpec:
    """A copy of ``spec`` with fields changed (validated again)."""
    return dataclasses.replace(spec, **changes)


def with_capacity(spec: HardwareSpec, scope: str, capacity: int) -> HardwareSpec:
    """A copy of ``spec`` where ``scope`` holds ``capacity`` bytes."""
    if spec.scope(scope) is None:
        raise SpecError(f"scopes: unknown scope {scope!r}")
    scopes = tuple(
        dataclasses.replace(s, capacity=capacity) if s.name == scope else s for s in spec.scopes
    )
    return dataclasses.replace(spec, scopes=scopes)

