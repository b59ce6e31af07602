"""Helpers shared by the vendor schedules: tile choice and on-chip staging."""

from __future__ import annotations

import tvm
from tvm import s_tir

from ...npu import HardwareSpec

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
    """Elements of one vector repeat (the vector unit's bytes per cycle)."""
    unit = spec.unit_of_kind("vector")
    return max(1, int(unit.throughput) // elem_bytes(dtype))


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
