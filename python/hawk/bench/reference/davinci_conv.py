"""Vendor conv2d for davinci-like: NHWC x HWIO convolution as a GEMM on the cube.

The GEMM view of block ``C``: M = output pixels along a row (``x``, the fractal rows, a few
output rows per M tile), N = output channels (``o``), K = (``rh``, ``rw``, ``rc``) with the
input channels as the fractal K and the kernel taps as outer reduction loops. The weights
stay in L1 for the whole kernel when they fit. Two ways to feed L0A, picked by the width:

* **implicit GEMM** (output width a multiple of the fractal): the input rows of an M tile,
  with their halo, are loaded once into L1; every K step moves the shifted window
  ``X[y + rh, x + rw : x + rw + 16, c : c + 16]`` from L1 into L0A. No im2col exists.
* **padded im2col** (any other width, e.g. 14 in ResNet's 3x3 layers): the cube only takes
  whole 16-row fractals, so every output row is padded to a multiple of 16 pixels. TensorIR
  pads an iteration domain only through ``pad_einsum``, which needs each access indexed by
  plain iterators, so the input read is first ``reindex``-ed into an im2col buffer laid out
  ``[b, y, rh, rw, x, c]`` (pixel and channel last: tensorize matches the 16x16 operand
  against the two innermost axes, so ``x`` may not sit in front of the taps). ``pad_einsum``
  defines the pad pixels as zeros. The im2col tile of an M tile is assembled in L1, because
  neither partial fractals (14 of 16 rows) may be DMA'd into L0A nor can any unit write L1:
  per kernel tap, MTE2 gathers the valid rows from global into UB, the vector unit zeroes
  only the pad rows there (see ``common.restrict_loop``) and MTE3 moves the whole tile to L1. L0C
  holds the padded output; FIX casts whole fractals into UB and MTE3 stores the valid rows
  (a partial fractal may not leave L0C either).

Both keep the structure of ``schedule_gemm``: L1 -> L0A/L0B per K step, double-buffered, L0C
accumulation with ``fill`` + ``mma`` (ping-ponged), the cast of ``D`` on the FIX move.
Supported: input and output channels multiples of the cube fractal (16 for fp16), any
kernel and spatial size; padded widths need a vector unit that handles the input dtype.
"""

from __future__ import annotations

from tvm import s_tir
from tvm.tirx import IndexMap

from ...ir import Workload
from ...npu import HardwareSpec
from . import vendor_kernel
from .common import DOUBLE, divisor_tile, elem_bytes, loop_extents, restrict_loop, vectorize_inner
from .davinci import L0A, L0B, L0C, L1, PRESET, UB, cube_intrinsics


def conv_tiles(spec: HardwareSpec, oh: int, ow: int, co: int, ci: int, shape, in_dtype: str, *,
               whole_rows: bool = False):
    """(ty, tx, tn, tc): an M tile of ty output rows x tx pixels, tn output channels, and tc
    input channels per K step (one kernel tap), sized like ``gemm_tiles``: double-buffered
    operands in L0A/L0B, one accumulator tile in half of L0C."""
    ib = elem_bytes(in_dtype)
    l0a, l0b, l0c = (spec.scope(s).capacity for s in (L0A, L0B, L0C))
    tx = ow if whole_rows else divisor_tile(ow, 128, shape.m)
    ty = divisor_tile(oh, max(1, 128 // tx))
    tn = divisor_tile(co, 256, shape.n)
    while ty * tx * tn * 4 > l0c // 2 and tn > shape.n:
        tn = divisor_tile(co, tn - 1, shape.n)
    while ty * tx * tn * 4 > l0c // 2 and ty > 1:
        ty = divisor_tile(oh, ty - 1)
    tc = divisor_tile(ci, 256, shape.k)
    while (ty * tx * tc * ib * 2 > l0a or tc * tn * ib * 2 > l0b) and tc > shape.k:
        tc = divisor_tile(ci, tc - 1, shape.k)
    return ty, tx, tn, tc


def _check_shape(shape, co: int, ci: int) -> None:
    if ci % shape.k or co % shape.n:
        raise s_tir.ScheduleError(
            f"conv2d reference: input channels ({ci}) must be a multiple of {shape.k} and output "
            f"channels ({co}) of {shape.n} (the cube fractal)")


def _check_padding(spec: HardwareSpec, ow: int, in_dtype: str) -> None:
    vector = spec.unit_of_kind("vector")
    if ow == 1 or vector is None or in_dtype not in vector.dtypes:
        raise s_tir.ScheduleError(
            f"conv2d reference: an output width of {ow} needs padding to whole fractals, which "
            f"needs an output width > 1 and a vector unit that handles {in_dtype} (to zero the "
            "pad rows)")


def _tile_conv(sch, c, ty, tx, tn, tc, shape):
    """Split block ``C`` (b, y, x, o, rh, rw, rc) into M tile / N tile / K step / fractal loops.

    Returns (m_loop, n_loop, k_first, k_step, x_frac): the M-tile loop, the N-tile loop, the
    outermost and innermost K-step loops and the fractal loop to tensorize."""
    b, y, x, o, rh, rw, rc = sch.get_loops(c)
    yo, yi = sch.split(y, [None, ty])
    xo, xi = sch.split(x, [None, tx])
    xi_o, xi_f = sch.split(xi, [None, shape.m])
    oo, oi = sch.split(o, [None, tn])
    oi_o, oi_f = sch.split(oi, [None, shape.n])
    rco, rci = sch.split(rc, [None, tc])
    rci_o, rci_f = sch.split(rci, [None, shape.k])
    sch.reorder(b, yo, xo, oo, rh, rw, rco, yi, xi_o, oi_o, rci_o, xi_f, oi_f, rci_f)
    return xo, oo, rh, rco, xi_f


def _stage_operands(sch, c, k_step, w_resident: bool):
    """Per K step, double-buffered as in schedule_gemm: the A operand (already in L1) into L0A,
    the weights into L0B from L1. The weights are loaded into L1 once for the whole kernel
    when they fit beside the A tiles (``w_resident``), else per K step like B of a GEMM."""
    a0 = sch.cache_read(c, 0, L0A)
    sch.compute_at(a0, k_step, preserve_unit_loops=True)
    sch.annotate(a0, DOUBLE, 0)
    w1 = sch.cache_read(c, 1, L1)
    w0 = sch.cache_read(c, 1, L0B)
    sch.compute_at(w0, k_step, preserve_unit_loops=True)
    sch.annotate(w0, DOUBLE, 0)
    if not w_resident:
        sch.compute_at(w1, k_step, preserve_unit_loops=True)
        sch.annotate(w1, DOUBLE, 0)


def _l1_plan(spec, a_whole: int, a_step: int, tc: int, tn: int, w_bytes: int, ib: int):
    """Where the A side lives in L1 and whether the weights stay resident: (a_at_m_tile,
    w_resident). ``a_whole`` is the A tile of one M tile for the whole K, ``a_step`` its slice
    for one K step; both double-buffered."""
    cap = spec.scope(L1).capacity
    a_at_m_tile = 2 * a_whole + 2 * tc * tn * ib <= cap
    a_l1 = 2 * (a_whole if a_at_m_tile else a_step)
    return a_at_m_tile, a_l1 + w_bytes <= cap


def _finish_cube(sch, c, k_first, x_frac, mma, fill):
    """Zero the L0C tile with ``fill`` before the K loops, accumulate with ``mma``. The tile
    takes half of L0C, so it is ping-ponged: the next tile accumulates while FIX drains."""
    init = sch.decompose_reduction(c, k_first)
    init_name = sch.get(init).name_hint
    sch.tensorize(x_frac, mma)
    sch.tensorize(sch.get_loops(init)[-2], fill)
    sch.annotate(sch.get_sblock(init_name + "_o"), DOUBLE, 0)


def schedule_implicit_gemm(sch: s_tir.Schedule, spec: HardwareSpec, in_dtype: str) -> None:
    """Output width a multiple of the fractal: shifted L1 windows feed L0A directly."""
    mma, fill, shape = cube_intrinsics(spec, in_dtype)
    c = sch.get_sblock("C")
    _, oh, ow, co, kh, kw, ci = loop_extents(sch, c)
    _check_shape(shape, co, ci)
    ty, tx, tn, tc = conv_tiles(spec, oh, ow, co, ci, shape, in_dtype)
    m_loop, n_loop, k_first, k_step, x_frac = _tile_conv(sch, c, ty, tx, tn, tc, shape)
    d = sch.get_sblock("D")
    sch.set_scope(c, 0, L0C)
    sch.reverse_compute_at(d, n_loop, preserve_unit_loops=True)
    # The input tile with its halo, (ty + kh - 1) x (tx + kw - 1) x ci, is loaded once per M
    # tile and reused by every N tile and kernel tap (per K step if it does not fit).
    ib = elem_bytes(in_dtype)
    halo = (ty + kh - 1) * (tx + kw - 1) * ci * ib
    at_m_tile, w_resident = _l1_plan(spec, halo, ty * tx * tc * ib, tc, tn, kh * kw * ci * co * ib, ib)
    x_l1 = sch.cache_read(c, 0, L1)
    sch.compute_at(x_l1, m_loop if at_m_tile else k_step, preserve_unit_loops=True)
    sch.annotate(x_l1, DOUBLE, 0)
    _stage_operands(sch, c, k_step, w_resident)
    _finish_cube(sch, c, k_first, x_frac, mma, fill)


def _col_dims(sch: s_tir.Schedule, c, col_buf) -> list[int]:
    """Which iterators of ``C`` (b, y, x, o, rh, rw, rc) index the im2col buffer, in order
    (unit kernel taps are folded away by TE, so a 1x1 conv has no tap axes)."""
    block = sch.get(c)
    pos = {iv.var.name: i for i, iv in enumerate(block.iter_vars)}
    region = next(r for r in block.reads if r.source.same_as(col_buf))
    return [pos[r.min.name] for r in region.region]


def schedule_padded_im2col(sch: s_tir.Schedule, spec: HardwareSpec, in_dtype: str) -> None:
    """Any output width: rows padded to whole fractals through an im2col tile in L1."""
    mma, fill, shape = cube_intrinsics(spec, in_dtype)
    c = sch.get_sblock("C")
    _, oh, ow, co, kh, kw, ci = loop_extents(sch, c)
    _check_shape(shape, co, ci)
    _check_padding(spec, ow, in_dtype)
    owp = -(-ow // shape.m) * shape.m
    ib = elem_bytes(in_dtype)

    # im2col as a reindex of the input, then pad the output width on C (and on the cast D,
    # so that whole fractals leave L0C and only the crop back to ``ow`` pixels is partial).
    col_src = sch.reindex(c, ("read", 0))
    sch.pad_einsum(c, [1, 1, shape.m, 1, 1, 1, 1])
    col = sch.get_producers(c)[0]
    dims = _col_dims(sch, c, sch.get(col).writes[0].source)
    nd, xd = len(dims), dims.index(2)
    perm = [i for i in range(nd - 1) if i != xd] + [xd, nd - 1]  # [b, y, taps..., x, c]
    sch.transform_layout(col, ("write", 0), IndexMap.from_func(lambda *a: [a[i] for i in perm], ndim=nd))
    sch.compute_inline(col_src)
    sch.compute_inline(sch.get_consumers(c)[0])  # C_pad -> C crop, now read by D directly
    d = sch.get_sblock("D")
    sch.pad_einsum(d, [1, 1, shape.m, 1])
    sch.compute_inline(sch.get_producers(d)[0])  # identity copy of the already padded C
    crop = sch.get_consumers(d)[0]

    ty, tx, tn, tc = conv_tiles(spec, oh, owp, co, ci, shape, in_dtype, whole_rows=True)
    m_loop, n_loop, k_first, k_step, x_frac = _tile_conv(sch, c, ty, tx, tn, tc, shape)
    sch.set_scope(c, 0, L0C)
    sch.set_scope(d, 0, UB)
    sch.reverse_compute_at(d, n_loop, preserve_unit_loops=True)
    sch.reverse_compute_at(crop, n_loop, preserve_unit_loops=True)
    sch.annotate(d, DOUBLE, 0)  # FIX fills one UB tile while MTE3 drains the other
    sch.set_scope(col, 0, L1)
    # The im2col tile of one M tile for the whole K stays in L1 across the N tiles when it
    # fits next to the double-buffered weight tiles; otherwise it is built per K step.
    at_m_tile, w_resident = _l1_plan(spec, ty * owp * kh * kw * ci * ib, ty * owp * tc * ib, tc, tn,
                                     kh * kw * ci * co * ib, ib)
    _stage_operands(sch, c, k_step, w_resident)
    sch.compute_at(col, m_loop if at_m_tile else k_step, preserve_unit_loops=True)
    # L1 is written by DMA only: the tile is assembled in UB one kernel tap (and channel
    # chunk) at a time -- rows gathered from global by MTE2, pad rows zeroed by the vector
    # unit -- and moved to L1 by MTE3.
    to_l1 = sch.cache_write(col, 0, UB)
    loops = sch.get_loops(to_l1)[-nd:]
    cc_ext = int(sch.get(loops[-1]).extent)
    ub_budget = spec.scope(UB).capacity // 8  # one chunk, double-buffered, beside D's tile
    cc = divisor_tile(cc_ext, max(1, ub_budget // (ty * owp * ib)), shape.k)
    c_o, c_i = sch.split(loops[-1], [None, cc])
    b_l, y_l, taps, x_l = loops[0], loops[1], loops[2:-2], loops[-2]
    sch.reorder(*taps, c_o, b_l, y_l, x_l, c_i)
    sch.annotate(to_l1, DOUBLE, 0)
    sch.compute_at(col, c_o, preserve_unit_loops=True)
    col_loops = sch.get_loops(col)[-nd:]
    sch.reorder(*[col_loops[i] for i in perm])  # runs of (pixels x channels) on both sides
    if owp != ow:
        pad = sch.decompose_padding(col, sch.get_loops(col)[-nd])
        restrict_loop(sch, sch.get_loops(pad)[-2], ow, owp - ow)
        sch.fuse(*sch.get_loops(pad)[-nd:])
        vectorize_inner(sch, pad, spec, in_dtype)
    sch.annotate(col, DOUBLE, 0)
    _finish_cube(sch, c, k_first, x_frac, mma, fill)


@vendor_kernel(PRESET, "conv2d")
def conv2d(sch: s_tir.Schedule, wl: Workload, spec: HardwareSpec) -> None:
    """Implicit GEMM when the output width is whole fractals, padded im2col otherwise."""
    in_dtype = wl.inputs[0].dtype
    ow = loop_extents(sch, sch.get_sblock("C"))[2]
    if ow % cube_intrinsics(spec, in_dtype)[2].m == 0:
        schedule_implicit_gemm(sch, spec, in_dtype)
    else:
        schedule_padded_im2col(sch, spec, in_dtype)
