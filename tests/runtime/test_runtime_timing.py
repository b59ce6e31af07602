import numpy as np
import pytest
import tvm
import tvm_ffi
from hawk.bench.reference import reference_kernel
from hawk.ir import ops
from hawk.npu import load_spec
from hawk.runtime import verify
from hawk.runtime.codegen import NpuInstr, NpuProgram, lower
from hawk.runtime.roofline import Roofline
from hawk.runtime.timing import (
    Profile,
    SimulatorError,
    simulate,
    simulate_reference,
    time_kernel,
)
from tvm import s_tir, tirx

from ..cases import reference_cases
from .broken_kernels import elementwise_tiled

DOUBLE = "double_buffer_scope"


def _without_double_buffers(kernel):
    sch = s_tir.Schedule(kernel)
    found = []

    def visit(blk_rv):
        for child in sch.get_child_blocks(blk_rv):
            if DOUBLE in sch.get(child).annotations:
                found.append(child)
            visit(child)

    visit(sch.get_sblock("root"))
    for b in found:
        sch.unannotate(b, DOUBLE)
    return sch.mod


def test_same_kernel_same_cycles(davinci):
    wl = ops.softmax("sm", 256, 512)
    kernel = reference_kernel(wl, davinci)
    first = time_kernel(kernel, davinci, wl)
    again = time_kernel(reference_kernel(wl, davinci), davinci, wl)
    assert first == again
    assert first.cycles > 0 and first.instructions > 0


def test_double_buffering_helps_a_dma_bound_kernel_only(davinci):
    relu = ops.unary("relu", "relu", 256, 1024)  # one cheap vector op per element: DMA-bound
    gelu = ops.unary("gelu", "gelu", 128, 3072)  # a dozen ops per element, on the scalar unit
    cases = {"dma": (relu, reference_kernel(relu, davinci)),
             "compute": (gelu, _devectorise(reference_kernel(gelu, davinci)))}
    gains = {}
    for name, (wl, kernel) in cases.items():
        single = _without_double_buffers(kernel)
        assert verify(kernel, davinci) == [] and verify(single, davinci) == []
        with_db, without = time_kernel(kernel, davinci, wl), time_kernel(single, davinci, wl)
        assert with_db.bottleneck == ("MTE2" if name == "dma" else "SCALAR")
        gains[name] = (without.cycles - with_db.cycles) / without.cycles
    # single-buffered, the next load still overlaps the previous store (other pipe, other
    # buffer): only load -> compute serialises, so the DMA-bound gain is ~1/6 here
    assert gains["dma"] > 0.10
    assert gains["compute"] < 0.05 and gains["compute"] < gains["dma"] / 3


def test_vectorised_elementwise_beats_its_scalar_form(davinci):
    wl = ops.unary("silu", "silu", 64, 1024)
    vector = elementwise_tiled(wl, davinci, 8, 1024)
    scalar = _devectorise(vector)
    assert verify(vector, davinci) == [] and verify(scalar, davinci) == []
    v, s = time_kernel(vector, davinci, wl), time_kernel(scalar, davinci, wl)
    assert v.busy["VECTOR"] > 0 and v.busy["SCALAR"] == 0
    assert s.busy["SCALAR"] > 0 and s.busy["VECTOR"] == 0
    assert s.cycles > 4 * v.cycles


def _devectorise(kernel):
    """The same kernel with its vectorised loops turned back into serial ones."""
    def rewrite(stmt):
        if stmt.kind == tirx.ForKind.VECTORIZED:
            return tirx.For(stmt.loop_var, stmt.min, stmt.extent, tirx.ForKind.SERIAL, stmt.body,
                            stmt.thread_binding, stmt.annotations)
        return stmt

    func = kernel["main"]
    return tvm.IRModule({"main": func.with_body(tvm_ffi.structural_map(func.body, [(tirx.For, rewrite)]))})


@pytest.mark.parametrize("make", [
    lambda n: ops.unary("silu", "silu", n, 1024),
    lambda n: ops.softmax("sm", n, 512),
    lambda n: ops.matmul("mm", n, 256, 512),
])
def test_cycles_grow_with_problem_size(make, davinci):
    cycles = []
    for n in (64, 128, 512):
        wl = make(n)
        cycles.append(time_kernel(reference_kernel(wl, davinci), davinci, wl).cycles)
    assert cycles[0] < cycles[1] < cycles[2]


@pytest.mark.parametrize("preset, wl", reference_cases())
def test_no_reference_beats_its_roofline_and_cpp_matches_python(preset, wl):
    spec = load_spec(preset)
    kernel = reference_kernel(wl, spec)
    profile = time_kernel(kernel, spec, wl)
    assert not profile.model_bug, (profile.cycles, profile.roofline)
    assert 0 < profile.roofline_fraction <= 1
    assert profile.busy[profile.bottleneck] == max(profile.busy.values())
    program = lower(kernel, spec)
    reference = simulate_reference(program)
    assert (reference.cycles, reference.instructions, reference.busy) == (
        profile.cycles, profile.instructions, profile.busy)


def _random_program(seed: int) -> NpuProgram:
    rng = np.random.default_rng(seed)
    pipes = ("DMA_IN", "DMA_OUT", "MAT", "VEC", "SCA")
    costs = (
        (float(rng.integers(0, 300)), float(rng.integers(8, 128)), float(rng.choice([32, 64, 512])), 0.0, 1.0),
        (0.0, 1.0, 1.0, float(rng.integers(0, 4)), 1.0),
        (0.0, float(rng.choice([0.5, 1.0, 2.0])), 1.0, float(rng.integers(0, 20)), float(rng.integers(1, 8))),
        (0.0, float(rng.choice([0.25, 0.5, 1.0])), 1.0, 0.0, float(rng.integers(1, 16))),
    )
    n_buffers = int(rng.integers(2, 5))
    slots = tuple(int(rng.choice([1, 2], p=[0.4, 0.6])) for _ in range(n_buffers))
    instrs = []
    for _ in range(int(rng.integers(1, 10))):
        kind = str(rng.choice(["dma", "matrix", "vector", "scalar"]))
        pipe = {"dma": int(rng.integers(0, 2)), "matrix": 2, "vector": 3, "scalar": 4}[kind]
        cost = {"dma": 0, "matrix": 1, "vector": 2, "scalar": 3}[kind]
        params = tuple(int(v) for v in rng.integers(1, 600, size=4))
        reads = tuple(int(b) for b in rng.choice(n_buffers, size=int(rng.integers(0, 3)), replace=False))
        writes = tuple(int(b) for b in rng.choice(n_buffers, size=int(rng.integers(1, 3)), replace=False))
        instrs.append(NpuInstr("b", kind, pipe, cost, params, reads, writes, ""))
    nodes, region_bufs = [], []

    def tree(depth):
        for _ in range(int(rng.integers(1, 4))):
            # loops around regions around several instructions: what double buffering needs
            choice = int(rng.choice(3, p=[0.35, 0.35, 0.3])) if depth < 3 else 2
            if choice == 0:
                at = len(nodes)
                nodes.append([0, int(rng.integers(1, 5)), 0, 0])
                tree(depth + 1)
                nodes[at][3] = len(nodes) - at - 1
            elif choice == 1:
                at = len(nodes)
                bufs = [int(b) for b in rng.choice(n_buffers, size=int(rng.integers(1, 3)), replace=False)]
                nodes.append([1, len(region_bufs), len(bufs), 0])
                region_bufs.extend(bufs)
                tree(depth + 1)
                nodes[at][3] = len(nodes) - at - 1
            else:
                nodes.append([2, int(rng.integers(0, len(instrs))), 0, 0])

    tree(0)
    names = tuple(f"b{i}" for i in range(n_buffers))
    return NpuProgram(pipes, costs, ("dma", "mat", "vec", "sca"), names, slots,
                      tuple(map(tuple, nodes)), tuple(region_bufs), tuple(instrs))


@pytest.mark.parametrize("seed", range(200))
def test_cpp_core_matches_the_python_reference_on_random_programs(seed):
    program = _random_program(seed)
    assert simulate(program) == simulate_reference(program)


def test_simulator_rejects_bad_programs():
    program = _random_program(1)
    bad = NpuProgram(program.pipes, program.costs, program.cost_names, program.buffers, program.slots,
                     program.nodes, program.region_bufs,
                     (NpuInstr("b", "dma", 99, 0, (1, 1, 0, 0), (), (), ""),) + program.instrs[1:])
    with pytest.raises(SimulatorError, match="bad pipe"):
        simulate(bad)
    with pytest.raises(SimulatorError, match="exceeds 3 instructions"):
        simulate(NpuProgram(program.pipes, program.costs, program.cost_names, program.buffers,
                            program.slots, ((0, 10, 0, 1), (2, 0, 0, 0)), (), program.instrs), 3)


def test_faster_than_roofline_is_flagged_as_a_model_bug():
    bound = Roofline(compute_cycles=1000, memory_cycles=10, macs=0, vector_elements=0, bytes_in=0, bytes_out=0)
    assert Profile(500, 1, {"VECTOR": 500}, "VECTOR", bound).model_bug
    assert not Profile(1500, 1, {"VECTOR": 1500}, "VECTOR", bound).model_bug


def test_costs_come_from_the_spec(davinci):
    """Halving the off-chip bandwidth slows a DMA-bound kernel, a 4x vector unit barely
    changes it, and the same vector unit speeds up a vector-bound kernel a lot."""
    import dataclasses

    def with_vector_x4(spec):
        units = tuple(dataclasses.replace(u, throughput=u.throughput * 4) if u.kind == "vector" else u
                      for u in spec.units)
        return dataclasses.replace(spec, units=units)

    relu = ops.unary("relu", "relu", 256, 1024)
    kernel = reference_kernel(relu, davinci)
    base = time_kernel(kernel, davinci, relu).cycles
    slow_paths = tuple(dataclasses.replace(p, bandwidth=p.bandwidth / 2) if p.src == "global" else p
                       for p in davinci.paths)
    assert time_kernel(kernel, dataclasses.replace(davinci, paths=slow_paths), relu).cycles > 1.5 * base
    assert time_kernel(kernel, with_vector_x4(davinci), relu).cycles > 0.95 * base
    gelu = ops.unary("gelu", "gelu", 128, 3072)
    kernel = reference_kernel(gelu, davinci)
    assert time_kernel(kernel, davinci, gelu).bottleneck == "VECTOR"
    assert time_kernel(kernel, with_vector_x4(davinci), gelu).cycles < 0.6 * time_kernel(kernel, davinci, gelu).cycles


def test_vector_cross_lane_reduce_beats_the_scalar_fold(davinci, monkeypatch):
    from hawk.bench.reference import davinci as vendor

    wl = ops.row_reduce("rowmax", "max", 512, 512)
    with_reduce = reference_kernel(wl, davinci)
    assert "davinci-like.vector.reduce_max_f32" in with_reduce.script()
    monkeypatch.setattr(vendor, "fold_lanes", lambda *args: False)
    scalar_fold = reference_kernel(wl, davinci)
    assert "reduce_max" not in scalar_fold.script()
    fast, slow = time_kernel(with_reduce, davinci, wl), time_kernel(scalar_fold, davinci, wl)
    assert slow.bottleneck == "SCALAR" and fast.busy["SCALAR"] < slow.busy["SCALAR"] / 10
    assert fast.cycles < slow.cycles / 2


@pytest.mark.parametrize("partial, full", [(8, 16), (40, 48)])
def test_a_partial_fractal_costs_more_per_flop_on_the_cube(partial, full, davinci):
    """M not a multiple of the 16-row fractal is padded: the cube pays for whole fractals."""
    per_mac = {}
    for m in (partial, full):
        wl = ops.matmul("mm", m, 64, 64)
        kernel = reference_kernel(wl, davinci)
        assert verify(kernel, davinci) == []
        profile = time_kernel(kernel, davinci, wl)
        per_mac[m] = profile.busy["CUBE"] / (m * 64 * 64)
    assert per_mac[partial] > 1.1 * per_mac[full]


def test_a_gather_needs_only_the_rows_it_indexes(davinci):
    """An embedding's compulsory traffic is the rows it reads, not the table: an honest kernel
    gathering them must not be faster than its roofline."""
    from hawk.runtime.roofline import roofline

    wl = ops.embedding("emb", 30522, 128, 64)
    assert roofline(wl, davinci).bytes_in == 64 * 128 * 4 + 64 * 4
    gemm = ops.matmul("mm", 64, 64, 64, dtype="float16")
    assert roofline(gemm, davinci).bytes_in == 2 * 64 * 64 * 2  # read many times, counted once
