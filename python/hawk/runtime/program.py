"""The NPU program of a kernel: its TensorIR read as a tree of loops, scopes and instructions.

A scheduled TensorIR kernel is first brought to *analysis form* (init blocks lowered,
allocations moved to their lowest common ancestor and compacted to the region actually
used) so that every buffer's shape is its on-chip footprint and every index is an
expression of the enclosing loop variables. The tree read from it is what verify
checks and what the timing model will execute. Reading is pure: no spec is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ..npu.intrinsics import INTRIN_ATTR

Load = tvm.ir.expr.TensorLoad  # tirx.BufferLoad is only a constructor in TVM 0.27

DOUBLE_BUFFER_ATTR = "double_buffer_scope"


class ProgramError(ValueError):
    """The kernel cannot be read as an NPU program (malformed or unsupported IR)."""


@dataclass(frozen=True)
class Access:
    """One buffer access of an instruction; ``indices`` are in the enclosing loop vars."""

    buffer: tvm.ir.Var
    indices: tuple[tvm.ir.PrimExpr, ...]
    write: bool

    @property
    def scope(self) -> str:
        return self.buffer.scope()

    @property
    def dtype(self) -> str:
        return str(self.buffer.dtype)

    @property
    def name(self) -> str:
        return self.buffer.name


@dataclass(frozen=True)
class Operand:
    """A tile operand of an intrinsic: ``buffer[begin + 0:extent, ...]``."""

    buffer: tvm.ir.Var
    begin: tuple[tvm.ir.PrimExpr, ...]
    extent: tuple[int, ...]


@dataclass
class Instr:
    """A leaf block: a copy (DMA candidate), a compute, or a tensorized intrinsic."""

    block: str
    kind: str  # "copy" | "compute" | "intrin"
    loops: tuple[Loop, ...]
    reads: tuple[Access, ...] = ()
    writes: tuple[Access, ...] = ()
    intrinsic: str | None = None
    operands: tuple[Operand, ...] = ()
    cast: bool = False  # a copy that converts the dtype on the way
    ops: int = 0  # arithmetic operations per element (a pure move counts one)
    transcendental: int = 0  # of which exp/log/sqrt/div-class
    mac: bool = False  # the body is C += A * B
    dtypes: frozenset[str] = frozenset()
    calls: frozenset[str] = frozenset()
    predicate: tvm.ir.PrimExpr | None = None
    annotations: dict = field(default_factory=dict)

    @property
    def vectorized(self) -> bool:
        return bool(self.loops) and self.loops[-1].kind == tirx.ForKind.VECTORIZED

    def buffers(self) -> list[tvm.ir.Var]:
        if self.kind == "intrin":
            return [op.buffer for op in self.operands]
        return [a.buffer for a in self.reads + self.writes]


@dataclass
class Loop:
    var: tirx.Var
    extent: int
    kind: tirx.ForKind
    annotations: dict
    body: list = field(default_factory=list)


@dataclass(frozen=True)
class Alloc:
    buffer: tvm.ir.Var
    bytes: int
    double: bool  # double-buffered: two copies live at once

    @property
    def scope(self) -> str:
        return self.buffer.scope()


@dataclass
class Region:
    """A block that owns allocations; they are live while its body runs."""

    block: str
    allocs: tuple[Alloc, ...]
    body: list = field(default_factory=list)


@dataclass
class Program:
    func: tirx.PrimFunc
    body: list

    def instrs(self) -> list[Instr]:
        out: list[Instr] = []
        _collect(self.body, out)
        return out

    def regions(self) -> list[Region]:
        out: list[Region] = []

        def visit(nodes):
            for n in nodes:
                if isinstance(n, Region):
                    out.append(n)
                if isinstance(n, (Region, Loop)):
                    visit(n.body)

        visit(self.body)
        return out


def _collect(nodes, out):
    for n in nodes:
        if isinstance(n, Instr):
            out.append(n)
        else:
            _collect(n.body, out)


ANALYSIS_PASSES = (
    s_tir.transform.LowerInitBlock,
    s_tir.transform.PlanAndUpdateBufferAllocationLocation,
    s_tir.transform.ConvertBlocksToOpaque,
    s_tir.transform.CompactBufferAllocation,
)


def as_module(kernel) -> tvm.IRModule:
    if isinstance(kernel, tirx.PrimFunc):
        return tvm.IRModule({"main": kernel})
    if isinstance(kernel, tvm.IRModule):
        return kernel
    raise ProgramError(f"a kernel is a PrimFunc or an IRModule, got {type(kernel).__name__}")


def main_func(mod: tvm.IRModule) -> tirx.PrimFunc:
    funcs = [f for _, f in mod.functions.items() if isinstance(f, tirx.PrimFunc)]
    if len(funcs) != 1:
        raise ProgramError(f"a kernel module holds exactly one PrimFunc, found {len(funcs)}")
    return funcs[0]


def analysis_form(kernel) -> tirx.PrimFunc:
    mod = as_module(kernel)
    main_func(mod)
    try:
        if not s_tir.analysis.verify_well_formed(mod, assert_mode=False):
            raise ProgramError("the IR is not well formed")
        mod = tvm.transform.Sequential([p() for p in ANALYSIS_PASSES])(mod)
    except Exception as err:  # noqa: BLE001 - TVM raises builtin kinds; any failure means unreadable IR
        raise ProgramError(_first_line(err)) from None
    return main_func(mod)


def read_program(kernel) -> Program:
    """Read a scheduled kernel as an NPU program; raises ProgramError if it cannot."""
    func = analysis_form(kernel)
    double = _double_buffered(func)
    body = _Reader(double).stmt(func.body, ())
    return Program(func, body)


def _first_line(err: Exception) -> str:
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def _double_buffered(func: tirx.PrimFunc) -> set:
    found = set()

    def on_block(block):
        if DOUBLE_BUFFER_ATTR in block.annotations:
            for region in block.writes:
                found.add(region.source)

    tvm_ffi.structural_walk(func.body, [(s_tir.SBlock, on_block)])
    return found


def buffer_bytes(buf: tvm.ir.Var) -> int:
    n = 1
    for dim in buf.shape:
        if not isinstance(dim, tirx.IntImm):
            raise ProgramError(f"buffer {buf.name} has a symbolic shape {list(buf.shape)}")
        n *= int(dim)
    return n * tvm.runtime.DataType(buf.dtype).bits // 8


class _Reader:
    def __init__(self, double: set):
        self.double = double

    def stmt(self, s, loops: tuple[Loop, ...]) -> list:
        if isinstance(s, tirx.SeqStmt):
            return [n for child in s.seq for n in self.stmt(child, loops)]
        if isinstance(s, tirx.For):
            if not isinstance(s.extent, tirx.IntImm) or not isinstance(s.min, tirx.IntImm):
                raise ProgramError(f"loop {s.loop_var} has a non-constant range")
            if int(s.min) != 0:
                raise ProgramError(f"loop {s.loop_var} does not start at 0")
            loop = Loop(s.loop_var, int(s.extent), s.kind, dict(s.annotations))
            loop.body = self.stmt(s.body, loops + (loop,))
            return [loop]
        if isinstance(s, s_tir.SBlockRealize):
            return self.block(s, loops)
        if isinstance(s, (tirx.LetStmt, tirx.AttrStmt)):
            return self.stmt(s.body, loops)
        if isinstance(s, tirx.Evaluate):
            return []
        raise ProgramError(f"unsupported statement {type(s).__name__} outside a block")

    def block(self, realize, loops) -> list:
        block = realize.block
        allocs = tuple(
            Alloc(b, buffer_bytes(b), b in self.double) for b in block.alloc_buffers
        )
        intrin = _intrinsic_of(block)
        if intrin is not None:
            body = [self.intrin(block, intrin, realize, loops)]
        elif _has_child_block(block.body):
            body = self.stmt(block.body, loops)
        else:
            body = [self.leaf(block, realize, loops)]
        return [Region(block.name_hint, allocs, body)] if allocs else body

    def intrin(self, block, name, realize, loops) -> Instr:
        operands = []
        for mb in block.match_buffers:
            src = mb.source
            begin, extent = [], []
            for r in src.region:
                if not isinstance(r.extent, tirx.IntImm):
                    raise ProgramError(f"intrinsic operand {src.source.name} has a symbolic tile")
                begin.append(r.min)
                extent.append(int(r.extent))
            operands.append(Operand(src.source, tuple(begin), tuple(extent)))
        return Instr(block.name_hint, "intrin", loops, intrinsic=name, operands=tuple(operands),
                     predicate=_predicate(realize), annotations=dict(block.annotations))

    def leaf(self, block, realize, loops) -> Instr:
        loads, stores, dtypes, calls = [], [], set(), set()

        def on_load(e):
            loads.append(Access(e.source, tuple(e.indices), False))

        def on_store(s):
            stores.append(Access(s.buffer, tuple(s.indices), True))
            dtypes.add(expr_dtype(s.value))

        def on_cast(e):
            dtypes.add(expr_dtype(e))

        def on_call(e):
            op = e.op
            calls.add(op.name if isinstance(op, tvm.ir.Op) else str(op))
            dtypes.add(expr_dtype(e))

        def on_bad(s):
            raise ProgramError(f"block {block.name_hint}: unsupported {type(s).__name__} in a block body")

        tvm_ffi.structural_walk(
            block.body,
            [(Load, on_load), (tirx.BufferStore, on_store), (tirx.Cast, on_cast),
             (tvm.ir.Call, on_call), ((tirx.While, tirx.AllocBuffer), on_bad)],
        )
        if not stores:
            raise ProgramError(f"block {block.name_hint} writes nothing")
        for a in loads + stores:
            dtypes.add(a.dtype)
        kind, cast = "compute", False
        store = _single_store(block.body)
        if store is not None:
            value = store.value
            if isinstance(value, tirx.Cast) and isinstance(value.value, Load):
                value, cast = value.value, True
            if isinstance(value, Load) and not value.source.same_as(store.buffer):
                kind = "copy"
        ops, transcendental, mac = _count_ops(block.body)
        return Instr(block.name_hint, kind, loops, reads=tuple(loads), writes=tuple(stores),
                     cast=cast, ops=ops, transcendental=transcendental, mac=mac,
                     dtypes=frozenset(d for d in dtypes if d != "handle"),
                     calls=frozenset(calls), predicate=_predicate(realize),
                     annotations=dict(block.annotations))


def expr_dtype(e) -> str:
    return str(e.ty.dtype)


_PLAIN_OPS = tuple(
    getattr(tirx, name) for name in (
        "Add", "Sub", "Mul", "Div", "FloorDiv", "FloorMod", "Mod", "Min", "Max", "Select",
        "EQ", "NE", "LT", "LE", "GT", "GE", "And", "Or", "Not",
    )
)
TRANSCENDENTAL = frozenset(f"tirx.{op}" for op in (
    "exp", "exp2", "exp10", "log", "log2", "log10", "log1p", "sqrt", "rsqrt", "tanh", "sigmoid",
    "erf", "pow", "sin", "cos", "atan",
))


def _count_ops(body) -> tuple[int, int, bool]:
    """(operations, transcendental operations, is C += A * B) of a leaf block's stores."""
    counts = {"ops": 0, "trans": 0}
    stores = []

    def on_plain(_):
        counts["ops"] += 1

    def on_cast(e):
        if expr_dtype(e) != expr_dtype(e.value):
            counts["ops"] += 1

    def on_call(e):
        name = e.op.name if isinstance(e.op, tvm.ir.Op) else str(e.op)
        counts["trans" if name in TRANSCENDENTAL else "ops"] += 1

    def on_store(s):
        stores.append(s)
        # index arithmetic is address generation, not work: do not descend into loads
        tvm_ffi.structural_walk(s.value, [(Load, lambda _: tvm_ffi.WalkResult.SKIP), (_PLAIN_OPS, on_plain),
                                          (tirx.Cast, on_cast), (tvm.ir.Call, on_call)], order="pre")

    tvm_ffi.structural_walk(body, [(tirx.BufferStore, on_store)])
    if isinstance(body, tirx.SeqStmt):  # lowered init + update: the update is the work
        counts = {"ops": 0, "trans": 0}
        on_store(stores[-1])
    mac = False
    if stores:
        v = stores[-1].value
        mac = (isinstance(v, tirx.Add) and isinstance(v.a, Load) and v.a.source.same_as(stores[-1].buffer)
               and isinstance(v.b, tirx.Mul))
    return max(1, counts["ops"] + counts["trans"]) - counts["trans"], counts["trans"], mac


def _predicate(realize):
    p = realize.predicate
    if isinstance(p, tirx.IntImm) and int(p) == 1:
        return None
    return p


def _single_store(body):
    if isinstance(body, tirx.BufferStore):
        return body
    return None


def _has_child_block(stmt) -> bool:
    found = []

    tvm_ffi.structural_walk(stmt, [(s_tir.SBlockRealize, lambda _: found.append(True))])
    return bool(found)


def _intrinsic_of(block) -> str | None:
    """The intrinsic a tensorized block runs: its body holds a block tagged INTRIN_ATTR."""
    if not block.match_buffers:
        return None
    names = []

    def on_block(b):
        if INTRIN_ATTR in b.annotations:
            names.append(str(b.annotations[INTRIN_ATTR]))

    tvm_ffi.structural_walk(block.body, [(s_tir.SBlock, on_block)])
    return names[0] if names else None
