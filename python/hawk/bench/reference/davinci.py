"""Vendor kernels for davinci-like: cube GEMMs through L1/L0 and vector kernels in UB."""

from __future__ import annotations

from tvm import s_tir

from ...ir import Workload
from ...npu import HardwareSpec, intrinsics
from . import vendor_kernel
from .common import (
    DOUBLE, divisor_tile, elem_bytes, loop_extents, stage_reads, stage_write, vectorize_inner,
)

PRESET = "davinci-like"
L1, L0A, L0B, L0C, UB = (f"global.npu.{s}" for s in ("l1", "l0a", "l0b", "l0c", "ub"))


def cube_intrinsics(spec: HardwareSpec, in_dtype: str):
    """(mma, fill, shape) of the cube for ``in_dtype``."""
    found = {(i.op, i.shape.in_dtype): i for i in intrinsics(spec)}
    mma = found[("mma", in_dtype)]
    fill = next(i for i in intrinsics(spec) if i.op == "fill" and i.shape.acc_dtype == mma.shape.acc_dtype)
    return mma.name, fill.name, mma.shape


def gemm_tiles(spec: HardwareSpec, m: int, n: int, k: int, shape, in_dtype: str):
    """L0 tiles (tm, tn, tk): double-buffered A/B tiles in L0A/L0B, one C tile in L0C."""
    ib = elem_bytes(in_dtype)
    l0a, l0b, l0c = (spec.scope(s).capacity for s in (L0A, L0B, L0C))
    tm = divisor_tile(m, 128, shape.m)
    tn = divisor_tile(n, 256, shape.n)
    while tm * tn * 4 > l0c // 2 and tn > shape.n:
        tn = divisor_tile(n, tn - 1, shape.n)
    tk = divisor_tile(k, 256, shape.k)
    while (tm * tk * ib * 2 > l0a or tk * tn * ib * 2 > l0b) and tk > shape.k:
        tk = divisor_tile(k, tk - 1, shape.k)
    return tm, tn, tk


def schedule_gemm(sch: s_tir.Schedule, spec: HardwareSpec, in_dtype: str, batch: bool) -> None:
    """Block ``C`` (optionally batched) on the cube; output via FIX (with the cast of ``D``)."""
    mma, fill, shape = cube_intrinsics(spec, in_dtype)
    c = sch.get_sblock("C")
    loops = sch.get_loops(c)
    extents = loop_extents(sch, c)
    b_loop = loops[0] if batch else None
    i, j, k = loops[-3:]
    m, n, kk = extents[-3:]
    tm, tn, tk = gemm_tiles(spec, m, n, kk, shape, in_dtype)
    io, ii = sch.split(i, [None, tm])
    jo, ji = sch.split(j, [None, tn])
    ko, ki = sch.split(k, [None, tk])
    ii_o, ii_f = sch.split(ii, [None, shape.m])
    ji_o, ji_f = sch.split(ji, [None, shape.n])
    ki_o, ki_f = sch.split(ki, [None, shape.k])
    outer = [b_loop] if batch else []
    sch.reorder(*outer, io, jo, ko, ii_o, ji_o, ki_o, ii_f, ji_f, ki_f)
    try:
        d = sch.get_sblock("D")
        sch.set_scope(c, 0, L0C)
        sch.reverse_compute_at(d, jo, preserve_unit_loops=True)
    except s_tir.ScheduleError:
        stage_write(sch, c, jo, L0C)
    for idx, l0 in ((0, L0A), (1, L0B)):
        l1 = sch.cache_read(c, idx, L1)
        near = sch.cache_read(c, idx, l0)
        sch.compute_at(near, ko, preserve_unit_loops=True)
        sch.compute_at(l1, ko, preserve_unit_loops=True)
        sch.annotate(l1, DOUBLE, 0)
        sch.annotate(near, DOUBLE, 0)
    init = sch.decompose_reduction(c, ko)
    sch.tensorize(ii_f, mma)
    init_loops = sch.get_loops(init)
    sch.tensorize(init_loops[-2], fill)


@vendor_kernel(PRESET, "matmul")
def matmul(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    schedule_gemm(sch, spec, wl.inputs[0].dtype, batch=False)


@vendor_kernel(PRESET, "batch_matmul")
def batch_matmul(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    schedule_gemm(sch, spec, wl.inputs[0].dtype, batch=True)


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
