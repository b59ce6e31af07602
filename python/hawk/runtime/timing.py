"""time: cycles of a verified kernel on the NPU model, from the C++ pipe simulator.

``time_kernel`` lowers the kernel to its NPU program (codegen), runs it through the C++
core and returns the profile: total cycles, busy cycles per pipe, the bottleneck pipe and
the workload's roofline with the fraction reached. ``simulate_reference`` is a small
pure-Python simulator of the same semantics, used to check the C++ core.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..npu.spec import HardwareSpec
from .codegen import KINDS, NpuProgram, lower
from .roofline import Roofline, roofline

MAX_INSTRUCTIONS = 500_000_000  # a few seconds of simulation: beyond it a candidate is refused
_LIBRARY = "libhawk_sim.so"
_simulate = None


class SimulatorError(RuntimeError):
    """The C++ simulator is missing or refused the program."""


def _core():
    global _simulate
    if _simulate is None:
        import tvm_ffi

        lib = resources.files("hawk.runtime").joinpath(_LIBRARY)
        if not lib.is_file():
            raise SimulatorError(f"{_LIBRARY} is not built: reinstall Hawk (pip install -e .)")
        tvm_ffi.load_module(str(lib))
        _simulate = tvm_ffi.get_global_func("hawk.sim.simulate")
    return _simulate


@dataclass(frozen=True)
class SimResult:
    cycles: int
    instructions: int
    busy: dict[str, int]


def simulate(program: NpuProgram, max_instructions: int = MAX_INSTRUCTIONS) -> SimResult:
    """Run ``program`` on the C++ core."""
    arrays = program.arrays()
    out = np.zeros(2 + len(program.pipes), dtype=np.float64)
    try:
        _core()(*arrays, len(program.pipes), max_instructions, out)
    except (RuntimeError, ValueError) as err:
        raise SimulatorError(str(err).strip().splitlines()[-1]) from None
    return SimResult(int(out[0]), int(out[1]), {p: int(out[2 + i]) for i, p in enumerate(program.pipes)})


def duration(kind: str, params, cost) -> int:
    """Cycles of one static instruction (mirror of Duration in src/sim/sim.cc)."""
    latency, throughput, burst, overhead, factor = cost
    p0, p1, p2, p3 = params
    if kind == "dma":
        return int(latency + math.ceil(p0 * (math.ceil(p1 / burst) * burst) / throughput))
    if kind == "matrix":
        return int(overhead * p1 + math.ceil(p0 / throughput))
    if kind == "vector":
        return int(overhead * p3 * (p1 + p2) + math.ceil(p1 * p0 / throughput) + math.ceil(p2 * p0 * factor / throughput))
    return int(math.ceil(p0 * (p1 + p2 * factor) / throughput))


def simulate_reference(program: NpuProgram) -> SimResult:
    """The simulator's semantics in plain Python: in-order pipes, per-slot RAW/WAR/WAW."""
    durations = [duration(i.kind, i.params, program.costs[i.cost]) for i in program.instrs]
    pipe_free = [0] * len(program.pipes)
    busy = [0] * len(program.pipes)
    generation = [0] * len(program.slots)
    current = [0] * len(program.slots)
    write_end = [[0] * s for s in program.slots]
    read_end = [[0] * s for s in program.slots]
    state = {"makespan": 0, "count": 0}

    def issue(k):
        ins = program.instrs[k]
        start = pipe_free[ins.pipe]
        for b in ins.reads:
            start = max(start, write_end[b][current[b]])
        for b in ins.writes:
            start = max(start, read_end[b][current[b]], write_end[b][current[b]])
        end = start + durations[k]
        pipe_free[ins.pipe] = end
        busy[ins.pipe] += durations[k]
        state["makespan"] = max(state["makespan"], end)
        state["count"] += 1
        for b in ins.reads:
            read_end[b][current[b]] = max(read_end[b][current[b]], end)
        for b in ins.writes:
            write_end[b][current[b]] = end

    def walk(begin, end):
        i = begin
        while i < end:
            kind, a, b, body = program.nodes[i]
            if kind == 0:
                for _ in range(a):
                    walk(i + 1, i + 1 + body)
            elif kind == 1:
                for k in range(a, a + b):
                    buf = program.region_bufs[k]
                    generation[buf] += 1
                    current[buf] = generation[buf] % program.slots[buf]
                walk(i + 1, i + 1 + body)
            else:
                issue(a)
            i += 1 + body

    walk(0, len(program.nodes))
    return SimResult(state["makespan"], state["count"], dict(zip(program.pipes, busy)))


@dataclass(frozen=True)
class Profile:
    """Where the time of a kernel goes, and how close it is to the hardware limit."""

    cycles: int
    instructions: int
    busy: dict[str, int]
    bottleneck: str
    roofline: Roofline | None

    @property
    def roofline_cycles(self) -> int | None:
        return self.roofline.cycles if self.roofline else None

    @property
    def roofline_fraction(self) -> float | None:
        if not self.roofline or not self.cycles:
            return None
        return self.roofline.cycles / self.cycles

    @property
    def model_bug(self) -> bool:
        """A kernel faster than its roofline means the model is wrong, not the kernel good."""
        return self.roofline is not None and self.cycles < self.roofline.cycles

    def to_dict(self) -> dict:
        return {
            "cycles": self.cycles,
            "instructions": self.instructions,
            "busy": self.busy,
            "bottleneck": self.bottleneck,
            "roofline_cycles": self.roofline_cycles,
            "roofline_bound": self.roofline.bound if self.roofline else None,
            "roofline_fraction": round(self.roofline_fraction, 4) if self.roofline_fraction else None,
            "model_bug": self.model_bug,
        }


def time_kernel(kernel, spec: HardwareSpec, workload=None) -> Profile:
    """Cycles of a verified kernel; with ``workload``, its roofline too. A kernel that has no
    NPU program (unreadable, or illegal in a way codegen meets) raises SimulatorError only."""
    try:
        program = lower(kernel, spec)
    except Exception as err:  # noqa: BLE001 - CodegenError, ProgramError or anything unreadable
        raise SimulatorError(f"no NPU program: {type(err).__name__}: {str(err).strip()[:200]}") from None
    result = simulate(program)
    bottleneck = max(result.busy, key=lambda p: (result.busy[p], -program.pipes.index(p)))
    bound = roofline(workload, spec) if workload is not None else None
    return Profile(result.cycles, result.instructions, result.busy, bottleneck, bound)


__all__ = ["KINDS", "Profile", "SimResult", "SimulatorError", "duration", "simulate",
           "simulate_reference", "time_kernel"]
