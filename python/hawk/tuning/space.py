"""The MetaSchedule design space for an NPU, written from the api view only.

This is the port a TVM engineer writes so stock MetaSchedule can target a scratchpad NPU:
sketches that stage data into on-chip scopes, with every tile size a
``sample_perfect_tile`` decision that MetaSchedule's evolutionary search, its tile-size
mutator and XGBModel tune. Like every kernel author in Hawk it knows scope names and
intrinsic signatures, not capacities, data paths, alignments or costs: discrete choices it
cannot settle from names (which scope to stage operands through, double buffering, the
output path) become separate sketches, and the runner's verify rejects the illegal ones.

Sketches:
- GEMM (one multiply-accumulate block that a matrix intrinsic's fractal tiles exactly):
  fractal split, sampled outer tiles, operands staged into the intrinsic's scopes (directly
  or through another scope), accumulation in its C scope with the fill intrinsic, the
  epilogue on the vector scope or the result moved out directly.
- everything else: sampled tiles of the output's spatial loops, inputs and intermediates
  in the vector scope.

Compute blocks are vectorised afterwards by the ``VectorizeInner`` postprocessor: loops
made by compute_at change in number with the sampled tiles, and a trace that reads them
could not be replayed with other decisions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from ..npu.intrinsics import INTRIN_ATTR
from ..npu.target import ApiView

ROW_TILE_MAX = 64  # largest sampled inner tile of an outer spatial loop
COL_TILE_MAX = 1024  # of the innermost spatial loop
VECTOR_LANES = 256  # widest vectorised loop the postprocessor makes
FRACTALS_MAX = 16  # fractals per GEMM tile side


@dataclass(frozen=True)
class _Block:
    name: str
    spatial: tuple[bool, ...]  # per iter var, in loop order
    reads: tuple[str, ...]
    writes: tuple[str, ...]
    multiply_accumulate: bool
    pure_cast: bool  # body is out = cast(in): a move the DMA path may convert on

    @property
    def reduces(self) -> bool:
        return not all(self.spatial)


def _blocks(sch: s_tir.Schedule) -> list[_Block]:
    found = []
    for rv in sch.get_child_blocks(sch.get_sblock("root")):
        blk = sch.get(rv)
        value = getattr(blk.body, "value", None)
        found.append(_Block(
            name=blk.name_hint,
            spatial=tuple(int(iv.iter_type) == 0 for iv in blk.iter_vars),
            reads=tuple(r.source.name for r in blk.reads),
            writes=tuple(w.source.name for w in blk.writes),
            multiply_accumulate=isinstance(value, tirx.Add) and isinstance(value.b, tirx.Mul),
            pure_cast=isinstance(value, tirx.Cast) and len(blk.reads) == 1,
        ))
    return found


def _operands_row_major(block) -> bool:
    """A[.., i, k] x B[.., k, j], the layout the mma intrinsic reads (checked here because a
    failed tensorize prints the whole IR to stderr)."""
    *_, i, j, k = (iv.var for iv in block.iter_vars)
    product = block.body.value.b
    loads = [x.value if isinstance(x, tirx.Cast) else x for x in (product.a, product.b)]
    try:
        (a_row, a_col), (b_row, b_col) = (ld.indices[-2:] for ld in loads)
    except (AttributeError, ValueError):
        return False
    return all(x.same_as(y) for x, y in ((a_row, i), (a_col, k), (b_row, k), (b_col, j)))


class NpuSpace:
    """``ScheduleFn`` body: ``space(sch)`` returns the sketches that could be built."""

    def __init__(self, view: ApiView):
        self.view = view
        self.onchip = [s for s in view.scopes if s != "global"]
        vector_scopes = {op[2] for name in view.intrinsics if ".vector." in name
                         for op in view.operands(name).values()}
        # the vector unit's scope is read off its intrinsics; without any, every on-chip scope is a sketch
        self.vector_scopes = sorted(vector_scopes) or self.onchip
        self.mma = {}
        self.fill = {}
        for name in view.intrinsics:
            ops = view.operands(name)
            if ".mma_" in name:
                self.mma.setdefault(ops["A"][0], (name, ops))
            elif ".fill_" in name:
                self.fill.setdefault(ops["C"][0], name)

    def __call__(self, sch: s_tir.Schedule) -> list[s_tir.Schedule]:
        blocks = _blocks(sch)
        params = {p.name for p in sch.mod["main"].params}
        sketches = self._gemm_sketches(sch, blocks, params) or self._staged_sketches(sch, blocks, params)
        return sketches or [sch]  # nothing built: the unscheduled function, which verify rejects

    # --- GEMM ----------------------------------------------------------------------------

    def _gemm_sketches(self, sch, blocks, params) -> list[s_tir.Schedule]:
        macs = [b for b in blocks if b.multiply_accumulate and b.reduces]
        if len(macs) != 1 or blocks[0] is not macs[0]:  # producers before the GEMM: not a GEMM sketch
            return []
        gemm = macs[0]
        rv = sch.get_sblock(gemm.name)
        block = sch.get(rv)
        operand_dtype = str(block.reads[0].source.dtype)
        if operand_dtype not in self.mma:
            return []
        name, ops = self.mma[operand_dtype]
        (fm, fk), fn = ops["A"][1], ops["B"][1][1]
        m, n, k = (int(sch.get(lp).extent) for lp in sch.get_loops(rv)[-3:])
        if m % fm or n % fn or k % fk:  # the intrinsic does not tile it; MetaSchedule has no padding sketch
            return []
        if not _operands_row_major(block):  # e.g. A @ B^T: no layout sketch
            return []
        scopes = {ops[x][2] for x in "ABC"}
        through = [None] + [s for s in self.onchip if s not in scopes]
        out = []
        for choice in itertools.product(through, self.vector_scopes, (False, True), (False, True)):
            s = sch.copy()
            try:
                self._gemm(s, blocks, params, gemm, name, ops, *choice)
            except (RuntimeError, ValueError, TypeError, IndexError):
                continue  # the intrinsic does not tile this GEMM (shape, layout)
            out.append(s)
        return out

    def _gemm(self, s, blocks, params, gemm, mma, ops, stage, vector, double, via_vector):
        (fm, fk), fn = ops["A"][1], ops["B"][1][1]
        bc = s.get_sblock(gemm.name)
        loops = s.get_loops(bc)
        outer, (i, j, k) = loops[:-3], loops[-3:]
        i0, iif = s.split(i, [None, fm])
        j0, jif = s.split(j, [None, fn])
        k0, kif = s.split(k, [None, fk])
        io, iio = s.split(i0, s.sample_perfect_tile(i0, n=2, max_innermost_factor=FRACTALS_MAX))
        jo, jio = s.split(j0, s.sample_perfect_tile(j0, n=2, max_innermost_factor=FRACTALS_MAX))
        ko, kio = s.split(k0, s.sample_perfect_tile(k0, n=2, max_innermost_factor=FRACTALS_MAX))
        s.reorder(*outer, io, jo, ko, iio, jio, kio, iif, jif, kif)
        consumers = blocks[1:]
        epilogue = via_vector or any(not b.pure_cast for b in consumers)
        if not consumers:
            s.reverse_compute_at(s.cache_write(bc, 0, ops["C"][2]), jo)
        else:
            s.set_scope(bc, 0, ops["C"][2])
            self._epilogue(s, consumers, params, gemm, jo, vector if epilogue else None)
        for index, scope in ((0, ops["A"][2]), (1, ops["B"][2])):
            first = s.cache_read(bc, index, stage) if stage else None
            s.compute_at(s.cache_read(bc, index, scope), ko)
            if first is not None:
                s.compute_at(first, ko)
                if double:
                    s.annotate(first, "double_buffer_scope", 0)
        init = s.decompose_reduction(bc, ko)
        s.tensorize(iif, mma)
        acc_dtype = ops["C"][0]
        if acc_dtype in self.fill:
            s.tensorize(s.get_loops(init)[-2], self.fill[acc_dtype])

    def _epilogue(self, s, consumers, params, gemm, at, vector):
        """Consumers of the accumulator under the output tile loop; on the vector scope when
        there is compute (or the sketch routes the result through it), else a direct move."""
        handles = [s.get_sblock(b.name) for b in consumers]
        if vector is None:
            for h in handles:
                s.reverse_compute_at(h, at)
            return
        acc_copy = s.cache_read(handles[0], consumers[0].reads.index(gemm.writes[0]), vector)
        write_back = s.cache_write(handles[-1], 0, vector)
        s.reverse_compute_at(acc_copy, at)
        for h in handles:
            s.reverse_compute_at(h, at)
        s.reverse_compute_at(write_back, at)
        for h in handles[:-1]:
            s.set_scope(h, 0, vector)
        self._stage_inputs(s, consumers, handles, params, at, vector, double=False)

    # --- everything else: staged on the vector scope -------------------------------------

    def _staged_sketches(self, sch, blocks, params) -> list[s_tir.Schedule]:
        out = []
        for vector, double in itertools.product(self.vector_scopes, (False, True)):
            s = sch.copy()
            try:
                self._staged(s, blocks, params, vector, double)
            except (RuntimeError, ValueError, TypeError, IndexError):
                continue
            out.append(s)
        return out

    def _staged(self, s, blocks, params, vector, double):
        last = blocks[-1]
        bo = s.get_sblock(last.name)
        loops = s.get_loops(bo)
        spatial = [lp for lp, sp in zip(loops, last.spatial) if sp]
        reduction = [lp for lp, sp in zip(loops, last.spatial) if not sp]
        # a producer reducing along the rows needs whole rows under the tile loop
        whole_rows = any(b.reduces for b in blocks[:-1])
        tiled = spatial[:-1] if whole_rows and len(spatial) > 1 else spatial
        outers, inners = [], []
        for n, lp in enumerate(tiled):
            cap = COL_TILE_MAX if n == len(spatial) - 1 else ROW_TILE_MAX
            lo, li = s.split(lp, s.sample_perfect_tile(lp, n=2, max_innermost_factor=cap))
            outers.append(lo)
            inners.append(li)
        s.reorder(*outers, *inners, *spatial[len(tiled):], *reduction)
        at = outers[-1]
        s.reverse_compute_at(s.cache_write(bo, 0, vector), at)
        handles = [s.get_sblock(b.name) for b in blocks]
        for h in reversed(handles[:-1]):
            # an intermediate that is also an output cannot move (TVM refuses compute_at of an
            # output block): no sketch, the unscheduled function stands in
            s.compute_at(h, at)
            s.set_scope(h, 0, vector)
        self._stage_inputs(s, blocks, handles, params, at, vector, double)

    # --- shared --------------------------------------------------------------------------

    @staticmethod
    def _stage_inputs(s, blocks, handles, params, at, scope, double):
        staged = set()
        for b, h in zip(blocks, handles):
            for index, src in enumerate(b.reads):
                if src in params and src not in staged:  # one copy per input, for its first reader
                    staged.add(src)
                    copy = s.cache_read(h, index, scope)
                    s.compute_at(copy, at)
                    if double:
                        s.annotate(copy, "double_buffer_scope", 0)



def _is_move(store) -> bool:
    value = store.value
    if isinstance(value, tirx.Cast):
        value = value.value
    return isinstance(value, tvm.ir.expr.TensorLoad)


@derived_object
class VectorizeInner(ms.postproc.PyPostproc):
    """Vectorise the innermost spatial loop of every compute block (up to ``VECTOR_LANES``
    lanes, split off when longer); copies stay DMA, tensorized blocks and reductions stay."""

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch: s_tir.Schedule) -> bool:
        names = []

        def on_block(block):
            # an intrinsic's implementation block (tensorized) is the intrinsic's own: leave it
            if isinstance(block.body, tirx.BufferStore) and not _is_move(block.body) and block.iter_vars \
                    and INTRIN_ATTR not in block.annotations:
                names.append(block.name_hint)

        tvm_ffi.structural_walk(sch.mod["main"].body, [(s_tir.SBlock, on_block)])
        for name in names:
            block = sch.get_sblock(name)
            if int(sch.get(block).iter_vars[-1].iter_type) != 0:
                continue
            inner = sch.get_loops(block)[-1]
            extent = int(sch.get(inner).extent)
            lanes = max(d for d in range(1, min(extent, VECTOR_LANES) + 1) if extent % d == 0)
            if lanes < 2:
                continue
            if lanes < extent:
                inner = sch.split(inner, [None, lanes])[1]
            sch.vectorize(inner)
        return True

    def clone(self) -> VectorizeInner:
        return VectorizeInner()
