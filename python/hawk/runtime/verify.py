"""verify: the hardware constraints of an NPU checked on a kernel, as device-style faults.

Pure: the same kernel and spec always give the same faults, nothing is written.
"""

from __future__ import annotations

import tvm
import tvm_ffi
from tvm import sym, tirx

from ..npu import manual
from ..npu.intrinsics import find_intrinsic
from ..npu.spec import HardwareSpec, Scope
from .fault import Fault
from .program import MATH_OPS, Access, Instr, Loop, Program, ProgramError, Region, read_program
from .units import Geometry, compute_unit, free_vars, geometry, intrinsic_tiles, own_loop_counts

__all__ = ["MATH_OPS", "verify", "verify_program"]


def verify(kernel, spec: HardwareSpec) -> list[Fault]:
    """All faults of ``kernel`` (a scheduled PrimFunc or IRModule) on ``spec``. Never raises:
    IR that cannot be read or checked is a MALFORMED_IR fault."""
    try:
        return verify_program(read_program(kernel), spec)
    except ProgramError as err:
        reason = str(err)
    except Exception as err:  # noqa: BLE001 - any IR at all gets an answer
        reason = f"{type(err).__name__}: {str(err).strip()[:200]}"
    return [_fault(spec, manual.MALFORMED_IR, "-", "-", observed=(("reason", reason),))]


def verify_program(program: Program, spec: HardwareSpec) -> list[Fault]:
    checker = _Checker(program, spec)
    checker.params()
    checker.foreign_calls()
    checker.capacity()
    for instr in program.instrs():
        checker.instr(instr)
    checker.fractal_buffers()
    return checker.faults


def _fault(spec, code, pipe, block, **fields) -> Fault:
    return Fault(code=code, id=spec.fault(code).id, pipe=pipe, block=block, **fields)


def dma_pipe(spec: HardwareSpec, src: str, dst: str) -> str | None:
    path = spec.path(src, dst)
    return path.pipe if path else None


def _align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _elem_bytes(dtype: str) -> int:
    return max(1, tvm.runtime.DataType(dtype).bits // 8)


class _Checker:
    def __init__(self, program: Program, spec: HardwareSpec):
        self.program = program
        self.spec = spec
        self.faults: list[Fault] = []
        self.own = own_loop_counts(program)
        self.writer_pipe: dict = {}

    def add(self, code, pipe, block, **fields):
        self.faults.append(_fault(self.spec, code, pipe, block, **fields))

    # --- kernel --------------------------------------------------------------------------
    def params(self) -> None:
        """Parameters are the tensors in off-chip memory: one declared on chip skips its DMA."""
        for param in self.program.func.params:
            scope = param.scope() if hasattr(param, "scope") else "-"
            if scope != self.spec.offchip:
                self.add(manual.UNIT_SCOPE, "-", "root", buffer=param.name, scope=scope,
                         observed=(("param", param.name),))

    def foreign_calls(self) -> None:
        """Non-math calls outside the leaf blocks (those in a leaf are reported with its unit)."""
        in_leaves = set().union(*(i.calls for i in self.program.instrs()))
        for call in sorted(self.program.foreign_calls - in_leaves):
            self.add(manual.UNKNOWN_INSTR, "-", "root", observed=(("call", call),))

    # --- units ------------------------------------------------------------------------
    def compute_unit(self, instr: Instr):
        return compute_unit(instr, self.spec)

    def instr(self, instr: Instr) -> None:
        self.bounds(instr)
        if instr.kind == "intrin":
            self.intrinsic(instr)
            return
        if instr.kind == "copy":
            src, dst = instr.reads[0], instr.writes[0]
            if src.scope != dst.scope:
                self.copy(instr, src, dst)
                return
        self.compute(instr)

    def compute(self, instr: Instr) -> None:
        unit = self.compute_unit(instr)
        if unit is None:
            self.add(manual.UNKNOWN_INSTR, "-", instr.block, observed=(("unit", "none"),))
            return
        for call in sorted(instr.calls - MATH_OPS):
            self.add(manual.UNKNOWN_INSTR, unit.pipe, instr.block, observed=(("call", call),))
        seen = set()
        for acc in instr.reads + instr.writes:
            allowed = unit.writes if acc.write else unit.reads
            key = (acc.name, acc.write)
            if acc.scope not in allowed and key not in seen:
                seen.add(key)
                self.add(manual.UNIT_SCOPE, unit.pipe, instr.block, buffer=acc.name, scope=acc.scope,
                         observed=(("unit", unit.name), ("access", "write" if acc.write else "read")))
        for dtype in sorted(instr.dtypes):
            if dtype not in unit.dtypes and dtype != "bool":
                self.add(manual.UNIT_DTYPE, unit.pipe, instr.block,
                         observed=(("unit", unit.name), ("dtype", dtype)))

    def intrinsic(self, instr: Instr) -> None:
        intrin = find_intrinsic(self.spec, instr.intrinsic)
        if intrin is None:
            self.add(manual.UNKNOWN_INSTR, "-", instr.block, observed=(("instr", instr.intrinsic),))
            return
        unit = self.spec.unit(intrin.unit)
        if len(instr.operands) != len(intrin.operand_scopes):
            self.add(manual.UNKNOWN_INSTR, unit.pipe, instr.block,
                     observed=(("instr", instr.intrinsic), ("operands", len(instr.operands))))
            return
        tiles, differs = intrinsic_tiles(instr, intrin)
        if differs.startswith("tile"):
            self.add(manual.FRACTAL_MISMATCH, unit.pipe, instr.block,
                     buffer=instr.operands[-1].buffer.name, scope=instr.operands[-1].buffer.scope(),
                     observed=(("instr", instr.intrinsic), ("tile", differs.split()[1])))
        elif differs:
            self.add(manual.UNKNOWN_INSTR, unit.pipe, instr.block,
                     observed=(("instr", instr.intrinsic), ("differs", differs)))
        for operand, scope in zip(instr.operands, intrin.operand_scopes):
            actual = operand.buffer.scope()
            allowed = unit.reads + unit.writes
            if actual != scope or actual not in allowed:
                self.add(manual.UNIT_SCOPE, unit.pipe, instr.block, buffer=operand.buffer.name,
                         scope=actual, observed=(("unit", unit.name),))
                continue
            self.fractal_tile(instr, unit.pipe, operand.buffer, operand.begin, operand.extent)

    # --- DMA --------------------------------------------------------------------------
    def copy(self, instr: Instr, src: Access, dst: Access) -> None:
        path = self.spec.path(src.scope, dst.scope)
        if path is None:
            self.add(manual.ILLEGAL_PATH, "DMA", instr.block, buffer=dst.name, scope=dst.scope,
                     observed=(("src", src.scope), ("dst", dst.scope)))
            return
        if instr.cast and not path.convert:
            self.add(manual.UNIT_DTYPE, path.pipe, instr.block, buffer=dst.name,
                     observed=(("src_dtype", src.dtype), ("dst_dtype", dst.dtype)))
        own = instr.loops[len(instr.loops) - self.own.get(id(instr), 0):]
        loops = [lp for lp in own if lp.extent > 1]
        sides = [(src, geometry(src, loops)), (dst, geometry(dst, loops))]
        for acc, geo in sides:
            if geo is None or not geo.contiguous:
                self.add(manual.DMA_DISCONTIG, path.pipe, instr.block, buffer=acc.name, scope=acc.scope,
                         observed=(("stride", geo.inner_stride if geo else "non-affine"),))
                return
        run = min(sides[0][1].run, sides[1][1].run)
        # Where the block's predicate (both sides) or a padding guard (the read side) can
        # stop the transfer, a burst ends there: a predicated tail is a burst of its own.
        pred = _cut_vars(instr.predicate, instr.loops)
        cuts = (pred | _cut_vars(src.guard, instr.loops), pred)
        sides = [(acc, geometry(acc, loops, cut) if cut else geo) for (acc, geo), cut in zip(sides, cuts)]
        # One DMA instruction moves a 2-D transfer (bursts x burst length); loops
        # further out issue it again.
        transfer = tuple(loops[-2:])
        # Reading out of a fractal scope (the accumulator's write-out) may stop inside a
        # fractal, as a padded GEMM's crop does; writing into one must fill whole fractals.
        crop = not self.spec.scope(dst.scope).fractal
        for acc, geo in sides:
            scope = self.spec.scope(acc.scope)
            if scope.fractal:
                extents = _region_extents(acc, transfer)
                begin = _region_begin(acc, transfer)
                self.fractal_tile(instr, path.pipe, acc.buffer, begin, extents,
                                  partial=crop and acc is src)
                continue
            self.alignment(instr, path.pipe, acc, geo, min(run, geo.run), scope)

    def alignment(self, instr, pipe, acc: Access, geo: Geometry, run: int, scope: Scope) -> None:
        if scope.alignment <= 1:
            return
        nbytes = _elem_bytes(acc.dtype)
        burst = run * nbytes
        first = _lowest(geo.base, instr.loops) * nbytes
        if not _multiple_of(geo.base * nbytes, scope.alignment, instr.loops):
            addr = _first_misaligned(geo.base, nbytes, scope.alignment, instr.loops)
        elif burst % scope.alignment:
            addr = first + burst
        else:
            bad = [s for s in geo.strides if (s * nbytes) % scope.alignment]
            if not bad:
                return
            addr = first + bad[0] * nbytes
        self.add(manual.DMA_MISALIGN, pipe, instr.block, buffer=acc.name, scope=acc.scope,
                 address=(addr, addr + burst), observed=(("burst_bytes", burst),))

    # --- fractals ---------------------------------------------------------------------
    def fractal_tile(self, instr, pipe, buffer, begin, extents, *, partial: bool = False) -> None:
        scope = self.spec.scope(buffer.scope())
        if scope is None or not scope.fractal:
            return
        fr = scope.fractal_for(str(buffer.dtype))
        tile = _last_two(extents)
        if fr is None:
            self.add(manual.FRACTAL_MISMATCH, pipe, instr.block, buffer=buffer.name, scope=scope.name,
                     observed=(("dtype", str(buffer.dtype)), ("tile", "x".join(map(str, tile)))))
            return
        offsets = _last_two(begin)
        misplaced = [
            o for o, f in zip(offsets, (fr.rows, fr.cols)) if not _multiple_of(o, f, instr.loops)
        ]
        if (not partial and (tile[0] % fr.rows or tile[1] % fr.cols)) or misplaced:
            self.add(manual.FRACTAL_MISMATCH, pipe, instr.block, buffer=buffer.name, scope=scope.name,
                     observed=(("tile", f"{tile[0]}x{tile[1]}"), ("dtype", str(buffer.dtype))))

    def fractal_buffers(self) -> None:
        for region in self.program.regions():
            for alloc in region.allocs:
                scope = self.spec.scope(alloc.scope)
                if scope is None or not scope.fractal:
                    continue
                shape = [int(d) for d in alloc.buffer.shape]
                self.fractal_tile_shape(region.block, alloc.buffer, shape)

    def fractal_tile_shape(self, block, buffer, shape) -> None:
        scope = self.spec.scope(buffer.scope())
        fr = scope.fractal_for(str(buffer.dtype))
        tile = _last_two(shape)
        if fr is None or tile[0] % fr.rows or tile[1] % fr.cols:
            self.add(manual.FRACTAL_MISMATCH, "-", block or "root", buffer=buffer.name, scope=scope.name,
                     observed=(("tile", f"{tile[0]}x{tile[1]}"), ("dtype", str(buffer.dtype))))

    # --- capacity ---------------------------------------------------------------------
    def capacity(self) -> None:
        for scope in self.spec.onchip_scopes:
            peak, live, block = _peak(self.program.body, scope)
            if peak > scope.capacity:
                self.add(manual.SCOPE_OVERFLOW, "-", block or "root", buffer=",".join(live),
                         scope=scope.name, address=(0, peak),
                         observed=(("bytes", peak), ("capacity", scope.capacity)))
        for region in self.program.regions():
            for alloc in region.allocs:
                if self.spec.scope(alloc.scope) is None:
                    self.add(manual.UNIT_SCOPE, "-", region.block or "root", buffer=alloc.buffer.name,
                             scope=alloc.scope, observed=(("reason", "undeclared scope"),))

    # --- bounds -----------------------------------------------------------------------
    def bounds(self, instr: Instr) -> None:
        """Accesses outside their buffer, on any iteration that runs: the loops bound the
        indices, and the block's predicate and the guards around an access narrow them."""
        checks = []
        if instr.kind == "intrin":
            for op in instr.operands:
                for d, (b, e) in enumerate(zip(op.begin, op.extent)):
                    checks.append((op.buffer, d, b, b + (e - 1), (), instr.predicate))
        else:
            for acc in instr.reads + instr.writes:
                cond = _conjunction(instr.predicate, acc.guard)
                if len(acc.indices) != len(acc.buffer.shape):
                    raise ProgramError(f"block {instr.block}: {acc.name} indexed with "
                                       f"{len(acc.indices)} of {len(acc.buffer.shape)} dims")
                for d, idx in enumerate(acc.indices):
                    checks.append((acc.buffer, d, idx, idx, acc.loops, cond))
        reported, analyzers = set(), {}
        for buf, d, lo_expr, hi_expr, inner, cond in checks:
            if buf.name in reported:
                continue
            extent = buf.shape[d]
            if not isinstance(extent, tirx.IntImm):
                continue
            key = tuple(map(id, inner))
            if key not in analyzers:
                analyzers[key] = _bound_loops(instr.loops + tuple(inner))
            ana = analyzers[key]
            lo = ana.const_int_bound(ana.simplify(lo_expr)).min_value
            hi = ana.const_int_bound(ana.simplify(hi_expr)).max_value
            if lo >= 0 and hi < int(extent):
                continue
            if cond is not None:
                with ana.constraint_scope(cond):
                    if ana.can_prove(lo_expr >= 0) and ana.can_prove(hi_expr < extent):
                        continue
            reported.add(buf.name)
            nbytes = _elem_bytes(str(buf.dtype))
            self.add(manual.OUT_OF_BOUNDS, self.pipe_of(instr), instr.block, buffer=buf.name,
                     scope=buf.scope(), observed=(("dim", d), ("index", f"[{lo},{hi}]"),
                                                  ("extent", int(extent)), ("elem_bytes", nbytes)))

    def pipe_of(self, instr: Instr) -> str:
        if instr.kind == "intrin":
            intrin = find_intrinsic(self.spec, instr.intrinsic)
            return self.spec.unit(intrin.unit).pipe if intrin else "-"
        if instr.kind == "copy":
            pipe = dma_pipe(self.spec, instr.reads[0].scope, instr.writes[0].scope)
            if pipe:
                return pipe
        unit = self.compute_unit(instr)
        return unit.pipe if unit else "-"


def _conjunction(a, b):
    if a is None:
        return _unhinted(b)
    return _unhinted(a) if b is None else tirx.And(_unhinted(a), _unhinted(b))


def _unhinted(cond):
    """``cond`` without ``likely`` hints, which the analyzer cannot see through."""
    if cond is None:
        return None

    def strip(call):
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "prim.likely" and len(call.args) == 1:
            return call.args[0]
        return call

    return tvm_ffi.structural_map(cond, [(tvm.ir.Call, strip)])


def _cut_vars(cond, loops) -> frozenset:
    """The loop vars a condition depends on, unless the loops alone make it always true."""
    cond = _unhinted(cond)
    if cond is None:
        return frozenset()
    ana = _bound_loops(loops)
    if ana.can_prove(cond):
        return frozenset()
    return frozenset(v for v in free_vars(cond) if any(v.same_as(lp.var) for lp in loops))


def _peak(nodes, scope: Scope):
    """Peak live bytes of ``scope`` over sequential ``nodes``: (bytes, buffers, block)."""
    best = (0, [], "")
    for node in nodes:
        if isinstance(node, Loop):
            cand = _peak(node.body, scope)
        elif isinstance(node, Region):
            own = [a for a in node.allocs if a.scope == scope.name]
            mine = sum(_align_up(a.bytes, scope.alignment) * (2 if a.double else 1) for a in own)
            inner, live, block = _peak(node.body, scope)
            names = [a.buffer.name for a in own] + live
            cand = (mine + inner, names, block or (node.block if own else ""))
        else:
            continue
        if cand[0] > best[0]:
            best = cand
    return best


def _region_extents(acc: Access, own: tuple[Loop, ...]) -> list[int]:
    ana = sym.Analyzer()
    for lp in own:
        ana.bind(lp.var, tvm.ir.Range(0, lp.extent))
    out = []
    for idx in acc.indices:
        bound = ana.const_int_bound(ana.simplify(idx - _at_zero(idx, own)))
        out.append(int(bound.max_value - bound.min_value + 1))
    return out


def _at_zero(idx, own):
    """``idx`` at the first iteration of the instruction's own loops."""
    ana = sym.Analyzer()
    for lp in own:
        ana.bind(lp.var, tvm.ir.Range(0, 1))
    return ana.simplify(idx)


def _region_begin(acc: Access, own: tuple[Loop, ...]):
    return [_at_zero(idx, own) for idx in acc.indices]


def _last_two(values):
    values = list(values)
    while len(values) > 2 and _is_one(values[0]):
        values = values[1:]
    if len(values) == 1:
        return (1, values[0])
    return tuple(values[-2:])


def _is_one(v) -> bool:
    return (isinstance(v, int) and v == 1) or (isinstance(v, tirx.IntImm) and int(v) == 1)


def _bound_loops(loops):
    ana = sym.Analyzer()
    for lp in loops:
        ana.bind(lp.var, tvm.ir.Range(0, lp.extent))
    return ana


def _lowest(expr, loops) -> int:
    return int(_bound_loops(loops).const_int_bound(expr).min_value)


def _first_misaligned(base, nbytes: int, align: int, loops) -> int:
    """Byte offset of the first burst start that breaks the alignment."""
    coeffs = sym.detect_linear_equation(base, [lp.var for lp in loops])
    if len(coeffs) == 0:
        return _lowest(base, loops) * nbytes
    const = coeffs[-1]
    start = int(const) * nbytes if isinstance(const, tirx.IntImm) else 0
    if start % align:
        return start
    for c in coeffs[:-1]:
        if isinstance(c, tirx.IntImm) and (int(c) * nbytes) % align:
            return start + int(c) * nbytes
    return start


def _multiple_of(expr, factor: int, loops) -> bool:
    if isinstance(expr, int):
        return expr % factor == 0
    ana = sym.Analyzer()
    expr = ana.simplify(expr)
    if isinstance(expr, tirx.IntImm):
        return int(expr) % factor == 0
    coeffs = sym.detect_linear_equation(expr, [lp.var for lp in loops])
    if len(coeffs) == 0:
        return False
    return all(isinstance(c, tirx.IntImm) and int(c) % factor == 0 for c in coeffs)
