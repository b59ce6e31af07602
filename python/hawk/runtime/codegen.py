"""codegen: a verified kernel as the NPU program the simulator executes.

Each leaf block becomes one instruction that covers its own loop nest (the loops that wrap
it alone): a DMA on its path's pipe, a matrix instruction group, a vector instruction with
repeats, or a scalar loop. Loops shared by several instructions and the allocation regions
stay as a compact tree. The program can be printed as an assembly-like listing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..npu.intrinsics import find_intrinsic
from ..npu.spec import HardwareSpec
from .program import Instr, Loop, Program, Region, read_program
from .units import compute_unit, geometry, intrinsic_tiles, is_dma, own_loop_counts, own_loops

LOOP, REGION, INSTR = 0, 1, 2
KINDS = ("dma", "matrix", "vector", "scalar")


class CodegenError(ValueError):
    """The kernel has no NPU program (it is illegal on this spec)."""


@dataclass(frozen=True)
class NpuInstr:
    """One static instruction. ``params`` follow the simulator's convention per kind:
    dma (runs, run bytes), matrix (instructions, issues), vector (repeats per op, plain ops,
    transcendental ops, issues), scalar (elements, plain ops, transcendental ops)."""

    block: str
    kind: str
    pipe: int
    cost: int
    params: tuple[int, int, int, int]
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    text: str


@dataclass(frozen=True)
class NpuProgram:
    pipes: tuple[str, ...]
    costs: tuple[tuple[float, float, float, float, float], ...]  # latency, throughput, burst, overhead, factor
    cost_names: tuple[str, ...]
    buffers: tuple[str, ...]
    slots: tuple[int, ...]
    nodes: tuple[tuple[int, int, int, int], ...]
    region_bufs: tuple[int, ...]
    instrs: tuple[NpuInstr, ...]

    def arrays(self):
        """The flat arrays of src/sim/sim.cc."""
        accesses: list[int] = []
        table = []
        for ins in self.instrs:
            reads_at = len(accesses)
            accesses += ins.reads
            writes_at = len(accesses)
            accesses += ins.writes
            table.append([ins.pipe, ins.cost, KINDS.index(ins.kind), *ins.params,
                          reads_at, len(ins.reads), writes_at, len(ins.writes)])
        return (
            np.asarray(self.nodes, dtype=np.int64).reshape(-1, 4),
            np.asarray(self.region_bufs, dtype=np.int64).reshape(-1),
            np.asarray(table, dtype=np.int64).reshape(-1, 11),
            np.asarray(accesses, dtype=np.int64).reshape(-1),
            np.asarray(self.costs, dtype=np.float64).reshape(-1, 5),
            np.asarray(self.slots, dtype=np.int64).reshape(-1),
        )

    def listing(self) -> str:
        """An assembly-like listing: loops, allocations, instructions with pipes and sizes."""
        lines: list[str] = []
        self._list(0, len(self.nodes), 0, lines)
        return "\n".join(lines)

    def _list(self, begin: int, end: int, depth: int, lines: list[str]) -> None:
        pad = "  " * depth
        i = begin
        while i < end:
            kind, a, b, body = self.nodes[i]
            if kind == LOOP:
                lines.append(f"{pad}loop x{a}")
                self._list(i + 1, i + 1 + body, depth + 1, lines)
            elif kind == REGION:
                names = [self.buffers[self.region_bufs[k]] + ("[x2]" if self.slots[self.region_bufs[k]] > 1 else "")
                         for k in range(a, a + b)]
                lines.append(f"{pad}alloc {', '.join(names)}")
                self._list(i + 1, i + 1 + body, depth + 1, lines)
            else:
                ins = self.instrs[a]
                lines.append(f"{pad}{self.pipes[ins.pipe]:<7s} {ins.text}")
            i += 1 + body


def lower(kernel_or_program, spec: HardwareSpec) -> NpuProgram:
    program = kernel_or_program if isinstance(kernel_or_program, Program) else read_program(kernel_or_program)
    return _Lowering(program, spec).run()


class _Lowering:
    def __init__(self, program: Program, spec: HardwareSpec):
        self.program = program
        self.spec = spec
        self.own = own_loop_counts(program)
        self.pipes: list[str] = []
        self.costs: list[tuple] = []
        self.cost_names: list[str] = []
        self.cost_index: dict[str, int] = {}
        for path in spec.paths:
            self._cost_class(f"{path.src}->{path.dst}", path.pipe,
                             (path.latency, path.bandwidth, path.burst, 0.0, 1.0))
        for unit in spec.units:
            # a vector unit's rate is in repeats per cycle: its repeats are counted in repeat_bytes
            rate = unit.throughput / unit.repeat_bytes if unit.kind == "vector" else unit.throughput
            self._cost_class(unit.name, unit.pipe,
                             (0.0, rate, 1.0, float(unit.issue_overhead), unit.transcendental_factor))
        self.buffers: dict = {}
        self.buffer_names: list[str] = []
        self.slots: list[int] = []
        for param in program.func.params:
            self._buffer(param, 1)
        self.nodes: list[list[int]] = []
        self.region_bufs: list[int] = []
        self.instrs: list[NpuInstr] = []

    def _cost_class(self, name, pipe, values) -> None:
        if pipe not in self.pipes:
            self.pipes.append(pipe)
        self.cost_index[name] = len(self.costs)
        self.costs.append(tuple(float(v) for v in values))
        self.cost_names.append(name)

    def _buffer(self, buf, slots: int) -> int:
        if buf not in self.buffers:
            self.buffers[buf] = len(self.buffer_names)
            self.buffer_names.append(buf.name)
            self.slots.append(slots)
        return self.buffers[buf]

    def run(self) -> NpuProgram:
        self._emit(self.program.body)
        return NpuProgram(tuple(self.pipes), tuple(self.costs), tuple(self.cost_names),
                          tuple(self.buffer_names), tuple(self.slots), tuple(map(tuple, self.nodes)),
                          tuple(self.region_bufs), tuple(self.instrs))

    def _emit(self, nodes) -> None:
        for node in nodes:
            if isinstance(node, Instr):
                self._instr(node)
            elif isinstance(node, Loop):
                folded = self._folds(node)
                if folded is not None:
                    self._instr(folded)
                    continue
                if node.extent == 1:
                    self._emit(node.body)
                    continue
                at = self._open(LOOP, node.extent, 0)
                self._emit(node.body)
                self._close(at)
            elif isinstance(node, Region):
                ids = [self._buffer(a.buffer, 2 if a.double else 1) for a in node.allocs]
                at = self._open(REGION, len(self.region_bufs), len(ids))
                self.region_bufs += ids
                self._emit(node.body)
                self._close(at)

    def _folds(self, loop: Loop) -> Instr | None:
        """The instruction whose own loop nest starts at ``loop``, if any."""
        node = loop
        while isinstance(node, Loop) and len(node.body) == 1:
            node = node.body[0]
        if isinstance(node, Instr):
            own = own_loops(node, self.own)
            if own and own[0] is loop:
                return node
        return None

    def _open(self, kind: int, a: int, b: int) -> int:
        self.nodes.append([kind, a, b, 0])
        return len(self.nodes) - 1

    def _close(self, at: int) -> None:
        self.nodes[at][3] = len(self.nodes) - at - 1

    def _instr(self, instr: Instr) -> None:
        own = own_loops(instr, self.own)
        elements = math.prod(lp.extent for lp in own)
        if instr.kind == "intrin":
            ins = self._intrinsic(instr, elements)
        elif is_dma(instr):
            ins = self._dma(instr, own, elements)
        else:
            ins = self._compute(instr, own, elements)
        self.nodes.append([INSTR, len(self.instrs), 0, 0])
        self.instrs.append(ins)

    def _dma(self, instr: Instr, own, elements: int) -> NpuInstr:
        src, dst = instr.reads[0], instr.writes[0]
        path = self.spec.path(src.scope, dst.scope)
        if path is None:
            raise CodegenError(f"block {instr.block}: no data path {src.scope} -> {dst.scope}")
        loops = [lp for lp in own if lp.extent > 1]
        geos = [geometry(src, loops), geometry(dst, loops)]
        run = min(g.run if g is not None and g.contiguous else 1 for g in geos)
        nbytes = max(_elem_bytes(src.dtype), _elem_bytes(dst.dtype))
        runs = elements // run
        text = f"{src.name} -> {dst.name}  {runs} x {run * nbytes} B  ({instr.block})"
        return NpuInstr(instr.block, "dma", self.pipes.index(path.pipe),
                        self.cost_index[f"{path.src}->{path.dst}"], (runs, run * nbytes, 0, 0),
                        (self._buffer(src.buffer, 1),), (self._buffer(dst.buffer, 1),), text)

    def _intrinsic(self, instr: Instr, count: int) -> NpuInstr:
        intrin = find_intrinsic(self.spec, instr.intrinsic)
        if intrin is None:
            raise CodegenError(f"block {instr.block}: {instr.intrinsic} is not an instruction of {self.spec.name}")
        tiles, differs = intrinsic_tiles(instr, intrin)
        if differs:
            raise CodegenError(f"block {instr.block}: not the {intrin.name} instruction ({differs})")
        count *= tiles  # a block over a tile of several instruction shapes issues one per shape
        unit = self.spec.unit(intrin.unit)
        ops = [self._buffer(op.buffer, 1) for op in instr.operands]
        reads = tuple(ops) if intrin.op != "fill" else ()
        writes = (ops[-1],)
        short = intrin.name.rsplit(".", 1)[-1]
        if unit.kind == "vector":  # one cross-lane reduction per repeat of lanes
            lane_bytes = intrin.shape.k * _elem_bytes(intrin.shape.in_dtype)
            params = (count * math.ceil(lane_bytes / unit.repeat_bytes), 1, 0, 1)
        else:
            params = (count, 1, 0, 0)
        return NpuInstr(instr.block, unit.kind, self.pipes.index(unit.pipe), self.cost_index[unit.name],
                        params, reads, writes, f"{short} x{count}  ({instr.block})")

    def _compute(self, instr: Instr, own, elements: int) -> NpuInstr:
        unit = compute_unit(instr, self.spec)
        if unit is None:
            raise CodegenError(f"block {instr.block}: no unit can run it")
        reads = tuple(dict.fromkeys(self._buffer(a.buffer, 1) for a in instr.reads))
        writes = tuple(dict.fromkeys(self._buffer(a.buffer, 1) for a in instr.writes))
        plain, trans = instr.ops, instr.transcendental
        if unit.kind == "vector":
            nbytes = max(_elem_bytes(a.dtype) for a in instr.reads + instr.writes)
            lanes = own[-1].extent if own and instr.vectorized else 1
            repeats = (elements // lanes) * math.ceil(lanes * nbytes / unit.repeat_bytes)
            params = (repeats, plain, trans, 1)
            text = f"{instr.block}  {repeats} repeats x {plain + trans} ops"
        else:
            params = (elements, plain, trans, 0)
            text = f"{instr.block}  {elements} elements x {plain + trans} ops"
        return NpuInstr(instr.block, unit.kind, self.pipes.index(unit.pipe), self.cost_index[unit.name],
                        params, reads, writes, text)


def _elem_bytes(dtype: str) -> int:
    import tvm

    return max(1, tvm.runtime.DataType(dtype).bits // 8)
