"""roofline: a lower bound on the cycles of any kernel for a workload on a spec.

max(compute at peak, compulsory off-chip bytes at peak bandwidth). The compute side counts
only work no schedule can avoid: every multiply-accumulate on the fastest unit that takes
its dtype, and one vector operation per iteration of every other non-copy block (copies and
casts can ride on DMA). Loads and stores overlap when they use different pipes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tvm

from ..npu.spec import HardwareSpec
from .program import read_program


@dataclass(frozen=True)
class Roofline:
    compute_cycles: int
    memory_cycles: int
    macs: int
    vector_elements: int
    bytes_in: int
    bytes_out: int

    @property
    def cycles(self) -> int:
        return max(self.compute_cycles, self.memory_cycles, 1)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_cycles >= self.memory_cycles else "memory"


def _bytes(dtype: str) -> int:
    return max(1, tvm.runtime.DataType(dtype).bits // 8)


def roofline(workload, spec: HardwareSpec) -> Roofline:
    program = read_program(workload.func)
    matrix_rate = {}  # input dtype -> MACs per cycle at peak
    for unit in spec.units:
        for shape in unit.shapes:
            rate = shape.m * shape.n * shape.k * unit.throughput
            matrix_rate[shape.in_dtype] = max(matrix_rate.get(shape.in_dtype, 0), rate)
    vector = spec.unit_of_kind("vector") or spec.unit_of_kind("scalar")
    matrix_cycles = vector_cycles = 0.0
    macs = vector_elements = 0
    reads: dict[str, int] = {}  # buffer name -> elements the workload's own program loads
    for instr in program.instrs():
        iterations = math.prod(lp.extent for lp in instr.loops)
        for access in instr.reads:
            reads[access.buffer.name] = reads.get(access.buffer.name, 0) + iterations
        operand_dtypes = {a.dtype for a in instr.reads if not any(a.buffer.same_as(w.buffer) for w in instr.writes)}
        if instr.mac and len(operand_dtypes) == 1 and next(iter(operand_dtypes)) in matrix_rate:
            macs += iterations
            matrix_cycles += iterations / matrix_rate[next(iter(operand_dtypes))]
        elif instr.kind != "copy":
            nbytes = max(_bytes(a.dtype) for a in instr.reads + instr.writes)
            vector_elements += iterations
            per_cycle = vector.throughput / nbytes if vector.kind == "vector" else vector.throughput
            vector_cycles += iterations / per_cycle
    # an input is compulsory traffic only as far as it is read: a gather (an embedding's
    # table) needs the rows it indexes, not the whole table
    bytes_in = sum(min(math.prod(t.shape), reads.get(t.name, math.prod(t.shape))) * _bytes(t.dtype)
                   for t in workload.inputs)
    bytes_out = sum(math.prod(t.shape) * _bytes(t.dtype) for t in workload.outputs)
    return Roofline(
        compute_cycles=math.ceil(max(matrix_cycles, vector_cycles)),
        memory_cycles=_memory_cycles(spec, bytes_in, bytes_out),
        macs=macs, vector_elements=vector_elements, bytes_in=bytes_in, bytes_out=bytes_out,
    )


def _memory_cycles(spec: HardwareSpec, bytes_in: int, bytes_out: int) -> int:
    """Compulsory traffic at the best bandwidth; loads and stores overlap on separate pipes."""
    inbound = [p for p in spec.paths if p.src == spec.offchip]
    outbound = [p for p in spec.paths if p.dst == spec.offchip]
    best_in = max(inbound, key=lambda p: p.bandwidth)
    best_out = max(outbound, key=lambda p: p.bandwidth)
    t_in, t_out = bytes_in / best_in.bandwidth, bytes_out / best_out.bandwidth
    pipes_in = {p.pipe for p in inbound if p.bandwidth == best_in.bandwidth}
    pipes_out = {p.pipe for p in outbound if p.bandwidth == best_out.bandwidth}
    shared = pipes_in <= pipes_out and pipes_out <= pipes_in
    return math.ceil(t_in + t_out if shared else max(t_in, t_out))
