"""Vendor kernels for davinci-like: cube GEMMs through L1/L0 and vector kernels in UB."""

from __future__ import annotations

from tvm import s_tir, sym

from ...ir import Workload
from ...npu import HardwareSpec, intrinsics
from . import vendor_kernel
from .common import (
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
