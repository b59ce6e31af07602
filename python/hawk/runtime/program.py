"""The NPU program of a kernel: its TensorIR read as a tree of loops, scopes and instructions.

A scheduled TensorIR kernel is first brought to *analysis form* (init blocks lowered,
allocations moved to their lowest common ancestor and compacted to the region actually
used) so that every buffer's shape is its on-chip footprint and every index is an
expression of the enclosing loop variables. The tree read from it is what verify
checks and what the timing model will execute. Reading is pure: no spec is needed.

Reading sees everything that runs: outside leaf blocks only loops, sequences and blocks
may appear; a leaf block's body is read node by node against an allow-list (its loops,
guards and every store); calls that are not math are collected from the whole function,
its attributes and annotations. Anything else is a ProgramError, never a silent skip.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ..npu.intrinsics import INTRIN_ATTR

Load = tvm.ir.expr.TensorLoad  # tirx.BufferLoad is only a constructor in TVM 0.27

DOUBLE_BUFFER_ATTR = "double_buffer_scope"
# Expression nodes a kernel may hold, shared subterms counted at each use: TVM's passes and
# analyses walk trees, so a DAG of doubling subterms must be refused before any of them runs.
MAX_NODES = 200_000

# Math the vector and scalar units execute (TVM 0.27 names). Any other call (extern, packed,
# LLVM intrinsics, another backend's builtins) is not an instruction of the core.
TRANSCENDENTAL = frozenset((
    "tirx.exp", "tirx.exp2", "tirx.exp10", "tirx.log", "prim.log2", "tirx.log10", "tirx.log1p",
    "tirx.sqrt", "tirx.rsqrt", "tirx.tanh", "tirx.sigmoid", "tirx.erf", "tirx.pow", "tirx.sin",
    "tirx.cos", "tirx.tan", "tirx.atan", "tirx.asin", "tirx.acos", "tirx.sinh", "tirx.cosh",
))
MATH_OPS = TRANSCENDENTAL | frozenset((
    "tirx.fabs", "tirx.floor", "prim.ceil", "tirx.round", "tirx.trunc", "tirx.nearbyint",
    "tirx.isnan", "tirx.isinf", "tirx.isfinite", "tirx.fmod", "prim.if_then_else", "prim.likely",
))
IF_THEN_ELSE, LIKELY = "prim.if_then_else", "prim.likely"
# Calls that turn a handle into a buffer: a view aliasing another buffer's memory.
_ALIASING = frozenset(("tirx.buffer_data", "tirx.address_of", "tirx.handle_add_byte_offset",
                       "tirx.ptr_byte_offset", "tirx.buffer_offset"))


class ProgramError(ValueError):
    """The kernel cannot be read as an NPU program (malformed or unsupported IR)."""


@dataclass(frozen=True)
class Access:
    """One buffer access of an instruction; ``indices`` are in the enclosing loop vars."""

    buffer: tvm.ir.Var
    indices: tuple[tvm.ir.PrimExpr, ...]
    write: bool
    guard: tvm.ir.PrimExpr | None = None  # condition under which it runs, inside the block
    loops: tuple[Loop, ...] = ()  # loops inside the block around it, beyond the instruction's

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
    inner: int = 0  # how many of ``loops`` are inside the block (its body's loop nest)
    views: tuple[tvm.ir.Var, ...] = ()  # intrinsic: its operand buffers (match_buffers)
    body: tirx.Stmt | None = None  # intrinsic: the tensorized block's body
    ops: int = 0  # arithmetic operations per element, over all stores (a pure move counts one)
    transcendental: int = 0  # of which exp/log/sqrt/div-class
    mac: bool = False  # the body is C += A * B
    dtypes: frozenset[str] = frozenset()
    calls: frozenset[str] = frozenset()
    predicate: tvm.ir.PrimExpr | None = None  # T.where of the block and the blocks around it
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
    foreign_calls: frozenset[str] = frozenset()  # non-math calls anywhere in the kernel

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
    funcs = [f for _, f in mod.functions.items()]
    if len(funcs) != 1 or not isinstance(funcs[0], tirx.PrimFunc):
        raise ProgramError(f"a kernel module holds exactly one PrimFunc, found {len(funcs)} functions")
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
    try:
        mod = as_module(kernel)
        foreign = _scan(mod, main_func(mod))  # before any pass: they walk trees
        func = analysis_form(mod)
        body = _Reader(_double_buffered(func)).stmt(func.body, (), None)
    except ProgramError:
        raise
    except Exception as err:  # noqa: BLE001 - unreadable IR of any kind (RecursionError too) is malformed
        raise ProgramError(f"{type(err).__name__}: {_first_line(err)}") from None
    return Program(func, body, foreign)


def _first_line(err: Exception) -> str:
    lines = [ln for ln in str(err).strip().splitlines() if ln.strip()]
    return lines[-1] if lines else type(err).__name__


def call_name(call) -> str:
    op = call.op
    return op.name if isinstance(op, tvm.ir.Op) else f"call:{op}"


def _scan(mod: tvm.IRModule, func: tirx.PrimFunc) -> frozenset[str]:
    """Non-math calls anywhere in the kernel (body, attributes, annotations, buffer
    declarations); refuses trees over MAX_NODES, aliasing views and code-importing pragmas."""
    count, foreign, refused = [0], set(), []

    def refuse(reason):
        refused.append(reason)
        return tvm_ffi.VisitInterrupt(None)  # an exception would come back re-typed through the FFI

    def on_node(node):
        count[0] += 1
        if count[0] > MAX_NODES:
            return refuse(f"the kernel has over {MAX_NODES} expression nodes (shared subterms unfolded)")
        if isinstance(node, tvm.ir.Call):
            name = call_name(node)
            if name in _ALIASING:
                return refuse(f"a buffer view aliases another buffer's memory ({name})")
            if name not in MATH_OPS:
                foreign.add(name)
        elif isinstance(node, (tirx.For, s_tir.SBlock)) and _imports_code(node.annotations):
            return refuse(f"annotation {_imports_code(node.annotations)} imports code")
        return None

    for root in (mod.attrs, func.attrs, func):
        if root is None:
            continue
        if isinstance(root, tvm.ir.DictAttrs) and _imports_code(root):
            refuse(f"attribute {_imports_code(root)} imports code")
        elif tvm_ffi.structural_walk(root, [(object, on_node)], order="pre") is None:
            continue
        raise ProgramError(refused[0])
    return frozenset(foreign)


def _imports_code(attrs) -> str:
    """pragma_import_llvm / pragma_import_c link their text into the build."""
    return next((str(k) for k in attrs.keys() if str(k).startswith("pragma_import")), "")


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


def read_loop(s) -> Loop:
    if not isinstance(s.extent, tirx.IntImm) or not isinstance(s.min, tirx.IntImm):
        raise ProgramError(f"loop {s.loop_var} has a non-constant range")
    if int(s.min) != 0:
        raise ProgramError(f"loop {s.loop_var} does not start at 0")
    if int(s.extent) < 1:
        raise ProgramError(f"loop {s.loop_var} has extent {int(s.extent)}")
    return Loop(s.loop_var, int(s.extent), s.kind, dict(s.annotations))


def _and(a, b):
    if a is None:
        return b
    return b if b is None else tirx.And(a, b)


class _Reader:
    def __init__(self, double: set):
        self.double = double

    def stmt(self, s, loops: tuple[Loop, ...], pred) -> list:
        if isinstance(s, tirx.SeqStmt):
            return [n for child in s.seq for n in self.stmt(child, loops, pred)]
        if isinstance(s, tirx.For):
            loop = read_loop(s)
            loop.body = self.stmt(s.body, loops + (loop,), pred)
            return [loop]
        if isinstance(s, s_tir.SBlockRealize):
            return self.block(s, loops, pred)
        if isinstance(s, tirx.Evaluate) and isinstance(s.value, tirx.IntImm):
            return []  # T.evaluate(0): nothing runs
        raise ProgramError(f"{type(s).__name__} outside a leaf block")

    def block(self, realize, loops, pred) -> list:
        block = realize.block
        allocs = tuple(
            Alloc(b, buffer_bytes(b), b in self.double) for b in block.alloc_buffers
        )
        pred = _and(pred, _predicate(realize))
        if block.match_buffers:
            body = [self.intrin(block, pred, loops)]
        elif _has_child_block(block.body):
            body = self.stmt(block.body, loops, pred)
        else:
            body = [_Leaf(block, loops, pred).read()]
        return [Region(block.name_hint, allocs, body)] if allocs else body

    def intrin(self, block, pred, loops) -> Instr:
        """A tensorized block: which instruction it claims to be; verify checks that it is."""
        name = _intrinsic_of(block)
        if name is None:
            raise ProgramError(f"block {block.name_hint}: a buffer view (match_buffer) outside an intrinsic")
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
                     views=tuple(mb.buffer for mb in block.match_buffers), body=block.body,
                     predicate=pred, annotations=dict(block.annotations))


class _Leaf:
    """A leaf block's body read node by node: its loops, guards, loads, stores and calls.

    The loops of a perfect nest at the top of the body become the instruction's own loops;
    loops deeper in (around some stores only) multiply those stores' cost and bound their
    accesses. Every store is costed; a constant stored under a guard of indices (the init
    that LowerInitBlock makes) is free, any other store costs at least one move, and a guard
    that reads data adds its test to every store under it.
    """

    def __init__(self, block, loops, pred):
        self.block, self.pred = block, pred
        self.loads: list[Access] = []
        self.stores: list[tuple] = []  # (BufferStore, guard, inner loops)
        self.dtypes: set[str] = set()
        self.calls: set[str] = set()
        body, own = block.body, []
        while isinstance(body, tirx.For):
            own.append(read_loop(body))
            body = body.body
        self.loops, self.inner, self.top = tuple(loops) + tuple(own), len(own), body

    def bad(self, node):
        raise ProgramError(f"block {self.block.name_hint}: unsupported {type(node).__name__} in a block body")

    def read(self) -> Instr:
        self.stmt(self.top, None, ())
        if not self.stores:
            raise ProgramError(f"block {self.block.name_hint} writes nothing")
        writes = tuple(Access(s.buffer, tuple(s.indices), True, g, lp) for s, g, lp in self.stores)
        for a in self.loads + list(writes):
            self.dtypes.add(a.dtype)
        plain = trans = 0
        work = []  # the stores that are not a guarded constant
        for store, guard, inner in self.stores:
            p, t, _ = _count_ops(store.value)
            if guard is not None and _reads_data(guard):
                # control flow on data is compute: its test runs wherever the store might
                gp, gt, _ = _count_ops(guard)
                p, t = p + max(gp, 1), t + gt
            elif guard is not None and _is_constant(store.value):
                continue  # the init LowerInitBlock makes: a constant under an index guard
            work.append(store)
            times = math.prod(lp.extent for lp in inner)
            plain, trans = plain + times * max(p, 1 if t == 0 else 0), trans + times * t
        kind, cast = self.kind()
        return Instr(self.block.name_hint, kind, self.loops, reads=tuple(self.loads), writes=writes,
                     cast=cast, inner=self.inner, ops=plain if work else 1, transcendental=trans,
                     mac=len(work) == 1 and _is_mac(work[0]),
                     dtypes=frozenset(d for d in self.dtypes if d != "handle"),
                     calls=frozenset(self.calls), predicate=self.pred,
                     annotations=dict(self.block.annotations))

    def kind(self) -> tuple[str, bool]:
        """A copy moves data and nothing else: one unguarded store of a load (cast on the way,
        or padded with a constant where an index-only guard fails); the rest is compute."""
        if len(self.stores) != 1 or self.stores[0][1] is not None or self.stores[0][2]:
            return "compute", False
        if self.pred is not None and _reads_data(self.pred):
            return "compute", False
        store = self.stores[0][0]
        value, cast = store.value, False
        if isinstance(value, tirx.Cast):
            value, cast = value.value, True
        if isinstance(value, tvm.ir.Call) and call_name(value) == IF_THEN_ELSE:
            cond, then, other = value.args
            if _reads_data(cond) or not isinstance(other, (tirx.IntImm, tirx.FloatImm)):
                return "compute", False
            value = then
        if isinstance(value, tirx.Cast):
            value, cast = value.value, True
        if isinstance(value, Load) and not value.source.same_as(store.buffer):
            return "copy", cast
        return "compute", False

    def stmt(self, s, guard, inner) -> None:
        if isinstance(s, tirx.SeqStmt):
            for child in s.seq:
                self.stmt(child, guard, inner)
        elif isinstance(s, tirx.BufferStore):
            for idx in s.indices:
                self.expr(idx, guard, inner)
            self.expr(s.value, guard, inner)
            self.dtypes.add(expr_dtype(s.value))
            self.stores.append((s, guard, inner))
        elif isinstance(s, tirx.For):
            self.stmt(s.body, guard, inner + (read_loop(s),))
        elif isinstance(s, tirx.IfThenElse):
            self.expr(s.condition, guard, inner)
            self.stmt(s.then_case, _and(guard, s.condition), inner)
            if s.else_case is not None:
                self.stmt(s.else_case, _and(guard, tirx.Not(s.condition)), inner)
        elif isinstance(s, tirx.Evaluate):
            self.expr(s.value, guard, inner)  # a call for its effect: its name is checked
        else:
            self.bad(s)

    def expr(self, e, guard, inner) -> None:
        if isinstance(e, Load):
            self.loads.append(Access(e.source, tuple(e.indices), False, guard, inner))
            for idx in e.indices:
                self.expr(idx, guard, inner)
        elif isinstance(e, tvm.ir.Call):
            name = call_name(e)
            self.calls.add(name)
            self.dtypes.add(expr_dtype(e))
            if name == IF_THEN_ELSE and len(e.args) == 3:
                cond, then, other = e.args
                self.expr(cond, guard, inner)
                self.expr(then, _and(guard, cond), inner)
                self.expr(other, _and(guard, tirx.Not(cond)), inner)
            else:
                for arg in e.args:
                    self.expr(arg, guard, inner)
        elif isinstance(e, tirx.Cast):
            self.dtypes.add(expr_dtype(e))
            self.expr(e.value, guard, inner)
        elif isinstance(e, tirx.Select):
            for part in (e.condition, e.true_value, e.false_value):
                self.expr(part, guard, inner)
        elif isinstance(e, tirx.Not):
            self.expr(e.a, guard, inner)
        elif isinstance(e, _PLAIN_OPS):
            self.expr(e.a, guard, inner)
            self.expr(e.b, guard, inner)
        elif not isinstance(e, (tirx.IntImm, tirx.FloatImm, tirx.Var, tvm.ir.StringImm)):
            self.bad(e)


def expr_dtype(e) -> str:
    return str(e.ty.dtype)


# binary arithmetic and logic (Select, Not and Cast are read apart)
_PLAIN_OPS = tuple(
    getattr(tirx, name) for name in (
        "Add", "Sub", "Mul", "Div", "FloorDiv", "FloorMod", "Mod", "Min", "Max",
        "EQ", "NE", "LT", "LE", "GT", "GE", "And", "Or",
    )
)


def _count_ops(value) -> tuple[int, int, bool]:
    """(operations, transcendental operations, reads data) of one stored value."""
    counts = {"ops": 0, "trans": 0, "loads": 0}

    def on_load(_):
        counts["loads"] += 1
        # index arithmetic is address generation, not work: do not descend into loads
        return tvm_ffi.WalkResult.SKIP

    def on_plain(_):
        counts["ops"] += 1

    def on_cast(e):
        if expr_dtype(e) != expr_dtype(e.value):
            counts["ops"] += 1

    def on_call(e):
        name = call_name(e)
        if name != LIKELY:  # a branch hint, no instruction
            counts["trans" if name in TRANSCENDENTAL else "ops"] += 1

    tvm_ffi.structural_walk(value, [(Load, on_load), ((*_PLAIN_OPS, tirx.Select, tirx.Not), on_plain),
                                    (tirx.Cast, on_cast), (tvm.ir.Call, on_call)], order="pre")
    return counts["ops"], counts["trans"], counts["loads"] > 0


def _is_mac(store) -> bool:
    v = store.value
    return (isinstance(v, tirx.Add) and isinstance(v.a, Load) and v.a.source.same_as(store.buffer)
            and isinstance(v.b, tirx.Mul))


def _is_constant(value) -> bool:
    while isinstance(value, tirx.Cast):
        value = value.value
    return isinstance(value, (tirx.IntImm, tirx.FloatImm))


def _reads_data(cond) -> bool:
    """Whether a condition depends on anything but loop indices (a load or a call)."""
    found = []

    def on_node(e):
        if isinstance(e, Load) or (isinstance(e, tvm.ir.Call) and call_name(e) != LIKELY):
            found.append(e)

    tvm_ffi.structural_walk(cond, [((Load, tvm.ir.Call), on_node)])
    return bool(found)


def _predicate(realize):
    p = realize.predicate
    if isinstance(p, tirx.IntImm) and int(p) == 1:
        return None
    return p


def _has_child_block(stmt) -> bool:
    found = []

    tvm_ffi.structural_walk(stmt, [(s_tir.SBlockRealize, lambda _: found.append(True))])
    return bool(found)


def _intrinsic_of(block) -> str | None:
    """The intrinsic a tensorized block claims to run: its body holds a block tagged INTRIN_ATTR."""
    names = []

    def on_block(b):
        if INTRIN_ATTR in b.annotations:
            names.append(str(b.annotations[INTRIN_ATTR]))

    tvm_ffi.structural_walk(block.body, [(s_tir.SBlock, on_block)])
    return names[0] if names else None
