"""Which unit or pipe runs an instruction, and the shape of its transfers.

Shared by verify (legality) and codegen (the instruction stream the timing model runs).
"""

from __future__ import annotations

from dataclasses import dataclass

import tvm
from tvm import sym, tirx

from ..npu.spec import HardwareSpec, Unit
from .program import Access, Instr, Loop, Program, Region


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
    """For each instruction, how many innermost loops wrap it alone (its own loop nest)."""
    counts: dict[int, int] = {}

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


def geometry(acc: Access, loops: list[Loop]) -> Geometry | None:
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
    run, i = loops[-1].extent, len(loops) - 2
    while i >= 0 and cs[i] == run:
        run *= loops[i].extent
        i -= 1
    return Geometry(base, run, tuple(cs[: i + 1]), True, 1)


