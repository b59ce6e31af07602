"""Deliberately broken kernels, one per fault code, each the kind of mistake a
hardware-agnostic kernel author makes."""

from __future__ import annotations

import dataclasses

import tvm
from tvm import s_tir, te
from tvm.script import tirx as T

from hawk.bench.reference import reference_kernel
from hawk.bench.reference.common import stage_write, vectorize_inner
from hawk.ir import from_te, ops
from hawk.npu import manual

UB, L1 = "global.npu.ub", "global.npu.l1"


def elementwise_tiled(wl, spec, tile_rows, tile_cols, *, stage=UB, extra=None):
    """Stage every input into ``stage`` per (tile_rows, tile_cols) tile, compute vectorised."""
    sch = s_tir.Schedule(wl.module())
    blk = sch.get_output_blocks("root")[0]
    i, j = sch.get_loops(blk)
    io, ii = sch.split(i, [None, tile_rows])
    jo, ji = sch.split(j, [None, tile_cols])
    sch.reorder(io, jo, ii, ji)
    for k in range(len(sch.get(blk).reads)):
        c = sch.cache_read(blk, k, stage)
        sch.compute_at(c, jo)
        if extra:
            extra(sch, c)
    stage_write(sch, blk, jo, UB, double=False)
    vectorize_inner(sch, blk, spec, wl.outputs[0].dtype)
    return sch.mod


def scope_overflow(spec):
    wl = ops.unary("silu", "silu", 256, 1024)
    return wl, elementwise_tiled(wl, spec, 256, 1024)  # 1 MiB tiles in a 192 KiB UB


def illegal_path(spec):
    wl = ops.unary("silu", "silu", 256, 1024)

    def via_l1(sch, ub_copy):
        l1 = sch.cache_read(ub_copy, 0, L1)  # global -> l1 -> ub: no l1 -> ub path
        sch.compute_at(l1, sch.get_loops(ub_copy)[1])

    return wl, elementwise_tiled(wl, spec, 8, 1024, extra=via_l1)


def unit_scope(spec):
    wl = ops.unary("silu", "silu", 256, 1024)
    sch = s_tir.Schedule(wl.module())
    vectorize_inner(sch, sch.get_sblock("Y"), spec, "float32")  # vector unit straight on global
    return wl, sch.mod


def dma_misalign(spec):
    wl = ops.unary("silu", "silu", 64, 96)
    return wl, elementwise_tiled(wl, spec, 8, 12)  # 48-byte bursts in a 32-byte-aligned UB


def dma_discontig(spec):
    wl = ops.transpose("transpose", 64, 128)
    sch = s_tir.Schedule(wl.module())
    y = sch.get_sblock("Y")
    j, i = sch.get_loops(y)
    jo, ji = sch.split(j, [None, 8])
    x_ub = sch.cache_read(y, 0, UB)
    sch.compute_at(x_ub, jo)  # stages X[:, 8 columns]: rows of 8 contiguous, fine
    stage_write(sch, y, jo, UB)  # Y rows of 64 contiguous floats per column block: legal
    # the load walks X down a column: element stride 128 in global
    sch.reorder(*sch.get_loops(x_ub)[-2:][::-1])
    return wl, sch.mod


def fractal_mismatch(spec):
    wl = ops.matmul("mm", 64, 64, 64)
    kernel = reference_kernel(wl, spec)
    sch = s_tir.Schedule(kernel)
    copy = sch.get_sblock("A_global.npu.l1_global.npu.l0a")
    rows = sch.get_loops(copy)[-2]
    sch.split(rows, [None, 8])  # move the L0A tile in strips of 8 rows: half fractals
    return wl, sch.mod


def unit_dtype(spec):
    X = te.placeholder((128, 256), "float32", name="X")
    Y = te.compute((128, 256), lambda i, j: te.exp(X[i, j].astype("float64")).astype("float32"), name="Y")
    wl = from_te("exp64", "elementwise", [X, Y], op="unary")
    return wl, elementwise_tiled(wl, spec, 8, 256)


@T.prim_func(s_tir=True)
def _off_by_one_row(X: T.Buffer((64, 256), "float32"), Y: T.Buffer((64, 256), "float32")):
    for i_0 in range(8):
        with T.sblock("tile"):
            X_ub = T.sblock_alloc_buffer((8, 256), scope="global.npu.ub")
            Y_ub = T.sblock_alloc_buffer((8, 256), scope="global.npu.ub")
            for ax0, ax1 in T.grid(8, 256):
                with T.sblock("X_ub"):
                    X_ub[ax0, ax1] = X[i_0 * 8 + ax0 + 1, ax1]  # the last tile reads row 64
            for i_1, j_0 in T.grid(8, 4):
                for j_1 in T.vectorized(64):
                    with T.sblock("Y"):
                        Y_ub[i_1, j_0 * 64 + j_1] = X_ub[i_1, j_0 * 64 + j_1] * T.float32(2)
            for ax0, ax1 in T.grid(8, 256):
                with T.sblock("Y_ub"):
                    Y[i_0 * 8 + ax0, ax1] = Y_ub[ax0, ax1]


def out_of_bounds(spec):
    X = te.placeholder((64, 256), "float32", name="X")
    Y = te.compute((64, 256), lambda i, j: X[i, j] * 2.0, name="Y")
    return from_te("double", "elementwise", [X, Y], op="unary"), _off_by_one_row


def unknown_instr(spec):
    """A davinci-like cube kernel run on a core whose cube only has the int8 form."""
    wl = ops.matmul("mm", 64, 64, 64)
    kernel = reference_kernel(wl, spec)
    cube = spec.unit("cube")
    int8_only = dataclasses.replace(cube, shapes=tuple(s for s in cube.shapes if s.in_dtype == "int8"))
    older = dataclasses.replace(spec, units=tuple(int8_only if u is cube else u for u in spec.units))
    return wl, kernel, older


def malformed_ir(spec):
    wl = ops.unary("silu", "silu", 64, 64)
    mod = tvm.IRModule({"main": wl.func, "second": wl.func})
    return wl, mod


BROKEN = {
    manual.SCOPE_OVERFLOW: scope_overflow,
    manual.ILLEGAL_PATH: illegal_path,
    manual.UNIT_SCOPE: unit_scope,
    manual.DMA_MISALIGN: dma_misalign,
    manual.DMA_DISCONTIG: dma_discontig,
    manual.FRACTAL_MISMATCH: fractal_mismatch,
    manual.UNIT_DTYPE: unit_dtype,
    manual.OUT_OF_BOUNDS: out_of_bounds,
    manual.UNKNOWN_INSTR: unknown_instr,
    manual.MALFORMED_IR: malformed_ir,
}

