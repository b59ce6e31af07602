"""Helpers shared by the vendor schedules: tile choice and on-chip staging."""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from ...npu import HardwareSpec, intrinsics

DOUBLE = "double_buffer_scope"


def divisor_tile(extent: int, limit: int, multiple: int = 1) -> int:
    """The largest divisor of ``extent`` that is <= ``limit`` and a multiple of ``multiple``
    (falls back to the largest plain divisor when no multiple divides)."""
    best = 0
    for t in range(1, min(extent, max(limit, 1)) + 1):
        if extent % t == 0 and t % multiple == 0:
            best = t
    if best:
        return best
    return max(t for t in range(1, min(extent, max(limit, 1)) + 1) if extent % t == 0)


def elem_bytes(dtype) -> int:
    return tvm.runtime.DataType(str(dtype)).bits // 8


def loop_extents(sch: s_tir.Schedule, block) -> list[int]:
    return [int(sch.get(lp).extent) for lp in sch.get_loops(block)]


def has_block(sch: s_tir.Schedule, name: str) -> bool:
    try:
        sch.get_sblock(name)
        return True
    except s_tir.ScheduleError:
        return False


def vector_lanes(spec: HardwareSpec, dtype) -> int:
    """Elements of one vector repeat (the vector ISA width)."""
    unit = spec.unit_of_kind("vector")
    return max(1, unit.repeat_bytes // elem_bytes(dtype))


def vectorize_inner(sch: s_tir.Schedule, block, spec: HardwareSpec, dtype) -> None:
    """Put ``block`` on the vector unit: vectorize its innermost loop in repeat-sized pieces."""
    inner = sch.get_loops(block)[-1]
    extent = int(sch.get(inner).extent)
    lanes = divisor_tile(extent, vector_lanes(spec, dtype))
    if lanes < extent:
        inner = sch.split(inner, [None, lanes])[1]
    sch.vectorize(inner)


def stage_reads(sch, block, at, scope, *, double=True, indices=None):
    """cache_read every input of ``block`` into ``scope`` at loop ``at``."""
    n = len(sch.get(block).reads)
    staged = []
    for k in indices if indices is not None else range(n):
        c = sch.cache_read(block, k, scope)
        sch.compute_at(c, at, preserve_unit_loops=True)
        if double:
            sch.annotate(c, DOUBLE, 0)
        staged.append(c)
    return staged


def stage_write(sch, block, at, scope, *, double=True):
    """cache_write the output of ``block`` into ``scope`` and store it at loop ``at``;
    ``double`` ping-pongs the staged tile so computing the next tile overlaps the store."""
    w = sch.cache_write(block, 0, scope)
    sch.reverse_compute_at(w, at, preserve_unit_loops=True)
    if double:
        sch.annotate(block, DOUBLE, 0)
    return w


def dma_tile_bytes(spec: HardwareSpec, src: str, dst: str, efficiency: float = 0.8) -> int:
    """Bytes one transfer on ``src -> dst`` should move so the path's fixed latency costs
    at most ``1 - efficiency`` of the transfer time (tiles much larger only hurt pipelining)."""
    path = spec.path(src, dst)
    return max(1, int(path.latency * path.bandwidth * efficiency / (1 - efficiency)))


def fit_tile(extent: int, unit_bytes: int, budget: int, *, limit: int | None = None,
             multiple: int = 1, min_tiles: int = 2) -> int:
    """A divisor of ``extent`` whose ``unit_bytes`` per element fit ``budget``, at most
    ``limit``, preferring multiples of ``multiple`` and at least ``min_tiles`` tiles
    (so double-buffered loads have something to overlap with)."""
    cap = max(1, budget // max(1, unit_bytes))
    if limit is not None:
        cap = min(cap, max(1, limit))
    if extent >= multiple * min_tiles:
        cap = min(cap, extent // min_tiles)
    return divisor_tile(extent, cap, multiple)


def iter_loops(sch: s_tir.Schedule, block) -> list:
    """The loops of ``block`` that compute_at / reverse_compute_at generated, one per block
    iter var in iter-var order (valid right after those primitives with unit loops kept)."""
    n = len(sch.get(block).iter_vars)
    return list(sch.get_loops(block)[-n:])


def fold_lanes(sch: s_tir.Schedule, block, spec: HardwareSpec) -> bool:
    """Fold a cross-lane reduction block (out[i] op= part[i, lane]) with the vector unit's
    reduce intrinsic, one instruction per row; False (left to the scalar unit) when the
    spec has no reduce form for its op, dtype and lane count."""
    blk = sch.get(block)
    value = blk.body.value
    op = {tirx.Max: "reduce_max", tirx.Add: "reduce_sum"}.get(type(value))
    dtype = str(blk.writes[0].source.dtype)
    intrin = next((i for i in intrinsics(spec) if i.op == op and i.shape.in_dtype == dtype), None)
    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body
    if intrin is None or not isinstance(realize, s_tir.SBlockRealize):
        return False
    by_var = {sch.get(lp).loop_var: lp for lp in loops}
    kinds = [int(iv.iter_type) for iv in blk.iter_vars]
    reduce = [by_var.get(v) for kind, v in zip(kinds, realize.iter_values) if kind == REDUCE_ITER]
    if len(reduce) != 1 or reduce[0] is None or int(sch.get(reduce[0]).extent) != intrin.shape.k:
        return False
    used = set()
    for v in realize.iter_values:
        tvm_ffi.structural_walk(v, [(tirx.Var, used.add)])
    chain = [loops[-1]]  # the perfect nest right around the block
    for lp in reversed(loops[:-1]):
        if not sch.get(lp).body.same_as(sch.get(chain[0])):
            break
        chain.insert(0, lp)
    if reduce[0] not in chain:
        return False
    own = [lp for lp in chain if sch.get(lp).loop_var in used and lp != reduce[0]]
    sch.reorder(*own, reduce[0])  # the lane loop innermost
    sch.decompose_reduction(block, reduce[0])
    sch.tensorize(reduce[0], intrin.name)
    return True


REDUCE_ITER = 2  # IterVar.CommReduce


def restrict_loop(sch: s_tir.Schedule, loop_rv, start: int, extent: int) -> None:
    """Run ``loop`` over iterations [start, start + extent) only (rebased to 0): the zero
    fill of a padded tile restricted to its pads (the rest is overwritten by the valid data
    right after -- dead-store elimination, which no schedule primitive offers)."""
    loop = sch.get(loop_rv)
    var = loop.loop_var
    if start == 0 and extent == int(loop.extent):
        return

    def shift(expr):
        return tvm_ffi.structural_map(expr, [(tirx.Var, lambda v: v + start if v.same_as(var) else v)])

    blocks = {}

    def rebuild(stmt):
        if isinstance(stmt, tirx.For):
            return tirx.For(stmt.loop_var, stmt.min, stmt.extent, stmt.kind, rebuild(stmt.body),
                            stmt.thread_binding, stmt.annotations)
        if isinstance(stmt, s_tir.SBlockRealize):
            blocks[stmt.block] = stmt.block
            return s_tir.SBlockRealize([shift(v) for v in stmt.iter_values], shift(stmt.predicate),
                                       stmt.block)
        raise s_tir.ScheduleError(f"restrict_loop: unexpected {type(stmt).__name__} under the loop")

    new = tirx.For(var, loop.min, extent, loop.kind, rebuild(loop.body), loop.thread_binding,
                   loop.annotations)
    sch.state.replace(sch.get_sref(loop_rv), new, blocks)
