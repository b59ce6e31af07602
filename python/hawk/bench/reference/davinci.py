"""Vendor kernels for davinci-like: cube GEMMs through L1/L0 and vector kernels in UB."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tvm import s_tir, sym

from ...ir import Workload
from ...npu import HardwareSpec, intrinsics
from . import vendor_kernel
from .common import (
    restrict_loop,
    DOUBLE, divisor_tile, dma_tile_bytes, elem_bytes, fit_tile, fold_lanes, has_block, iter_loops,
    loop_extents,
    stage_reads, stage_write, vector_lanes, vectorize_inner,
)

PRESET = "davinci-like"
L1, L0A, L0B, L0C, UB = (f"global.npu.{s}" for s in ("l1", "l0a", "l0b", "l0c", "ub"))


def cube_intrinsics(spec: HardwareSpec, in_dtype: str):
    """(mma, fill, shape) of the cube for ``in_dtype``."""
    found = {(i.op, i.shape.in_dtype): i for i in intrinsics(spec)}
    mma = found[("mma", in_dtype)]
    fill = next(i for i in intrinsics(spec) if i.op == "fill" and i.shape.acc_dtype == mma.shape.acc_dtype)
    return mma.name, fill.name, mma.shape


# --- GEMM on the cube ------------------------------------------------------------------
#
# C[b, m, n] = A[b, m, k] B[b, k, n] is a loop nest over C tiles (tm x tn, accumulated in
# L0C over the whole K, then drained by FIX), K chunks (tk1: one global -> L1 DMA of a
# "step" operand) and K steps (tk0: one double-buffered L0A / L0B tile per group of cube
# instructions). Each operand's L1 tile lives at one of three levels:
#
#   "whole"  the operand of ``tb`` batches, read from memory once;
#   "panel"  its row panel (A: tm x K) or column panel (B: K x tn), loaded once per tile of
#            the outer tile loop: A stays in L1 across the N tiles when the M tiles are the
#            outer loop ("mn"), B across the M tiles when the N tiles are ("nm");
#   "step"   one tm x tk1 (tk1 x tn) chunk per K chunk, double-buffered.
#
# The best plan depends on the shape: the global -> L1 DMA pays a large fixed latency per
# transfer and whole 512-byte bursts per contiguous run (a chunk of 128 fp16 columns costs
# as much as one of 256), so operands should be read once and in long runs; the cube must
# not wait for a single-buffered L0C tile to drain; FIX moves the accumulator at its own
# width, so a narrower output drains faster through UB (FIX -> UB with the cast, MTE3 ->
# global, on two pipes). ``gemm_plans`` scores every plan that fits with a model of the pipes
# built from the spec (transfer and instruction times, capacities) and the best is used.
#
# Shapes that are not whole fractals are padded (``pad_einsum``) to a multiple of the tiles,
# one of two ways (the model picks):
#
#   in the loop  a padded operand tile is built in UB -- its valid rows loaded by MTE2, its pads
#                zeroed by the vector unit -- and moved to L1 by MTE3 (no unit writes L1, and
#                a partial fractal may not enter L0A / L0B); the padded C tile drains whole
#                to UB and MTE3 stores its valid part (a partial fractal may not leave L0C);
#   workspace    the padded operands are first written to global workspaces the same way
#                (in UB chunks), the GEMM runs on whole fractals, and the padded result is
#                cropped last: better when the operands are re-read many times, or when their
#                rows are not UB-aligned and in-loop staging would need whole-row tiles.
#
# Every transfer into or out of UB (and L1) must start and end on the scope's alignment, for
# the valid data too: rows whose length is not a multiple of it move as one block of whole
# rows and are laid out (or, on the way out, compacted) by a UB copy. An operand or result
# whose size is not a multiple of the alignment cannot be moved at all, and the schedule says
# so. The zero fill covers only the pads (the valid data is copied over the rest).


@dataclass(frozen=True)
class GemmShape:
    nb: int
    m: int
    n: int
    k: int
    in_dtype: str
    acc_dtype: str
    out_dtype: str


@dataclass(frozen=True)
class GemmPlan:
    mp: int  # padded extents: multiples of the tiles, no tile wholly padding
    np: int
    kp: int
    order: str  # "mn": M tiles outer, N tiles inner; "nm": the other way round
    tb: int  # batches per "whole" L1 tile (and per output store when out_batch)
    tm: int
    tn: int
    tk1: int  # K chunk per L1 tile of a "step" operand
    tk0: int  # K step per L0A / L0B tile
    a_at: str  # "whole" | "panel" | "step"
    b_at: str
    a_double: bool  # two L1 tiles of A: the next loads while this one is in use
    b_double: bool
    c_double: bool  # two L0C tiles: the next accumulates while FIX drains this one
    out_ub: bool  # L0C -> UB (FIX, with the cast) -> global (MTE3), else L0C -> global (FIX)
    out_batch: bool  # one MTE3 store per batch tile (C tiles are whole matrices)
    a_rows: int = 0  # padded operand: rows per UB chunk its L1 tile is built from (0: none)
    b_rows: int = 0
    a_compact: bool = False  # valid rows loaded as one block, laid out by the vector unit
    b_compact: bool = False
    workspace: bool = False  # pad A / B into global workspaces first, crop C at the end
    out_rows: int = 0  # workspace: rows per UB chunk of the final crop
    cycles: int = 0  # modelled


def _divisors(extent: int, multiple: int = 1) -> list[int]:
    return [t for t in range(multiple, extent + 1, multiple) if extent % t == 0]


def _ceil(x: int, a: int) -> int:
    return -(-x // a) * a


def _valid(extent: int, tile: int) -> set[int]:
    """Valid extents of the tiles of ``tile`` over ``extent`` (the last may be partial)."""
    return ({tile} if extent >= tile else set()) | ({extent % tile} if extent % tile else set())


def _tilings(extent: int, frac: int, most: int) -> list[tuple[int, int]]:
    """(tile, padded extent) pairs: tiles of whole fractals dividing the extent, or, when it
    is not whole fractals, any such tile with the extent padded up to a multiple of it."""
    if extent % frac == 0:
        return [(t, extent) for t in _divisors(extent, frac) if t <= most]
    return [(t, _ceil(extent, t)) for t in range(frac, min(most, _ceil(extent, frac)) + 1, frac)]


class _Model:
    """Times of the core's transfers and instructions, from the spec."""

    def __init__(self, spec: HardwareSpec, frac, g: GemmShape):
        self.spec, self.frac, self.g = spec, frac, g
        cube = spec.unit_of_kind("matrix")
        self.cube_rate, self.cube_issue = cube.throughput, cube.issue_overhead
        self.ib, self.ab, self.ob = (elem_bytes(d) for d in (g.in_dtype, g.acc_dtype, g.out_dtype))
        self.align = spec.scope(UB).alignment
        self.off = spec.offchip

    def dma(self, src: str, dst: str, rows: int, cols: int, stride: int, eb: int) -> int:
        """One DMA of ``rows`` x ``cols`` elements, rows ``stride`` apart on the strided side."""
        path = self.spec.path(src, dst)
        runs, run = (1, rows * cols * eb) if rows == 1 or cols == stride else (rows, cols * eb)
        return int(path.latency + math.ceil(runs * _ceil(run, path.burst) / path.bandwidth))

    def mma(self, tm: int, tn: int, tk: int) -> int:
        f = self.frac
        return int(self.cube_issue + math.ceil((tm // f.m) * (tn // f.n) * (tk // f.k) / self.cube_rate))

    def fill(self, tm: int, tn: int) -> int:
        f = self.frac
        return int(self.cube_issue + math.ceil((tm // f.m) * (tn // f.n) / self.cube_rate))

    def ub_op(self, elems: int, dtype: str) -> int | None:
        """One fill / copy of ``elems`` in UB: a vector instruction, else a scalar loop."""
        unit = ub_unit(self.spec, dtype)
        if unit is None:
            return None
        if unit.kind == "vector":
            return int(unit.issue_overhead + math.ceil(elems * elem_bytes(dtype) / unit.throughput))
        return math.ceil(elems / unit.throughput)

    def aligned(self, *runs_bytes) -> bool:
        return all(b % self.align == 0 for b in runs_bytes)


def ub_unit(spec: HardwareSpec, dtype: str):
    """The unit that fills and copies ``dtype`` in UB: the vector unit, else the scalar one."""
    for kind in ("vector", "scalar"):
        unit = spec.unit_of_kind(kind)
        if unit is not None and dtype in unit.dtypes and UB in unit.writes:
            return unit
    return None


def _operand_dims(p: GemmPlan, g: GemmShape, op: str):
    """(outer, padded outer, inner, padded inner) extents of operand ``op``: A is M x K, B K x N."""
    return (g.m, p.mp, g.k, p.kp) if op == "a" else (g.k, p.kp, g.n, p.np)


def _operand_tile(p: GemmPlan, g: GemmShape, op: str, at: str):
    """(rows, cols, row stride in the padded operand, count per kernel) of an operand's L1
    tile; A rows are M, B rows are K."""
    nbo, ni, nj, nk1 = g.nb // p.tb, p.mp // p.tm, p.np // p.tn, p.kp // p.tk1
    tiles = g.nb * ni * nj
    if op == "a":
        if at == "whole":
            return p.tb * p.mp, p.kp, p.kp, nbo
        count = (g.nb * ni if p.order == "mn" else tiles) if at == "panel" else tiles * nk1
        return p.tm, (p.kp if at == "panel" else p.tk1), p.kp, count
    if at == "whole":
        return p.tb * p.kp, p.np, p.np, nbo
    count = (g.nb * nj if p.order == "nm" else tiles) if at == "panel" else tiles * nk1
    return (p.kp if at == "panel" else p.tk1), p.tn, p.np, count


def _padded_staging(md: _Model, p: GemmPlan, op: str, at: str, rows: int, cols: int, budget: int):
    """(chunk rows, compact, UB bytes) to build a padded operand tile in UB chunks, or None.

    Every UB transfer must move whole aligned runs of the *valid* data: rows of the tile that
    are whole rows of the operand (all its K for A, all its N for B) move as one block
    (``compact``, laid out by a UB copy); otherwise each valid row part must be aligned."""
    g, ib = md.g, md.ib
    inner, inner_p, outer = (g.k, p.kp, g.m) if op == "a" else (g.n, p.np, g.k)
    if (at == "whole" and p.tb > 1) or ub_unit(md.spec, g.in_dtype) is None:
        return None  # (a padded whole tile is one batch: its chunks do not span batches)
    for r in sorted(_divisors(rows), reverse=True):
        for compact in ([True, False] if inner != inner_p and cols == inner_p else [False]):
            nbytes = 2 * _ceil(r * cols * ib, md.align) * (2 if compact else 1)
            if nbytes > budget:
                continue
            if compact or (inner == inner_p and cols == inner_p):  # whole rows in one run
                ok = md.aligned(*(v * inner * ib for v in _valid(outer, r)))
            else:
                ok = md.aligned(*(v * ib for v in _valid(inner, cols)))
            if ok:
                return r, compact, nbytes
    return None


def _out_runs_ok(md: _Model, p: GemmPlan) -> bool:
    """The valid part of every (padded) output tile leaves UB in whole aligned runs."""
    g, ob = md.g, md.ob
    if p.np == g.n and p.tn == g.n or p.np != g.n and p.tn == p.np:  # whole rows: one block
        return md.aligned(*(v * g.n * ob for v in _valid(g.m, p.tm)))
    return md.aligned(*(v * ob for v in _valid(g.n, p.tn)))


def _evaluate(md: _Model, p: GemmPlan) -> GemmPlan | None:
    """Plan ``p`` completed with its UB staging and modelled cycles (None: does not fit)."""
    spec, g = md.spec, md.g
    ib, ab, ob = md.ib, md.ab, md.ob
    nbo, ni, nj, nk1, nk0 = g.nb // p.tb, p.mp // p.tm, p.np // p.tn, p.kp // p.tk1, p.tk1 // p.tk0
    tiles = g.nb * ni * nj
    steps = tiles * nk1 * nk0
    pad = {"a": p.mp != g.m or p.kp != g.k, "b": p.kp != g.k or p.np != g.n}
    out_pad = p.mp != g.m or p.np != g.n
    if out_pad and not (p.out_ub and _out_runs_ok(md, p)):
        return None
    if 2 * p.tm * p.tk0 * ib > spec.scope(L0A).capacity or 2 * p.tk0 * p.tn * ib > spec.scope(L0B).capacity:
        return None
    c_bytes = _ceil(p.tm * p.tn * ab, spec.scope(L0C).alignment)
    if c_bytes * (2 if p.c_double else 1) > spec.scope(L0C).capacity:
        return None
    # --- output
    fix_eb = max(ab, ob)
    ub_left, vector = spec.scope(UB).capacity, 0
    if p.out_ub:
        rows_out = p.tb * p.mp if p.out_batch else p.tm
        cols_out = p.np if p.out_batch else p.tn
        compact_out = out_pad and p.np != g.n and (g.n * ob) % md.align != 0
        ub_left -= 2 * _ceil(rows_out * cols_out * ob, md.align) * (2 if compact_out else 1)
        fix_tile = md.dma(L0C, UB, p.tm, p.tn, p.tn, fix_eb)
        if compact_out:
            t_compact = md.ub_op(p.tm * p.tn, g.out_dtype)
            if t_compact is None:
                return None
            vector += tiles * t_compact
        if p.out_batch:
            mte3_last = md.dma(UB, md.off, 1, p.tb * g.m * g.n, 1, ob)
            mte3_out = nbo * mte3_last
        else:
            whole_rows = p.tn == p.np
            mte3_last = md.dma(UB, md.off, p.tm, g.n if whole_rows else p.tn, g.n if whole_rows else p.np, ob)
            mte3_out = tiles * mte3_last
    else:
        fix_tile = md.dma(L0C, md.off, p.tm, p.tn, g.n, fix_eb)
        mte3_out = mte3_last = 0
    # --- L1 tiles, and the UB staging of padded operands
    l1 = spec.scope(L1)
    loads, single, t_load, width = {}, {}, {}, {}
    l1_bytes, mte3_in, head_extra = 0, 0, 0
    staging = {}
    n_padded = sum(pad.values())
    for op, at, dbl in (("a", p.a_at, p.a_double), ("b", p.b_at, p.b_double)):
        rows, cols, stride, count = _operand_tile(p, g, op, at)
        if dbl and count == 1:
            return None
        loads[op], single[op], width[op] = count, count > 1 and not dbl, cols
        nbytes = rows * cols * ib
        l1_bytes += _ceil(nbytes, l1.alignment) * (2 if dbl else 1)
        if not pad[op]:
            t_load[op] = md.dma(md.off, L1, rows, cols, stride, ib)
            continue
        stg = _padded_staging(md, p, op, at, rows, cols, max(0, ub_left) // n_padded)
        if stg is None:
            return None
        r, compact, _ = staging[op] = stg
        chunks = rows // r
        inner = g.k if op == "a" else g.n
        load = md.dma(md.off, UB, 1, r * inner, 1, ib) if compact else md.dma(md.off, UB, r, cols, stride, ib)
        outer, outer_p = (g.m, p.mp) if op == "a" else (g.k, p.kp)
        inner_p = p.kp if op == "a" else p.np
        fill = _fill_elems(_fill_region(outer, outer_p, inner, inner_p, r, cols))
        t_ub = md.ub_op(fill, g.in_dtype) + (md.ub_op(r * cols, g.in_dtype) if compact else 0)
        t_l1 = md.dma(UB, L1, 1, r * cols, 1, ib)
        t_load[op] = chunks * load
        vector += count * chunks * t_ub
        mte3_in += count * chunks * t_l1
        head_extra += t_ub + t_l1
    for op, (_, _, nbytes) in staging.items():
        ub_left -= nbytes
    if l1_bytes > l1.capacity or ub_left < 0:
        return None
    # --- pipes and critical chains
    mte2 = loads["a"] * t_load["a"] + loads["b"] * t_load["b"]
    step_mte1 = (md.dma(L1, L0A, p.tm, p.tk0, width["a"], ib) + md.dma(L1, L0B, p.tk0, p.tn, width["b"], ib))
    step_cube = md.mma(p.tm, p.tn, p.tk0)
    tile_cube = nk1 * nk0 * step_cube + md.fill(p.tm, p.tn)
    cube = tiles * tile_cube
    fix = tiles * fix_tile
    mte3 = mte3_out + mte3_in
    out_last = fix_tile + mte3_last
    if "step" in (p.a_at, p.b_at):  # compute behind the last global -> L1 load
        last_compute = nk0 * step_cube
    elif "panel" in (p.a_at, p.b_at):
        last_compute = (nj if p.order == "mn" else ni) * tile_cube
    else:
        last_compute = p.tb * ni * nj * tile_cube
    first_load = t_load["a"] + t_load["b"] + head_extra
    head = first_load + step_mte1
    stall = 0 if p.c_double else (tiles - 1) * fix_tile  # single L0C tile: cube waits for FIX
    # a single L1 tile of a "whole" / "panel" operand: its next load waits for the last use
    reload = sum((loads[op] - 1) * t_load[op] for op in ("a", "b") if single[op])
    drain = sum((loads[op] - 1) * (step_mte1 + step_cube) for op in ("a", "b") if single[op])
    chains = [
        mte2 + head_extra + last_compute + out_last + stall // 2 + drain,
        head + cube + stall + out_last + reload,
        first_load + steps * step_mte1 + step_cube + out_last,
        head + tile_cube + fix + mte3_last,
        head + tile_cube + (p.tb if p.out_batch else 1) * fix_tile + mte3,  # stores wait for tb tiles
        head + vector,
    ]
    a_st, b_st = staging.get("a", (0, False, 0)), staging.get("b", (0, False, 0))
    return replace(p, a_rows=a_st[0], a_compact=a_st[1], b_rows=b_st[0], b_compact=b_st[1],
                   cycles=int(max(chains)))


def gemm_plans(spec: HardwareSpec, g: GemmShape, frac) -> list[GemmPlan]:
    """Every plan that fits, with its modelled cycles."""
    md = _Model(spec, frac, g)
    ib, ab = md.ib, md.ab
    l0a, l0b, l0c = (spec.scope(s).capacity for s in (L0A, L0B, L0C))
    has_ub = spec.path(L0C, UB) is not None and spec.path(UB, spec.offchip) is not None
    kps = [g.k] if g.k % frac.k == 0 else sorted({_ceil(g.k, frac.k * 2 ** e) for e in range(5)})
    plans = []
    for tm, mp in _tilings(g.m, frac.m, 512):
        for tn, np_ in _tilings(g.n, frac.n, l0c // (frac.m * ab)):
            if tm * tn * ab > l0c:
                continue
            out_pad = mp != g.m or np_ != g.n
            whole_c = tm == mp and tn == np_
            tiles = g.nb * (mp // tm) * (np_ // tn)
            c_doubles = [True, False] if 2 * tm * tn * ab <= l0c and tiles > 1 else [False]
            outs = [True] if out_pad else ([False, True] if has_ub else [False])
            for kp in kps:
                tk0s = [t for t in _divisors(kp, frac.k) if 2 * tm * t * ib <= l0a and 2 * t * tn * ib <= l0b]
                for tk0 in tk0s[-2:]:
                    tk1s = [t for t in _divisors(kp, tk0) if kp - g.k < t]
                    plans += _plans_for(md, g, (mp, np_, kp, tm, tn, tk0), tk1s, whole_c, c_doubles, outs)
    return plans


def _plans_for(md, g, dims, tk1s, whole_c, c_doubles, out_choices):
    mp, np_, kp, tm, tn, tk0 = dims
    out = []
    for order in ("mn", "nm"):
        ats = [("whole", "whole"), ("whole", "step"), ("step", "whole"), ("step", "step")] if order == "mn" else []
        ats += [("panel", "whole"), ("panel", "step")] if order == "mn" else [("whole", "panel"), ("step", "panel")]
        for a_at, b_at in ats:
            uses_whole = "whole" in (a_at, b_at)
            for tk1 in (tk1s if "step" in (a_at, b_at) else [kp]):
                for tb in (_divisors(g.nb) if (uses_whole or whole_c) else [1]):
                    for c_double in c_doubles:
                        for a_double in ([True] if a_at == "step" else [True, False]):
                            for b_double in ([True] if b_at == "step" else [True, False]):
                                for out_ub in out_choices:
                                    for out_batch in ([False, True] if out_ub and whole_c and g.nb > 1 else [False]):
                                        if tb > 1 and not uses_whole and not out_batch:
                                            continue
                                        plan = _evaluate(md, GemmPlan(
                                            mp, np_, kp, order, tb, tm, tn, tk1, tk0, a_at, b_at,
                                            a_double, b_double, c_double, out_ub, out_batch))
                                        if plan is not None:
                                            out.append(plan)
    return out


def _fill_region(outer: int, outer_p: int, inner: int, inner_p: int, rows: int, cols: int):
    """((row start, rows), (col start, cols)) of a padded UB chunk (``rows`` x ``cols``) that
    the zero fill must cover: the valid data is copied over the rest right after, and the
    pads are the trailing rows / columns of the last tile of a dimension, so one pattern
    serves every chunk (a chunk could only need more if it were all padding)."""
    if inner_p != inner and outer_p == outer:
        return (0, rows), (inner % cols, cols - inner % cols)
    if outer_p != outer and inner_p == inner and outer % rows and _ceil(outer, rows) == outer_p:
        return (outer % rows, rows - outer % rows), (0, cols)
    return (0, rows), (0, cols)


def _fill_elems(region) -> int:
    return region[0][1] * region[1][1]


def _pass_cycles(md: _Model, chunks: int, load: int, ub: int, store: int) -> int:
    """A pass over ``chunks`` UB chunks (load, UB work, store per chunk, double-buffered)."""
    return max(chunks * load, chunks * ub, chunks * store) + load + ub + store - max(load, ub, store)


def _prepass(md: _Model, op: str, mp: int, np_: int, kp: int):
    """(chunk rows, cycles) to write operand ``op`` zero-padded to a global workspace."""
    g, ib = md.g, md.ib
    outer, outer_p, inner, inner_p = (g.m, mp, g.k, kp) if op == "a" else (g.k, kp, g.n, np_)
    budget = md.spec.scope(UB).capacity
    for r in sorted(_divisors(outer_p), reverse=True):
        if 2 * (_ceil(r * inner * ib, md.align) + _ceil(r * inner_p * ib, md.align)) > budget:
            continue
        if not md.aligned(*(v * inner * ib for v in _valid(outer, r)), r * inner_p * ib):
            continue
        work = md.ub_op(r * inner_p, g.in_dtype)
        if work is None:
            return None
        work += md.ub_op(_fill_elems(_fill_region(outer, outer_p, inner, inner_p, r, inner_p)), g.in_dtype)
        load = md.dma(md.off, UB, 1, r * inner, 1, ib)
        store = md.dma(UB, md.off, 1, r * inner_p, 1, ib)
        return r, _pass_cycles(md, g.nb * outer_p // r, load, work, store)
    return None


def _postpass(md: _Model, np_: int):
    """(chunk rows, cycles) to crop the padded output workspace into the output."""
    g, ob = md.g, md.ob
    budget = md.spec.scope(UB).capacity
    for r in sorted(_divisors(g.m), reverse=True):  # no partial chunk: UB buffers stay compact
        if 2 * (_ceil(r * np_ * ob, md.align) + _ceil(r * g.n * ob, md.align)) > budget:
            continue
        if not md.aligned(*(v * g.n * ob for v in _valid(g.m, r)), r * np_ * ob):
            continue
        work = md.ub_op(r * np_, g.out_dtype)
        if work is None:
            return None
        load = md.dma(md.off, UB, 1, r * np_, 1, ob)
        store = md.dma(UB, md.off, 1, r * g.n, 1, ob)
        return r, _pass_cycles(md, g.nb * g.m // r, load, work, store)
    return None


def _workspace_plans(spec: HardwareSpec, g: GemmShape, frac) -> list[GemmPlan]:
    """Plans that first pad the operands into global workspaces (in UB chunks: valid rows in,
    zero fill and layout on the vector unit, padded rows out), run the GEMM on whole
    fractals, and crop the padded result last. Worth it when the operands are re-read many
    times or their rows are not UB-aligned (then in-loop staging needs whole-row tiles)."""
    md = _Model(spec, frac, g)

    def extents(x, f):
        return sorted({e for e in (_ceil(x, f), _ceil(x, 8 * f)) if e == _ceil(x, f) or e <= 1.25 * x})

    plans = []
    for mp in extents(g.m, frac.m):
        for np_ in extents(g.n, frac.n):
            for kp in extents(g.k, frac.k):
                a = _prepass(md, "a", mp, np_, kp) if (mp, kp) != (g.m, g.k) else (0, 0)
                b = _prepass(md, "b", mp, np_, kp) if (kp, np_) != (g.k, g.n) else (0, 0)
                out = _postpass(md, np_) if (mp, np_) != (g.m, g.n) else (0, 0)
                if a is None or b is None or out is None:
                    continue
                main = gemm_plans(spec, replace(g, m=mp, n=np_, k=kp), frac)
                if not main:
                    continue
                best = min(main, key=_rank)
                plans.append(replace(best, mp=mp, np=np_, kp=kp, workspace=True, a_rows=a[0], b_rows=b[0],
                                     out_rows=out[0], a_compact=False, b_compact=False,
                                     cycles=best.cycles + a[1] + b[1] + out[1]))
    return plans


def _rank(p: GemmPlan):
    """Fewest modelled cycles; then least padding, fewer and bigger transfers, simpler paths."""
    return (p.cycles, p.mp * p.np * p.kp, p.out_ub, -p.tk0, -p.tk1, -p.tm * p.tn)


def gemm_plan(spec: HardwareSpec, g: GemmShape, frac) -> GemmPlan:
    plans = gemm_plans(spec, g, frac)
    if g.m % frac.m or g.n % frac.n or g.k % frac.k:
        plans += _workspace_plans(spec, g, frac)
    if not plans:
        raise s_tir.ScheduleError(
            f"matmul reference: no legal schedule for ({g.m} x {g.k}) @ ({g.k} x {g.n}) {g.in_dtype}"
            f"{f' x {g.nb} batches' if g.nb > 1 else ''} on {spec.name}: " + _no_plan_reason(spec, g, frac))
    return min(plans, key=_rank)


def _no_plan_reason(spec: HardwareSpec, g: GemmShape, frac) -> str:
    align = spec.scope(UB).alignment
    ib, ob = elem_bytes(g.in_dtype), elem_bytes(g.out_dtype)
    pad_m, pad_n, pad_k = g.m % frac.m, g.n % frac.n, g.k % frac.k
    reasons = []
    if (pad_m or pad_n or pad_k) and ub_unit(spec, g.in_dtype) is None:
        reasons.append(f"padding to whole fractals needs a unit that writes {g.in_dtype} in UB, and "
                       "none does")
    for name, rows, cols, eb, dtype, padded in (
            ("A", g.m, g.k, ib, g.in_dtype, pad_m or pad_k), ("B", g.k, g.n, ib, g.in_dtype, pad_k or pad_n),
            ("the result", g.m, g.n, ob, g.out_dtype, pad_m or pad_n)):
        if padded and (rows * cols * eb) % align:
            reasons.append(f"{name} ({rows} x {cols} {dtype}, {rows * cols * eb} bytes) cannot be moved "
                           f"between global memory and UB / L1 in whole {align}-byte units")
    return "; ".join(reasons) or "no tiling fits the on-chip buffers"


# --- building the schedule ---------------------------------------------------------------


def _pad(sch: s_tir.Schedule, c, p: GemmPlan, g: GemmShape, batch: bool, cast: bool):
    """Pad block C to the plan's extents. Returns (C, operand pad blocks [A or None, B or
    None], the block writing the padded output tile in UB or None, the crop block or None)."""
    sch.pad_einsum(c, ([1] if batch else []) + [p.mp, p.np, p.kp])
    producers = {sch.get(b).name_hint: b for b in sch.get_producers(c)}
    pads = [producers.get("A_pad"), producers.get("B_pad")]
    out_pad = p.mp != g.m or p.np != g.n
    if not out_pad:
        return c, pads, None, None
    crop = sch.get_consumers(c)[0]  # C = C_pad[valid]
    if not cast:
        return c, pads, None, crop
    sch.compute_inline(crop)  # D reads C_pad directly ...
    d = sch.get_sblock("D")
    sch.pad_einsum(d, ([1] if batch else []) + [p.mp, p.np])  # ... and casts whole tiles
    sch.compute_inline(sch.get_producers(d)[0])  # identity copy of the already padded C
    return c, pads, d, sch.get_consumers(d)[0]


def _ub_op(sch, block, spec: HardwareSpec, dtype: str) -> None:
    """A UB fill / copy on the vector unit when it handles ``dtype`` (else the scalar unit)."""
    unit = ub_unit(spec, dtype)
    if unit is not None and unit.kind == "vector":
        vectorize_inner(sch, block, spec, dtype)


def _zero_pads(sch, spec, pad_block, region, dtype: str):
    """Split the zero fill off a padded UB chunk block and restrict it to ``region``."""
    nd = len(sch.get(pad_block).iter_vars)
    fill = sch.decompose_padding(pad_block, sch.get_loops(pad_block)[-nd])
    (r0, rn), (c0, cn) = region
    restrict_loop(sch, sch.get_loops(fill)[-2], r0, rn)
    restrict_loop(sch, sch.get_loops(fill)[-1], c0, cn)
    _ub_op(sch, fill, spec, dtype)
    return fill


def _stage_padded(sch, spec, pad_block, at, double: bool, rows: int, compact: bool, dtype: str,
                  fill_region):
    """A padded operand's L1 tile, assembled in UB ``rows`` rows at a time: the chunk zeroed,
    its valid rows loaded by MTE2 (as one block laid out by a UB copy when ``compact``), the
    whole chunk moved to L1 by MTE3."""
    sch.set_scope(pad_block, 0, L1)
    if at is not None:
        sch.compute_at(pad_block, at, preserve_unit_loops=True)
    to_l1 = sch.cache_write(pad_block, 0, UB)  # pad_block now writes the UB chunk
    if double:
        sch.annotate(to_l1, DOUBLE, 0)
    chunk = sch.split(sch.get_loops(to_l1)[-2], [None, rows])[0]
    sch.compute_at(pad_block, chunk, preserve_unit_loops=True)
    fill = _zero_pads(sch, spec, pad_block, fill_region, dtype)
    sch.annotate(fill, DOUBLE, 0)
    sch.annotate(pad_block, DOUBLE, 0)
    if compact:
        block_in = sch.cache_read(pad_block, 0, UB)
        sch.compute_at(block_in, chunk, preserve_unit_loops=True)
        sch.annotate(block_in, DOUBLE, 0)
        _ub_op(sch, pad_block, spec, dtype)


def _prepass_schedule(sch, spec, pad_block, rows: int, dtype: str, fill_region) -> None:
    """The padded operand written to its global workspace ``rows`` rows at a time: the valid
    rows loaded into UB as one block, laid out into a zeroed padded chunk, stored."""
    chunk, _ = sch.split(sch.get_loops(pad_block)[-2], [None, rows])
    store = sch.cache_write(pad_block, 0, UB)
    sch.reverse_compute_at(store, chunk, preserve_unit_loops=True)
    load = sch.cache_read(pad_block, 0, UB)
    sch.compute_at(load, chunk, preserve_unit_loops=True)
    fill = _zero_pads(sch, spec, pad_block, fill_region, dtype)
    for block in (load, fill, pad_block):
        sch.annotate(block, DOUBLE, 0)
    _ub_op(sch, pad_block, spec, dtype)


def _postpass_schedule(sch, spec, crop, rows: int, dtype: str) -> None:
    """The valid part of the padded output workspace copied out ``rows`` rows at a time:
    padded rows into UB, compacted there, stored as one block."""
    padded = [int(x) for x in sch.get(crop).reads[0].source.shape]
    # whole padded rows in (aligned runs), the valid columns out
    sch.annotate_buffer_access(crop, 0, "read", lambda *v: (*v[:-1], (0, padded[-1])))
    chunk, _ = sch.split(sch.get_loops(crop)[-2], [None, rows])
    load = sch.cache_read(crop, 0, UB)
    sch.compute_at(load, chunk, preserve_unit_loops=True)
    store = sch.cache_write(crop, 0, UB)
    sch.reverse_compute_at(store, chunk, preserve_unit_loops=True)
    for block in (load, crop):
        sch.annotate(block, DOUBLE, 0)
    _ub_op(sch, crop, spec, dtype)


def schedule_gemm(sch: s_tir.Schedule, spec: HardwareSpec, in_dtype: str, batch: bool,
                  plan: GemmPlan | None = None) -> GemmPlan:
    """Block ``C`` (optionally batched) on the cube with ``plan`` (default: the one
    ``gemm_plan`` picks for the shape); pads shapes that are not whole fractals."""
    mma, fill, frac = cube_intrinsics(spec, in_dtype)
    c = sch.get_sblock("C")
    extents = loop_extents(sch, c)
    cast = has_block(sch, "D")
    out_dtype = str(sch.get(sch.get_sblock("D") if cast else c).writes[0].source.dtype)
    g = GemmShape(extents[0] if batch else 1, *extents[-3:], in_dtype, frac.acc_dtype, out_dtype)
    p = plan or gemm_plan(spec, g, frac)
    pads, d_pad, crop = [None, None], None, None
    if (p.mp, p.np, p.kp) != (g.m, g.n, g.k):
        c, pads, d_pad, crop = _pad(sch, c, p, g, batch, cast)
        if p.workspace:
            for op, pad_block, rows in zip("ab", pads, (p.a_rows, p.b_rows)):
                if pad_block is not None:
                    dims = _operand_dims(p, g, op)
                    _prepass_schedule(sch, spec, pad_block, rows, in_dtype,
                                      _fill_region(*dims, rows, dims[3]))
            if crop is not None:
                _postpass_schedule(sch, spec, crop, p.out_rows, out_dtype)
            pads, d_pad, crop = [None, None], None, None
    loops = sch.get_loops(c)
    i, j, r = loops[-3:]
    bo = None
    outer = []
    if batch:
        bo, bi = sch.split(loops[0], [None, p.tb])
        outer = [bo, bi]
    io, ii = sch.split(i, [None, p.tm])
    ii_o, ii_f = sch.split(ii, [None, frac.m])
    jo, ji = sch.split(j, [None, p.tn])
    ji_o, ji_f = sch.split(ji, [None, frac.n])
    ko1, k1 = sch.split(r, [None, p.tk1])
    ko0, k0 = sch.split(k1, [None, p.tk0])
    ki_o, ki_f = sch.split(k0, [None, frac.k])
    o1, o2 = (io, jo) if p.order == "mn" else (jo, io)
    sch.reorder(*outer, o1, o2, ko1, ko0, ii_o, ji_o, ki_o, ii_f, ji_f, ki_f)
    store_at = bo if p.out_batch else o2
    _stage_output(sch, spec, c, p, g, cast, d_pad, crop, o2, store_at)
    # The order of these primitives is the program order of the moves: A's L1 and L0 moves
    # are issued before B's, so A's L0 move overlaps B's load instead of waiting behind it.
    l1s = {}
    for idx in (1, 0):
        if pads[idx] is None:
            l1s[idx] = sch.cache_read(c, idx, L1)
    nears = {}
    for idx, l0 in ((0, L0A), (1, L0B)):
        nears[idx] = sch.cache_read(c, idx, l0)
    for idx in (0, 1):
        sch.compute_at(nears[idx], ko0, preserve_unit_loops=True)
        sch.annotate(nears[idx], DOUBLE, 0)
    for idx, at, own, double in ((1, p.b_at, jo, p.b_double), (0, p.a_at, io, p.a_double)):
        loc = {"whole": bo, "panel": own, "step": ko1}[at]
        if idx not in l1s:
            rows, compact = (p.a_rows, p.a_compact) if idx == 0 else (p.b_rows, p.b_compact)
            cols = _operand_tile(p, g, "ab"[idx], at)[1]
            region = _fill_region(*_operand_dims(p, g, "ab"[idx]), rows, cols)
            _stage_padded(sch, spec, pads[idx], loc, double, rows, compact, in_dtype, region)
            continue
        if loc is not None:
            sch.compute_at(l1s[idx], loc, preserve_unit_loops=True)
        if double:
            sch.annotate(l1s[idx], DOUBLE, 0)
    init = sch.decompose_reduction(c, ko1)
    init_name = sch.get(init).name_hint
    sch.tensorize(ii_f, mma)
    sch.tensorize(sch.get_loops(init)[-2], fill)
    if p.c_double:
        sch.annotate(sch.get_sblock(init_name + "_o"), DOUBLE, 0)
    return p


def _stage_output(sch, spec, c, p, g, cast, d_pad, crop, o2, store_at):
    """C accumulates in L0C; FIX drains each tile (with the cast of D) to global, or to UB
    for MTE3 to store (the valid part only, for a padded C)."""
    if crop is None:  # not padded in M / N
        if cast:
            d = sch.get_sblock("D")
            sch.set_scope(c, 0, L0C)
            sch.reverse_compute_at(d, o2, preserve_unit_loops=True)
            if p.out_ub:
                st = sch.cache_write(d, 0, UB)
                sch.reverse_compute_at(st, store_at, preserve_unit_loops=True)
                sch.annotate(d, DOUBLE, 0)
        else:
            drain = sch.cache_write(c, 0, L0C)
            sch.reverse_compute_at(drain, o2, preserve_unit_loops=True)
            if p.out_ub:
                st = sch.cache_write(drain, 0, UB)
                sch.reverse_compute_at(st, store_at, preserve_unit_loops=True)
                sch.annotate(drain, DOUBLE, 0)
        return
    if cast:  # C_pad (L0C) -> D_pad (UB, cast on FIX) -> crop to D (MTE3)
        sch.set_scope(c, 0, L0C)
        sch.set_scope(d_pad, 0, UB)
        drain = d_pad
    else:  # C_pad (UB) <- L0C (FIX); crop to C (MTE3)
        sch.set_scope(c, 0, UB)
        drain = sch.cache_write(c, 0, L0C)
    sch.reverse_compute_at(drain, o2, preserve_unit_loops=True)
    sch.annotate(drain, DOUBLE, 0)
    sch.reverse_compute_at(crop, store_at, preserve_unit_loops=True)
    if p.np != g.n and (g.n * elem_bytes(g.out_dtype)) % spec.scope(UB).alignment:
        # valid rows are not whole UB-aligned runs: compact them in UB, store one block
        store = sch.cache_write(crop, 0, UB)
        sch.reverse_compute_at(store, store_at, preserve_unit_loops=True)
        sch.annotate(crop, DOUBLE, 0)
        _ub_op(sch, crop, spec, g.out_dtype)


@vendor_kernel(PRESET, "matmul", "batch_matmul")
def gemm(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    schedule_gemm(sch, spec, wl.inputs[0].dtype, batch=wl.op == "batch_matmul")


def ub_tile_2d(spec: HardwareSpec, rows: int, cols: int, dtype, n_buffers: int):
    """A (rows, cols) tile for ``n_buffers`` double-buffered UB buffers of ``dtype``."""
    eb = elem_bytes(dtype)
    budget = min(spec.scope(UB).capacity // (2 * n_buffers), 32 * 1024) // eb
    align = max(1, spec.scope(UB).alignment // eb)
    tc = divisor_tile(cols, budget, align)
    tr = divisor_tile(rows, max(1, budget // tc))
    return tr, tc


def schedule_elementwise_2d(sch: s_tir.Schedule, spec: HardwareSpec, block_name: str, dtype) -> None:
    """A 2-D elementwise/broadcast block: tiles staged through UB, computed on the vector unit."""
    blk = sch.get_sblock(block_name)
    rows, cols = loop_extents(sch, blk)
    n_buffers = len(sch.get(blk).reads) + 1
    tr, tc = ub_tile_2d(spec, rows, cols, dtype, n_buffers)
    i, j = sch.get_loops(blk)
    io, ii = sch.split(i, [None, tr])
    jo, ji = sch.split(j, [None, tc])
    sch.reorder(io, jo, ii, ji)
    stage_reads(sch, blk, jo, UB)
    stage_write(sch, blk, jo, UB)
    vectorize_inner(sch, blk, spec, dtype)


@vendor_kernel(PRESET, "unary", "binary", "bias_add")
def elementwise(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    out = wl.outputs[0]
    schedule_elementwise_2d(sch, spec, sch.get(sch.get_output_blocks("root")[0]).name_hint, out.dtype)


# --- vector kernels on row tiles ------------------------------------------------------
#
# Row-wise operators (reductions, softmax, norms) are tiled over rows: a tile of whole
# rows is loaded into UB once (double-buffered so the next tile's load overlaps this
# tile's compute), every intermediate of the tile stays in UB, and the result tile is
# stored once. Reductions run on the vector unit as lane-parallel partial sums (rfactor
# of the reduction axis into one vector repeat of lanes); only the final fold of those
# lanes into one value per row is one vector reduce instruction per row (the scalar unit
# takes it only when the spec has no reduce form).

GLOBAL = "global"


def _ub_budget(spec: HardwareSpec, n_buffers: int) -> int:
    """UB bytes usable by tiles, after the worst-case alignment padding of each buffer."""
    ub = spec.scope(UB)
    return ub.capacity - n_buffers * ub.alignment


def _align_elems(spec: HardwareSpec, dtype) -> int:
    return max(1, spec.scope(UB).alignment // elem_bytes(dtype))


def _lanes(spec: HardwareSpec, dtype, extent: int) -> int:
    return divisor_tile(extent, vector_lanes(spec, dtype))


def _row_tile(spec: HardwareSpec, rows: int, ub_row_bytes: int, in_row_bytes: int, dtype,
              *, fixed: int = 0, n_buffers: int = 8) -> int:
    """Rows per tile: the tile's UB footprint (``ub_row_bytes`` per row, double-buffered
    inputs counted twice, plus ``fixed``) fits UB and one input load is about one
    efficient DMA transfer; a multiple of the UB alignment in elements when possible so
    per-row vectors (row results) store as aligned bursts."""
    return fit_tile(rows, ub_row_bytes, _ub_budget(spec, n_buffers) - fixed,
                    limit=dma_tile_bytes(spec, GLOBAL, UB) // max(1, in_row_bytes),
                    multiple=_align_elems(spec, dtype))


def _channel_tile(extent: int, limit: int, lanes: int, align: int) -> int:
    """A divisor of ``extent`` <= ``limit``: whole vector repeats if possible, else whole
    aligned blocks (so the DMA bursts of the tile stay aligned)."""
    t = divisor_tile(extent, limit, lanes)
    return t if t % lanes == 0 else divisor_tile(extent, limit, align)


def _lane_rfactor(sch: s_tir.Schedule, name: str, spec: HardwareSpec, dtype):
    """Split the innermost (reduction) loop of block ``name`` into vector lanes and rfactor
    it; returns (rf block, final block). Call while the block is still in its own nest."""
    blk = sch.get_sblock(name)
    k = sch.get_loops(blk)[-1]
    _, kl = sch.split(k, [None, _lanes(spec, dtype, int(sch.get(k).extent))])
    rf = sch.rfactor(kl, factor_axis=len(sch.get(blk).writes[0].source.shape))
    return rf, sch.get_sblock(name)


def _finish_lane_reduce(sch: s_tir.Schedule, rf, final, spec: HardwareSpec) -> None:
    """After compute_at: rf block in UB as (rows, reduce, lanes) with the lanes vectorized and
    a vector init; the final cross-lane fold as (rows, lanes) with the vector reduce, in UB."""
    sch.set_scope(rf, 0, UB)
    sch.set_scope(final, 0, UB)
    blk = sch.get(rf)
    loops = iter_loops(sch, rf)
    lane_var = blk.writes[0].region[-1].min
    lane = red = None
    rows = []
    for iv, lp in zip(blk.iter_vars, loops):
        if int(iv.iter_type) == 2:  # CommReduce
            red = lp
        elif iv.var.same_as(lane_var):
            lane = lp
        else:
            rows.append(lp)
    sch.reorder(*rows, red, lane)
    sch.vectorize(lane)
    sch.decompose_reduction(rf, red)
    fblk = sch.get(final)
    floops = iter_loops(sch, final)
    fred = [lp for iv, lp in zip(fblk.iter_vars, floops) if int(iv.iter_type) == 2]
    fsp = [lp for iv, lp in zip(fblk.iter_vars, floops) if int(iv.iter_type) != 2]
    sch.reorder(*fsp, *fred)
    fold_lanes(sch, final, spec)


@vendor_kernel(PRESET, "row_reduce")
def row_reduce(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """S[i] = sum/max_j X[i, j]: (tr x tc) tiles of X double-buffered into UB, lane-parallel
    partials accumulated on the vector unit across column chunks, one scalar fold per row."""
    dtype = wl.inputs[0].dtype
    eb = elem_bytes(dtype)
    s = sch.get_sblock("S")
    rows, cols = loop_extents(sch, s)
    align = _align_elems(spec, dtype)
    target = dma_tile_bytes(spec, GLOBAL, UB)
    # whole rows when `align` of them make one efficient transfer, else column chunks
    tc = cols if align * cols * eb <= target else _channel_tile(
        cols, target // (align * eb), vector_lanes(spec, dtype), align)
    lanes = _lanes(spec, dtype, tc)
    tr = _row_tile(spec, rows, 2 * tc * eb + lanes * eb + 2 * eb, tc * eb, dtype)  # S ping-pongs
    i, k = sch.get_loops(s)
    io, ii = sch.split(i, [None, tr])
    kc, ko, kl = sch.split(k, [None, tc // lanes, lanes])
    sch.reorder(io, kc, ii, ko, kl)
    rf = sch.rfactor(kl, factor_axis=1)
    io, kc = sch.get_loops(rf)[:2]
    sch.reverse_compute_at(s, io, preserve_unit_loops=True)
    sch.set_scope(rf, 0, UB)
    xin = sch.cache_read(rf, 0, UB)
    sch.compute_at(xin, kc, preserve_unit_loops=True)
    sch.annotate(xin, DOUBLE, 0)
    stage_write(sch, s, io, UB)
    sch.vectorize(sch.get_loops(rf)[-1])
    sch.decompose_reduction(rf, kc)
    fold_lanes(sch, s, spec)


def _row_pipeline(sch: s_tir.Schedule, spec: HardwareSpec, out_name: str, tr: int, producers: list,
                  reductions: dict,
                  staged_input: str):
    """Tile ``out_name`` by ``tr`` rows, store it from UB, compute ``producers`` (blocks in
    reverse dataflow order; reductions given by name are replaced by their rf/final pair)
    per tile in UB, and load ``staged_input`` once per tile, double-buffered."""
    out = sch.get_sblock(out_name)
    i = sch.get_loops(out)[0]
    io, _ = sch.split(i, [None, tr])
    stage_write(sch, out, io, UB)
    first_reader = None
    for name in producers:
        if name in reductions:
            rf, final = reductions[name]
            blocks = [final, rf]
        else:
            blocks = [sch.get_sblock(name)]
        for b in blocks:
            sch.compute_at(b, io, preserve_unit_loops=True)
            if name not in reductions:
                sch.set_scope(b, 0, UB)
            first_reader = b
    for rf, final in reductions.values():
        _finish_lane_reduce(sch, rf, final, spec)
    xin = sch.cache_read(first_reader, staged_input, UB)
    sch.compute_at(xin, io, preserve_unit_loops=True)
    sch.annotate(xin, DOUBLE, 0)
    return out


@vendor_kernel(PRESET, "softmax")
def softmax(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """Row tiles of X double-buffered into UB; max and sum as vector lane partials with a
    scalar fold per row, exp and normalisation on the vector unit; exp(x - max) kept in UB."""
    dtype = wl.inputs[0].dtype
    eb = elem_bytes(dtype)
    rows, cols = loop_extents(sch, sch.get_sblock("T_softmax_norm"))
    lanes = _lanes(spec, dtype, cols)
    # X and Y (both double) + exp per row, two (lanes + 1) reduction buffers
    tr = _row_tile(spec, rows, 5 * cols * eb + 2 * (lanes + 1) * eb, cols * eb, dtype)
    red = {n: _lane_rfactor(sch, n, spec, dtype) for n in ("T_softmax_maxelem", "T_softmax_expsum")}
    out = _row_pipeline(sch, spec, "T_softmax_norm", tr,
                           ["T_softmax_expsum", "T_softmax_exp", "T_softmax_maxelem"], red, "X")
    vectorize_inner(sch, sch.get_sblock("T_softmax_exp"), spec, dtype)
    vectorize_inner(sch, out, spec, dtype)


def _norm(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec, sums: list[str],
          params: list[str]) -> None:
    """Row-tiled norm: the ``sums`` reductions of X per tile as lane partials, ``Y`` on the
    vector unit, the per-column ``params`` loaded into UB once."""
    dtype = wl.inputs[0].dtype
    eb = elem_bytes(dtype)
    rows, cols = loop_extents(sch, sch.get_sblock("Y"))
    lanes = _lanes(spec, dtype, cols)
    fixed = len(params) * cols * eb  # per-column parameters, loaded once
    tr = _row_tile(spec, rows, 4 * cols * eb + len(sums) * (lanes + 1) * eb, cols * eb, dtype,
                   fixed=fixed)
    red = {n: _lane_rfactor(sch, n, spec, dtype) for n in sums}
    out = _row_pipeline(sch, spec, "Y", tr, list(reversed(sums)), red, "X")
    for p in params:  # loaded into UB once, before the row loop
        sch.cache_read(out, p, UB)
    vectorize_inner(sch, out, spec, dtype)


@vendor_kernel(PRESET, "layernorm")
def layernorm(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """Row tiles of X double-buffered into UB; sum and sum of squares as vector lane partials
    with a scalar fold per row, normalisation on the vector unit; gamma/beta loaded once."""
    _norm(sch, wl, spec, ["mean_sum", "sq_sum"], ["gamma", "beta"])


@vendor_kernel(PRESET, "rmsnorm")
def rmsnorm(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """Row tiles of X double-buffered into UB; sum of squares as vector lane partials with a
    scalar fold per row, scaling on the vector unit; the weight loaded once."""
    _norm(sch, wl, spec, ["sq_sum"], ["weight"])


@vendor_kernel(PRESET, "pool2d")
def pool2d(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """NHWC pooling: per tile of output rows (and channels when a row group does not fit),
    the input rows it needs are loaded into UB in one contiguous, double-buffered transfer;
    the window reduction (and the average's scaling) run on the vector unit over channels."""
    dtype = wl.inputs[0].dtype
    eb = elem_bytes(dtype)
    avg = has_block(sch, "A")
    p = sch.get_sblock("P")
    out = sch.get_sblock("A") if avg else p
    _, oh, ow, c = loop_extents(sch, out)[:4]
    kh = loop_extents(sch, p)[-2]
    w = wl.inputs[0].shape[2]
    pb = sch.get(p)
    stride = 1
    if oh > 1:  # the row index of X is y * stride + ry
        stride = int(sym.detect_linear_equation(pb.reads[0].region[1].min, [pb.iter_vars[1].var])[0])

    def in_rows(to):  # input rows behind `to` output rows
        return stride * (to - 1) + kh

    def footprint(to, tc):  # double-buffered input rows + the output tile(s) (P and A for avg)
        return (2 * in_rows(to) * w + (2 if avg else 1) * to * ow) * tc * eb

    budget = _ub_budget(spec, 4)
    tc = c  # all channels (one contiguous transfer) unless one output row of them does not fit
    if footprint(1, c) > budget:
        tc = _channel_tile(c, budget // footprint(1, 1), vector_lanes(spec, dtype), _align_elems(spec, dtype))
    target = dma_tile_bytes(spec, GLOBAL, UB)
    to = 1  # output rows per tile: one efficient transfer, at least two tiles
    for cand in range(2, oh // 2 + 1):
        if oh % cand == 0 and footprint(cand, tc) <= budget and in_rows(cand) * w * tc * eb <= target:
            to = cand
    b, y, x, ch = sch.get_loops(out)[:4]
    yo, yi = sch.split(y, [None, to])
    co, ci = sch.split(ch, [None, tc])
    if avg:
        sch.reorder(b, yo, co, yi, x, ci)
    else:
        ry, rx = sch.get_loops(p)[-2:]
        sch.reorder(b, yo, co, yi, x, ry, rx, ci)
    stage_write(sch, out, co, UB)
    if avg:
        sch.compute_at(p, co, preserve_unit_loops=True)
        sch.set_scope(p, 0, UB)
        _, py, px, pc, ry, rx = iter_loops(sch, p)
        sch.reorder(py, px, ry, rx, pc)
        vectorize_inner(sch, out, spec, dtype)
    xin = sch.cache_read(p, 0, UB)
    sch.compute_at(xin, co, preserve_unit_loops=True)
    sch.annotate(xin, DOUBLE, 0)
    vectorize_inner(sch, p, spec, dtype)  # channels innermost, before the init is split off
    sch.decompose_reduction(p, ry)


@vendor_kernel(PRESET, "transpose")
def transpose(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """Y = X^T in (ti x tj) tiles: a tile of X loaded contiguously into UB (double-buffered),
    transposed UB->UB on the vector unit, stored contiguously. The tile minimises the modelled
    DMA time per element (latency plus whole bursts on both sides: rows of tj in, rows of ti
    out) among tiles that fit UB three times and stay within one efficient transfer."""
    dtype = wl.inputs[0].dtype
    eb = elem_bytes(dtype)
    y = sch.get_sblock("Y")
    cols, rows = loop_extents(sch, y)  # Y is (cols, rows) of X's (rows, cols)
    align = _align_elems(spec, dtype)
    load, store = spec.path(GLOBAL, UB), spec.path(UB, GLOBAL)
    budget = _ub_budget(spec, 3) // 3
    target = dma_tile_bytes(spec, GLOBAL, UB)

    def divs(n):
        return [d for d in range(align, n + 1, align) if n % d == 0] or [n]

    def dma_cycles(path, runs, run_elems):
        bursts = runs * -(-run_elems * eb // path.burst)
        return path.latency + bursts * path.burst / path.bandwidth

    def rank(tile):
        ti, tj = tile
        size = ti * tj * eb
        cost = (dma_cycles(load, ti, tj) + dma_cycles(store, tj, ti)) / (ti * tj)
        single = (rows // ti) * (cols // tj) < 2  # nothing for the double buffer to overlap
        return (size > target, single, cost, -size)

    fits = [(ti, tj) for ti in divs(rows) for tj in divs(cols) if ti * tj * eb <= budget]
    ti, tj = min(fits, key=rank) if fits else (divisor_tile(rows, align), divisor_tile(cols, align))
    j, i = sch.get_loops(y)
    jo, ji = sch.split(j, [None, tj])
    io, ii = sch.split(i, [None, ti])
    sch.reorder(jo, io, ji, ii)
    xin = sch.cache_read(y, 0, UB)
    sch.compute_at(xin, io, preserve_unit_loops=True)
    sch.annotate(xin, DOUBLE, 0)
    stage_write(sch, y, io, UB)
    vectorize_inner(sch, y, spec, dtype)
