"""Which unit or pipe runs an instruction, and the shape of its transfers.

Shared by verify (legality) and codegen (the instruction stream the timing model runs).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import sym, tirx

from ..npu.intrinsics import REDUCTIONS, Intrinsic, implementation
from ..npu.spec import HardwareSpec, Unit
from .program import Access, Instr, Loop, Program, Region, analysis_form


def compute_unit(instr: Instr, spec: HardwareSpec) -> Unit | None:
    """A non-DMA, non-intrinsic block runs on the vector unit when its innermost loop is
    vectorised, else on the scalar unit."""
    vector = spec.unit_of_kind("vector")
    if instr.vectorized and vector is not None:
        return vector
    return spec.unit_of_kind("scalar") or vector


def is_dma(instr: Instr) -> bool:
    return instr.kind == "copy" and instr.reads[0].scope != instr.writes[0].scope


def own_loops(instr: Instr, counts: dict[int, int]) -> tuple[Loop, ...]:
    return instr.loops[len(instr.loops) - counts.get(id(instr), 0):]


def own_loop_counts(program: Program) -> dict[int, int]:
    """For each instruction, how many innermost loops wrap it alone (its own loop nest):
    the loops inside its block, then the loops of the tree that hold only it."""
    counts: dict[int, int] = {id(i): i.inner for i in program.instrs()}

    def chain(node):
        if isinstance(node, Instr):
            return node
        if isinstance(node, Loop) and len(node.body) == 1:
            inner = chain(node.body[0])
            if inner is not None:
                counts[id(inner)] = counts.get(id(inner), 0) + 1
            return inner
        return None

    def visit(nodes):
        for n in nodes:
            if isinstance(n, Loop):
                if chain(n) is None:
                    visit(n.body)
            elif isinstance(n, Region):
                visit(n.body)

    visit(program.body)
    return counts


@dataclass(frozen=True)
class Geometry:
    """A DMA side as the engine sees it: contiguous run and outer strides, in elements."""

    base: tvm.ir.PrimExpr  # offset of the first burst in elements (may hold outer loop vars)
    run: int  # elements per contiguous burst
    strides: tuple[int, ...]  # element strides of the outer (non-burst) loops
    contiguous: bool
    inner_stride: int


def linear_index(acc: Access):
    shape = [int(d) for d in acc.buffer.shape]
    strides = [int(s) for s in acc.buffer.strides] if len(acc.buffer.strides) else None
    if strides is None:
        strides, step = [], 1
        for d in reversed(shape):
            strides.insert(0, step)
            step *= d
    lin = 0
    for idx, st in zip(acc.indices, strides):
        lin = idx * st + lin
    return lin


def geometry(acc: Access, loops: list[Loop], cut=frozenset()) -> Geometry | None:
    """``cut``: loop vars a predicate or guard may stop the transfer at; a burst never
    extends across one of them (a cut innermost loop leaves bursts of one element)."""
    ana = sym.Analyzer()
    lin = ana.simplify(linear_index(acc))
    if not loops:
        return Geometry(lin, 1, (), True, 1)
    coeffs = sym.detect_linear_equation(lin, [lp.var for lp in loops])
    if len(coeffs) == 0 or not all(isinstance(c, tirx.IntImm) for c in coeffs[:-1]):
        return None
    cs = [int(c) for c in coeffs[:-1]]
    base = coeffs[-1]
    if cs[-1] != 1:
        return Geometry(base, 1, tuple(cs[:-1]), False, cs[-1])
    if _in(loops[-1].var, cut):
        return Geometry(base, 1, tuple(cs), True, 1)
    run, i = loops[-1].extent, len(loops) - 2
    while i >= 0 and cs[i] == run and not _in(loops[i].var, cut):
        run *= loops[i].extent
        i -= 1
    return Geometry(base, run, tuple(cs[: i + 1]), True, 1)


def _in(var, vars_) -> bool:
    return any(var.same_as(v) for v in vars_)


def free_vars(expr) -> list:
    found = []
    if expr is not None:
        tvm_ffi.structural_walk(expr, [(tirx.Var, found.append)])
    return found


def intrinsic_tiles(instr: Instr, intrin: Intrinsic) -> tuple[int, str]:
    """(instructions one execution of a tensorized block issues, "") when its operands and
    body are ``intrin``'s implementation over a tile of whole instruction shapes; else
    (0, what differs). A forged body is never trusted: the block is compared with the
    implementation TVM would inline, scaled to the tile its operands cover."""
    s = intrin.shape
    try:
        dims = [tuple(int(d) for d in v.shape) for v in instr.views]
    except TypeError:
        return 0, "symbolic operand"
    if intrin.op == "mma" and [len(d) for d in dims] == [2, 2, 2]:
        (m, k), (_, n) = dims[0], dims[1]
        per = (m, n, k), (s.m, s.n, s.k)
    elif intrin.op == "fill" and [len(d) for d in dims] == [2]:
        (m, n), k = dims[0], s.k
        per = (m, n), (s.m, s.n)
    elif intrin.op in REDUCTIONS and [len(d) for d in dims] == [1, 1]:
        m, n, k = 1, 1, dims[0][0]
        per = (k,), (s.k,)
    else:
        return 0, "operands"
    tile, unit = per
    if any(t < 1 or t % u for t, u in zip(tile, unit)):
        return 0, "tile " + "x".join(map(str, tile))
    expected = _implementation(intrin, m, n, k)
    if expected is None or not tvm_ffi.structural_equal(
            [*instr.views, instr.body], [*expected.params, expected.body.block.body], map_free_vars=True):
        return 0, "body"
    count = 1
    for t, u in zip(tile, unit):
        count *= t // u
    return count, ""


@functools.lru_cache(maxsize=256)
def _implementation(intrin: Intrinsic, m: int, n: int, k: int):
    """The analysis form of ``intrin``'s implementation over an m x n x k tile."""
    shape = dataclasses.replace(intrin.shape, m=m, n=n, k=k) if intrin.op not in REDUCTIONS \
        else dataclasses.replace(intrin.shape, k=k)
    try:
        return analysis_form(implementation(dataclasses.replace(intrin, shape=shape)))
    except Exception:  # noqa: BLE001 - a tile no implementation exists for matches nothing
        return None


