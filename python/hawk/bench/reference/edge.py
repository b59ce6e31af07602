"""Vendor kernels for edge-like: MAC-array GEMM through SPM/ACC and vector kernels in SPM.

The edge core has one scratchpad (SPM) that the DMA engine, the MAC array (operands), the
vector and the scalar unit all share, a small accumulator memory (ACC) that only the MAC
array writes, and a narrow DMA (16 B/cycle), so the kernels are built around re-use of what
is already on chip: big double-buffered tiles, the GEMM's A panel kept across N tiles, the
cast of the result done on the ACC -> SPM move.
"""

from __future__ import annotations

import math

from tvm import s_tir

from ...ir import Workload
from ...npu import HardwareSpec, intrinsics
from . import vendor_kernel
from .common import (
    DOUBLE, divisor_tile, dma_tile_bytes, elem_bytes, fold_lanes, has_block, loop_extents, stage_reads,
    stage_write, vector_lanes, vectorize_inner,
)

PRESET = "edge-like"
SPM, ACC = "global.npu.spm", "global.npu.acc"


# --- GEMM on the MAC array ---------------------------------------------------------------


def mac_intrinsics(spec: HardwareSpec, in_dtype: str):
    """(mma, fill, shape) of the MAC array for ``in_dtype``."""
    found = {(i.op, i.shape.in_dtype): i for i in intrinsics(spec)}
    mma = found[("mma", in_dtype)]
    fill = next(i for i in intrinsics(spec) if i.op == "fill" and i.shape.acc_dtype == mma.shape.acc_dtype)
    return mma.name, fill.name, mma.shape


def gemm_tiles(spec: HardwareSpec, m: int, n: int, k: int, shape, in_dtype: str, out_dtype: str,
               batch: int = 1):
    """(tm, tn, tk, a_panel, a_double) for C[m, n] = A[m, k] B[k, n] on the MAC array.

    The C tile is as square as possible in half of ACC (the narrow DMA makes re-use per loaded
    byte, i.e. the tile area, what counts); tk is the K step of the double-buffered B tiles;
    rows of every SPM tile are whole 16 B units. ``a_panel``: the whole K of the A tile stays
    in SPM across the N tiles (A is then read from memory once), when it fits beside the B
    tiles and the output tile -- double-buffered (``a_double``) only if there is a next M tile
    to prefetch; otherwise A is staged per K step like B.
    """
    ib, ob, ab = elem_bytes(in_dtype), elem_bytes(out_dtype), elem_bytes(shape.acc_dtype)
    spm = spec.scope(SPM)
    in_align, out_align = max(1, spm.alignment // ib), max(1, spm.alignment // ob)
    acc_elems = spec.scope(ACC).capacity // 2 // ab
    tm = divisor_tile(m, max(shape.m, math.isqrt(acc_elems)), shape.m)
    tn = divisor_tile(n, max(shape.n, acc_elems // tm), math.lcm(shape.n, in_align, out_align))
    k_unit = math.lcm(shape.k, in_align)
    tk_max = divisor_tile(k, max(k_unit, spm.capacity // 8 // (tn * ib)), k_unit)
    a_double = batch * (m // tm) > 1

    def used(tk, panel):
        a = tm * k * ib * (2 if a_double else 1) if panel else 2 * tm * tk * ib
        return a + 2 * tk * tn * ib + tm * tn * ob

    def shrink(tk, panel, floor):
        while used(tk, panel) > spm.capacity and tk > floor:
            tk = divisor_tile(k, tk - 1, k_unit)
        return tk

    tk = shrink(tk_max, True, min(tk_max, 64))  # keep B steps of >= 64 for the panel
    if used(tk, True) <= spm.capacity:
        return tm, tn, tk, True, a_double
    return tm, tn, shrink(tk_max, False, k_unit), False, True


def schedule_gemm(sch: s_tir.Schedule, spec: HardwareSpec, in_dtype: str, batch: bool) -> None:
    """Block ``C`` (optionally batched) on the MAC array, accumulated in ACC; the result goes
    ACC -> SPM (with the cast of ``D`` when there is one) -> global."""
    mma, fill, shape = mac_intrinsics(spec, in_dtype)
    c = sch.get_sblock("C")
    loops = sch.get_loops(c)
    m, n, k = loop_extents(sch, c)[-3:]
    d = sch.get_sblock("D") if has_block(sch, "D") else None
    out_dtype = str(sch.get(d if d is not None else c).writes[0].source.dtype)
    extents = loop_extents(sch, c)
    tm, tn, tk, a_panel, a_double = gemm_tiles(spec, m, n, k, shape, in_dtype, out_dtype,
                                               extents[0] if batch else 1)
    i, j, r = loops[-3:]
    io, ii = sch.split(i, [None, tm])
    jo, ji = sch.split(j, [None, tn])
    ko, ki = sch.split(r, [None, tk])
    ii_o, ii_f = sch.split(ii, [None, shape.m])
    ji_o, ji_f = sch.split(ji, [None, shape.n])
    ki_o, ki_f = sch.split(ki, [None, shape.k])
    outer = [loops[0]] if batch else []
    sch.reorder(*outer, io, jo, ko, ii_o, ji_o, ki_o, ii_f, ji_f, ki_f)
    if d is not None:
        sch.set_scope(c, 0, ACC)
        sch.reverse_compute_at(d, jo, preserve_unit_loops=True)
        stage_write(sch, d, jo, SPM)  # D: ACC -> SPM with the cast, then SPM -> global
    else:
        drain = sch.cache_write(c, 0, ACC)  # C accumulates in ACC ...
        out = sch.cache_write(drain, 0, SPM)  # ... drains ACC -> SPM, then SPM -> global
        sch.reverse_compute_at(drain, jo, preserve_unit_loops=True)
        sch.reverse_compute_at(out, jo, preserve_unit_loops=True)
    a = sch.cache_read(c, 0, SPM)
    sch.compute_at(a, io if a_panel else ko, preserve_unit_loops=True)
    if a_double:
        sch.annotate(a, DOUBLE, 0)
    b = sch.cache_read(c, 1, SPM)
    sch.compute_at(b, ko, preserve_unit_loops=True)
    sch.annotate(b, DOUBLE, 0)
    init = sch.decompose_reduction(c, ko)
    init_name = sch.get(init).name_hint
    sch.tensorize(ii_f, mma)
    sch.tensorize(sch.get_loops(init)[-2], fill)
    # Ping-pong accumulators (the tile uses half of ACC): the next tile accumulates while
    # the previous one drains to SPM.
    sch.annotate(sch.get_sblock(init_name + "_o"), DOUBLE, 0)


@vendor_kernel(PRESET, "matmul", "batch_matmul")
def gemm(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    schedule_gemm(sch, spec, wl.inputs[0].dtype, batch=wl.op == "batch_matmul")


# --- elementwise on the vector unit -------------------------------------------------------


def tile_budget(spec: HardwareSpec, n_buffers: int) -> int:
    """Bytes per SPM tile: ``n_buffers`` double-buffered tiles fit SPM, and one tile is big
    enough that the DMA latency costs at most 5% of its transfer (larger only delays the
    first overlap)."""
    return min(spec.scope(SPM).capacity // (2 * n_buffers),
               dma_tile_bytes(spec, spec.offchip, SPM, efficiency=0.95))


def spm_tile_2d(spec: HardwareSpec, rows: int, cols: int, dtype, n_buffers: int):
    """A (rows, cols) tile for ``n_buffers`` double-buffered SPM buffers of ``dtype``: as wide
    as the row allows (long DMA bursts), widths in whole 16 B units."""
    eb = elem_bytes(dtype)
    budget = tile_budget(spec, n_buffers) // eb
    align = max(1, spec.scope(SPM).alignment // eb)
    tc = divisor_tile(cols, budget, align)
    tr = divisor_tile(rows, max(1, budget // tc))
    return tr, tc


@vendor_kernel(PRESET, "unary", "binary", "bias_add")
def elementwise(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """A 2-D elementwise/broadcast block: tiles DMA'd into SPM, computed by the vector unit in
    SPM, DMA'd back, inputs and output double-buffered. A row-broadcast operand (the bias) is
    loaded once per column tile and stays in SPM for every row tile."""
    blk = sch.get_output_blocks("root")[0]
    dtype = wl.outputs[0].dtype
    rows, cols = loop_extents(sch, blk)
    reads = sch.get(blk).reads
    tr, tc = spm_tile_2d(spec, rows, cols, dtype, len(reads) + 1)
    i, j = sch.get_loops(blk)
    io, ii = sch.split(i, [None, tr])
    jo, ji = sch.split(j, [None, tc])
    sch.reorder(jo, io, ii, ji)
    rowwise = [k for k, r in enumerate(reads) if len(r.source.shape) == 1]
    tiled = [k for k in range(len(reads)) if k not in rowwise]
    stage_reads(sch, blk, jo, SPM, double=cols > tc, indices=rowwise)
    stage_reads(sch, blk, io, SPM, indices=tiled)
    stage_write(sch, blk, io, SPM)
    sch.annotate(blk, DOUBLE, 0)  # its output tile: computed into one while the other drains
    vectorize_inner(sch, blk, spec, dtype)


# --- row reduction: vector partials, scalar tail --------------------------------------------


@vendor_kernel(PRESET, "row_reduce")
def row_reduce(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """S[i] = sum/max_j X[i, j]: row tiles of X in SPM (double-buffered, whole rows when they
    fit), the vector unit folds each row into one vector of partial results (rfactor over the
    lanes), the scalar unit reduces those few lanes, the results leave SPM by DMA."""
    s = sch.get_sblock("S")
    dtype = wl.inputs[0].dtype
    rows, cols = loop_extents(sch, s)
    eb = elem_bytes(dtype)
    lanes = vector_lanes(spec, dtype)
    align = max(1, spec.scope(SPM).alignment // eb)
    budget = tile_budget(spec, 2) // eb
    # Whole rows when they fit, but at least one 16 B unit of results per tile (the burst
    # granularity of the write-back); very long rows are cut into column tiles instead.
    tr = divisor_tile(rows, max(align, budget // cols), align)
    tc = divisor_tile(cols, max(lanes, budget // tr), math.lcm(lanes, align))
    lanes = divisor_tile(tc, lanes)
    i, r = sch.get_loops(s)
    io, ii = sch.split(i, [None, tr])
    ro, rt = sch.split(r, [None, tc])
    rto, rl = sch.split(rt, [None, lanes])
    sch.reorder(io, ro, ii, rto, rl)
    part = sch.rfactor(rl, factor_axis=1)  # part[i, l] = reduce_{ro, rto} X[i, ..l]
    sch.set_scope(part, 0, SPM)
    p_io, p_ro = sch.get_loops(part)[:2]
    sch.reverse_compute_at(s, p_io, preserve_unit_loops=True)  # scalar tail per row tile
    stage_write(sch, s, p_io, SPM)
    x = sch.cache_read(part, 0, SPM)
    sch.compute_at(x, p_ro, preserve_unit_loops=True)
    sch.annotate(x, DOUBLE, 0)
    sch.vectorize(sch.get_loops(part)[-1])  # before decompose: the init inherits it
    sch.decompose_reduction(part, p_ro)
    fold_lanes(sch, s, spec)
