"""The MetaSchedule baseline: builder/runner on the NPU model, the NPU design space, tuning."""

import dataclasses
import types

import pytest
import tvm_ffi
from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from hawk.bench.reference import reference_kernel
from hawk.bench.suites import find_workload, load_suite
from hawk.npu import api_view
from hawk.npu.spec import with_capacity
from hawk.propose.program import apply_program
from hawk.runtime import ExecResult
from hawk.runtime.timing import time_kernel
from hawk.runtime.verify import verify
from hawk.tuning import ArtifactStore, MetaScheduleResult, NpuBuilder, NpuRunner, NpuSpace, tune_metaschedule
from hawk.tuning import metaschedule
from hawk.tuning.measure import CLOCK_HZ
from hawk.tuning.space import VectorizeInner
from tests.runtime import broken_kernels


def _build_and_run(spec, mods):
    store = ArtifactStore()
    from hawk.npu import target

    built = NpuBuilder(spec, store).build([ms.builder.BuilderInput(m, target(spec)) for m in mods])
    runs = NpuRunner(spec, store).run([ms.runner.RunnerInput(b.artifact_path, "cpu", []) for b in built
                                       if b.error_msg is None])
    return store, built, [f.result() for f in runs]


def test_builder_rejects_illegal_kernels_with_their_device_log(davinci):
    _, broken = broken_kernels.illegal_path(davinci)
    store, built, runs = _build_and_run(davinci, [broken])
    assert built[0].artifact_path is None
    assert "ILLEGAL_PATH" in built[0].error_msg and "[NPU] ERROR" in built[0].error_msg
    assert runs == [] and (store.built, store.legal) == (1, 0)


def test_runner_reports_simulated_cycles(davinci):
    wl = find_workload("silu_f32")
    kernel = reference_kernel(wl, davinci)
    store, built, runs = _build_and_run(davinci, [kernel])
    assert built[0].error_msg is None and runs[0].error_msg is None
    assert float(runs[0].run_secs[0]) * CLOCK_HZ == pytest.approx(time_kernel(kernel, davinci).cycles)
    assert store.take(built[0].artifact_path) is None  # the runner consumed the artifact


def test_runner_fails_a_time_the_gate_flags(davinci):
    """A model bug must not reach MetaSchedule's cost model as a fast run."""
    wl = find_workload("silu_f32")
    kernel = reference_kernel(wl, davinci)
    cycles = time_kernel(kernel, davinci, wl).cycles

    def run(**gate_inputs):
        store = ArtifactStore()
        path = store.put(kernel)
        runner = NpuRunner(davinci, store, workload=wl, **gate_inputs)
        return runner.run([ms.runner.RunnerInput(path, "cpu", [])])[0].result()

    assert run().error_msg is None
    assert run(reference_cycles=cycles * 9).error_msg is None
    flagged = run(reference_cycles=cycles * 20)
    assert flagged.run_secs is None and "flagged for review" in flagged.error_msg


def _stages(mod) -> set[str]:
    scopes = set()

    def on_block(block):
        for region in block.writes:
            scopes.add(region.source.scope())

    tvm_ffi.structural_walk(mod["main"].body, [(s_tir.SBlock, on_block)])
    return scopes


@pytest.mark.parametrize("name", [w.name for w in load_suite("smoke")])
def test_space_builds_staged_sketches_for_every_smoke_workload(davinci, name):
    wl = find_workload(name, "smoke")
    sketches = NpuSpace(api_view(davinci))(s_tir.Schedule(wl.module()))
    assert sketches
    for sch in sketches:
        assert any(inst.kind.name == "SamplePerfectTile" for inst in sch.trace.insts)
        assert _stages(sch.mod) - {"global"}, "every sketch stages data on chip"


def test_gemm_sketches_tensorize_and_include_the_legal_staging(davinci):
    wl = find_workload("matmul_f16")
    sketches = NpuSpace(api_view(davinci))(s_tir.Schedule(wl.module()))
    kinds = [{inst.kind.name for inst in s.trace.insts} for s in sketches]
    assert all("Tensorize" in k for k in kinds)
    # through L1 is one of the sketches (the space cannot know it is the legal path)
    assert any("global.npu.l1" in _stages(s.mod) for s in sketches)
    assert any("global.npu.l1" not in _stages(s.mod) for s in sketches)


def test_space_never_reads_hidden_spec_fields(davinci):
    from tests.hidden_spec import hidden_reads_trapped, hide

    view = api_view(davinci)
    assert api_view(hide(davinci)) == view
    wl = find_workload("softmax_f32")
    a = [s.mod.script() for s in NpuSpace(view)(s_tir.Schedule(wl.module(), seed=1))]
    with hidden_reads_trapped() as reads:
        sketches = NpuSpace(api_view(hide(davinci)))(s_tir.Schedule(wl.module(), seed=1))
    assert reads == []
    assert a == [s.mod.script() for s in sketches]


def test_vectorize_postproc_vectorizes_compute_not_copies(davinci):
    wl = find_workload("silu_f32")  # 256 x 1024
    sch = s_tir.Schedule(wl.module())
    y = sch.get_sblock("Y")
    i, _ = sch.get_loops(y)
    sch.compute_at(sch.cache_read(y, 0, "global.npu.ub"), i)
    sch.reverse_compute_at(sch.cache_write(y, 0, "global.npu.ub"), i)
    assert VectorizeInner().apply(sch)
    text = sch.mod.script()
    assert text.count("T.vectorized") == 1 and "T.vectorized(256)" in text  # 1024 lanes split at 256
    assert verify(sch.mod, davinci) == []


def test_vectorize_postproc_leaves_tensorized_blocks_alone(davinci):
    # vectorising the fill intrinsic's implementation makes it another instruction (verify's
    # structural match says so): every GEMM candidate of MetaSchedule was illegal that way
    wl = find_workload("matmul_f16")
    sketches = NpuSpace(api_view(davinci))(s_tir.Schedule(wl.module(), seed=1))
    legal = [s for s in sketches if verify(s.mod, davinci) == []]
    assert legal
    for sch in legal:
        assert VectorizeInner().apply(sch)
        assert verify(sch.mod, davinci) == []


def test_metaschedule_finds_a_legal_correct_kernel(davinci):
    wl = find_workload("add_f16")
    result = tune_metaschedule(wl, davinci, budget=12, seed=0)
    assert result.error == ""
    assert result.legal and result.correct
    assert 0 < result.trials <= 12 and 0 < result.legal_trials <= result.trials
    assert verify(result.module, davinci) == []
    assert result.cycles == time_kernel(result.module, davinci, wl).cycles
    assert set(result.to_dict()) >= {"legal", "correct", "cycles", "trials", "legal_trials", "wall_s", "error"}
    # the kernel comes back as a schedule program that rebuilds it through admission
    rebuilt = apply_program(result.program, wl.module())
    assert rebuilt.ok and tvm_ffi.structural_equal(rebuilt.module, result.module)


def test_metaschedule_with_nothing_legal_is_a_value_not_an_exception(davinci):
    tiny = with_capacity(davinci, "global.npu.ub", 64)  # no tile of the sketches fits
    result = tune_metaschedule(find_workload("silu_f32"), tiny, budget=6, seed=0)
    assert not result.legal and not result.correct and result.cycles is None
    assert "no legal candidate" in result.error


def test_transposed_gemm_gets_staged_sketches_quietly(davinci, capfd):
    wl = find_workload("matmul_nt_bert_qkv")  # B is [n, k]: the mma intrinsic cannot read it
    sketches = NpuSpace(api_view(davinci))(s_tir.Schedule(wl.module()))
    assert sketches
    assert not any(inst.kind.name == "Tensorize" for s in sketches for inst in s.trace.insts)
    assert capfd.readouterr().err == ""  # no failed tensorize dumping IR to stderr


@pytest.fixture(scope="module")
def add_records(davinci):
    """Legal add_f16 kernels as MetaSchedule records (only ``trace`` is read), from sketches
    sampled with different seeds: the gate tests need no tuning run."""
    wl = find_workload("add_f16")
    records, seen = [], set()
    for seed in range(1, 17):
        for sch in NpuSpace(api_view(davinci))(s_tir.Schedule(wl.module(), seed=seed)):
            text = sch.mod.script()
            if text not in seen and not verify(sch.mod, davinci):
                seen.add(text)
                records.append(types.SimpleNamespace(trace=sch.trace))
    return wl, records


def _fake_host(monkeypatch, *plans):
    """Every kernel is correct on the host; the simulator reports plans[i](cycles) for the i-th."""
    real_time, timed = metaschedule.time_kernel, []

    def time_kernel(module, spec, workload=None):
        profile = real_time(module, spec, workload)
        timed.append(module)
        return dataclasses.replace(profile, cycles=plans[min(len(timed), len(plans)) - 1](profile))

    monkeypatch.setattr(metaschedule, "execute", lambda *a, **kw: ExecResult("ok"))
    monkeypatch.setattr(metaschedule, "time_kernel", time_kernel)
    return timed


def test_metaschedule_best_skips_flagged_kernels(davinci, add_records, monkeypatch):
    wl, records = add_records
    reference_cycles = 1_000_000
    # three flagged (beyond the roofline, 20x and 50x the reference), more than CHECK_BEST, then a 9x one
    timed = _fake_host(monkeypatch, lambda p: p.roofline_cycles - 1, lambda p: reference_cycles // 20,
                       lambda p: reference_cycles // 50, lambda p: reference_cycles // 9)
    result = MetaScheduleResult(trials=12)
    metaschedule._pick_best(records, wl, davinci, result, reference_cycles=reference_cycles, trials=1)
    assert len(records) > len(timed) == 4 > metaschedule.CHECK_BEST
    assert result.correct and result.cycles == reference_cycles // 9 and result.error == ""
    assert result.module.same_as(timed[3]) and result.program
    reasons = [f["reason"] for f in result.flagged]
    assert reasons[0].startswith("faster than the roofline: ")
    assert reasons[1:] == [f"20.0x faster than the reference ({reference_cycles // 20} vs 1000000 cycles)",
                           f"50.0x faster than the reference ({reference_cycles // 50} vs 1000000 cycles)"]
    assert all(f["program"] and f["reference_cycles"] == reference_cycles for f in result.flagged)
    assert result.to_dict()["flagged"] == result.flagged


def test_metaschedule_with_only_flagged_kernels_has_no_result(davinci, add_records, monkeypatch):
    wl, records = add_records
    timed = _fake_host(monkeypatch, lambda p: 0)
    result = MetaScheduleResult(trials=12)
    metaschedule._pick_best(records, wl, davinci, result, reference_cycles=None, trials=1)
    assert not result.correct and result.cycles is None and result.module is None
    assert len(result.flagged) == len(timed) and "flagged for review" in result.error
