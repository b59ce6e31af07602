"""Tensor intrinsics of a spec's units, registered with TVM for ``sch.tensorize``.

Each matrix shape of a spec gives ``mma`` (C += A x B over one fractal tile) and ``fill``
(C = 0, the accumulator clear); the vector unit gives cross-lane ``reduce_sum`` and
``reduce_max`` over one repeat of lanes (C op= A[0:lanes]) for its float dtypes. Their
implementation is the reference loop nest itself, so a tensorized kernel builds and runs on
the host; the inner block carries ``hawk.intrin`` so the runtime model knows the instruction.
"""

from __future__ import annotations

from dataclasses import dataclass

from tvm import s_tir
from tvm.script import tirx as T

from .spec import HardwareSpec, MatrixShape, Unit

INTRIN_ATTR = "hawk.intrin"

_SHORT = {"float16": "f16", "bfloat16": "bf16", "float32": "f32", "int8": "s8", "int32": "s32"}
REDUCTIONS = ("reduce_sum", "reduce_max")


@dataclass(frozen=True)
class Intrinsic:
    """A registered instruction: its TVM name, the unit that runs it and what it does."""

    name: str
    unit: str
    op: str  # "mma", "fill", "reduce_sum" or "reduce_max"
    shape: MatrixShape  # for reductions: m = n = 1 and k = lanes
    a_scope: str
    b_scope: str
    c_scope: str

    @property
    def operand_scopes(self) -> tuple[str, ...]:
        """Scopes of the tensorized block's operands, in match_buffer order."""
        if self.op == "fill":
            return (self.c_scope,)
        if self.op == "mma":
            return (self.a_scope, self.b_scope, self.c_scope)
        return (self.a_scope, self.c_scope)

    @property
    def signature(self) -> str:
        s = self.shape
        if self.op == "fill":
            return f"{self.name}(C: {s.acc_dtype}[{s.m}, {s.n}] @ {self.c_scope}): C = 0"
        if self.op in REDUCTIONS:
            what = "C += sum(A)" if self.op == "reduce_sum" else "C = max(C, max(A))"
            return f"{self.name}(A: {s.in_dtype}[{s.k}] @ {self.a_scope}, C: {s.acc_dtype}[1] @ {self.c_scope}): {what}"
        return (
            f"{self.name}(A: {s.in_dtype}[{s.m}, {s.k}] @ {self.a_scope}, "
            f"B: {s.in_dtype}[{s.k}, {s.n}] @ {self.b_scope}, "
            f"C: {s.acc_dtype}[{s.m}, {s.n}] @ {self.c_scope}): C += A x B"
        )


def intrinsic_name(spec: HardwareSpec, unit: Unit, op: str, shape: MatrixShape) -> str:
    if op == "fill":
        return f"{spec.name}.{unit.name}.fill_{_SHORT.get(shape.acc_dtype, shape.acc_dtype)}"
    return (
        f"{spec.name}.{unit.name}.mma_"
        f"{_SHORT.get(shape.in_dtype, shape.in_dtype)}_{_SHORT.get(shape.acc_dtype, shape.acc_dtype)}"
    )


def intrinsics(spec: HardwareSpec) -> tuple[Intrinsic, ...]:
    """The tensorizable instruction set of the spec's units (not yet registered)."""
    out = []
    for unit in spec.units:
        if unit.kind == "vector":
            out += _vector_reductions(spec, unit)
        if unit.kind != "matrix":
            continue
        a_scope, b_scope = unit.reads[0], unit.reads[1]
        c_scope = unit.writes[0]
        fills = set()
        for shape in unit.shapes:
            out.append(
                Intrinsic(intrinsic_name(spec, unit, "mma", shape), unit.name, "mma", shape,
                          a_scope, b_scope, c_scope)
            )
            fill = intrinsic_name(spec, unit, "fill", shape)
            if fill not in fills:
                fills.add(fill)
                out.append(Intrinsic(fill, unit.name, "fill", shape, a_scope, b_scope, c_scope))
    return tuple(out)


def _vector_reductions(spec: HardwareSpec, unit: Unit) -> list[Intrinsic]:
    import tvm

    found = []
    for dtype in ("float16", "float32"):
        if dtype not in unit.dtypes:
            continue
        lanes = unit.repeat_bytes // (tvm.runtime.DataType(dtype).bits // 8)
        if lanes < 2:
            continue
        shape = MatrixShape(dtype, dtype, 1, 1, lanes)
        for op in REDUCTIONS:
            name = f"{spec.name}.{unit.name}.{op}_{_SHORT[dtype]}"
            found.append(Intrinsic(name, unit.name, op, shape, unit.reads[0], "", unit.writes[0]))
    return found


_registered: dict[str, str] = {}  # intrinsic name -> fingerprint of the spec it came from


def register_intrinsics(spec: HardwareSpec) -> tuple[Intrinsic, ...]:
    """Register the spec's intrinsics with TVM (idempotent; a changed spec re-registers)."""
    found = intrinsics(spec)
    fp = spec.fingerprint()
    for intrin in found:
        if _registered.get(intrin.name) == fp:
            continue
        desc, impl = _funcs(intrin)
        s_tir.TensorIntrin.register(intrin.name, desc, impl, override=True)
        _registered[intrin.name] = fp
    return found


def find_intrinsic(spec: HardwareSpec, name: str) -> Intrinsic | None:
    return next((i for i in intrinsics(spec) if i.name == name), None)


def implementation(intrin: Intrinsic):
    """The implementation ``sch.tensorize`` inlines for ``intrin`` (its shape may be scaled to
    a tile of several instructions): what a tensorized block's body must be."""
    return _funcs(intrin)[1]


def _funcs(intrin: Intrinsic):
    make = {"mma": _mma_funcs, "fill": _fill_funcs}.get(intrin.op, _reduce_funcs)
    return make(intrin)


def _mma_funcs(intrin: Intrinsic):
    s = intrin.shape
    m, n, k, in_t, acc_t = s.m, s.n, s.k, s.in_dtype, s.acc_dtype
    sa, sb, sc, name = intrin.a_scope, intrin.b_scope, intrin.c_scope, intrin.name

    @T.prim_func(s_tir=True)
    def desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (m, k), in_t, offset_factor=1, scope=sa)
        B = T.match_buffer(b, (k, n), in_t, offset_factor=1, scope=sb)
        C = T.match_buffer(c, (m, n), acc_t, offset_factor=1, scope=sc)
        with T.sblock("root"):
            T.reads(C[0:m, 0:n], A[0:m, 0:k], B[0:k, 0:n])
            T.writes(C[0:m, 0:n])
            for i, j, r in T.grid(m, n, k):
                with T.sblock(""):
                    vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                    C[vi, vj] = C[vi, vj] + T.Cast(acc_t, A[vi, vr]) * T.Cast(acc_t, B[vr, vj])

    @T.prim_func(s_tir=True)
    def impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (m, k), in_t, offset_factor=1, scope=sa)
        B = T.match_buffer(b, (k, n), in_t, offset_factor=1, scope=sb)
        C = T.match_buffer(c, (m, n), acc_t, offset_factor=1, scope=sc)
        with T.sblock("root"):
            T.reads(C[0:m, 0:n], A[0:m, 0:k], B[0:k, 0:n])
            T.writes(C[0:m, 0:n])
            for i, r in T.grid(m, k):
                for j in T.vectorized(n):  # host speed only; the NPU sees one instruction
                    with T.sblock("mma"):
                        T.sblock_attr({INTRIN_ATTR: name})
                        vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                        C[vi, vj] = C[vi, vj] + T.Cast(acc_t, A[vi, vr]) * T.Cast(acc_t, B[vr, vj])

    return desc, impl


def _fill_funcs(intrin: Intrinsic):
    return _fill_func(intrin, tagged=False), _fill_func(intrin, tagged=True)


def _fill_func(intrin: Intrinsic, *, tagged: bool):
    """The fill's description (``tagged=False``) or its host implementation, which tags the
    block with the instruction name."""
    s = intrin.shape
    m, n, acc_t, sc, name = s.m, s.n, s.acc_dtype, intrin.c_scope, intrin.name
    block = "fill" if tagged else ""

    @T.prim_func(s_tir=True)
    def func(c: T.handle) -> None:
        C = T.match_buffer(c, (m, n), acc_t, offset_factor=1, scope=sc)
        with T.sblock("root"):
            T.reads()
            T.writes(C[0:m, 0:n])
            for i, j in T.grid(m, n):
                with T.sblock(block):
                    if tagged:
                        T.sblock_attr({INTRIN_ATTR: name})
                    vi, vj = T.axis.remap("SS", [i, j])
                    C[vi, vj] = T.Cast(acc_t, 0)

    return func


def _reduce_funcs(intrin: Intrinsic):
    return _reduce_func(intrin, tagged=False), _reduce_func(intrin, tagged=True)


def _reduce_func(intrin: Intrinsic, *, tagged: bool):
    """A cross-lane reduction's description or (``tagged``) its host implementation."""
    lanes, dtype = intrin.shape.k, intrin.shape.in_dtype
    sa, sc, name = intrin.a_scope, intrin.c_scope, intrin.name
    is_sum = intrin.op == "reduce_sum"
    block = "reduce" if tagged else ""

    @T.prim_func(s_tir=True)
    def func(a: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (lanes,), dtype, offset_factor=1, scope=sa)
        C = T.match_buffer(c, (1,), dtype, offset_factor=1, scope=sc)
        with T.sblock("root"):
            T.reads(C[0:1], A[0:lanes])
            T.writes(C[0:1])
            for r in range(lanes):
                with T.sblock(block):
                    if tagged:
                        T.sblock_attr({INTRIN_ATTR: name})
                    vr = T.axis.remap("R", [r])
                    if is_sum:
                        C[0] = C[0] + A[vr]
                    else:
                        C[0] = T.max(C[0], A[vr])

    return func
