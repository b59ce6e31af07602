import dataclasses
import json
import sys
import types

import pytest
import tvm_ffi
from hawk.bench import reference
from hawk.cli import main
from hawk.ir import ops
from hawk.npu import ApiView
from hawk.propose.program import program_from_trace
from hawk.propose.proposer import TVMSCRIPT, Proposal, Proposer
from hawk.runtime import ExecResult, HostWorker, verify
from hawk.runtime.timing import SimulatorError
from hawk.search import Candidate, TuneResult, tune
from hawk.search import loop as loop_mod
from tvm import s_tir

from ..propose.test_propose_program import ELEMENTWISE

SLOW = ELEMENTWISE  # legal and correct, ~57800 cycles on davinci-like
FAULTY = ELEMENTWISE.replace("global.npu.ub", "global.npu.l0c")  # ILLEGAL_PATH, UNIT_SCOPE, ...
GARBAGE = "this is not ( a program\n"


def relu():
    return ops.unary("relu", "relu", 64, 256)


@pytest.fixture(scope="module")
def worker():
    w = HostWorker()
    yield w
    w.close()


@pytest.fixture(scope="module")
def ref(davinci):
    """The vendor schedule of relu as a program (fast: ~2300 cycles) and its module."""
    wl = relu()
    reference._load()
    sch = s_tir.Schedule(wl.module())
    reference._LIBRARY[(davinci.name, wl.op)](sch, wl, davinci)
    return program_from_trace(sch.trace), sch.mod


class Scripted(Proposer):
    """Plays a list of moves by iteration (cycling): program text, an exception, a Proposal."""

    name = "scripted"

    def __init__(self, *moves):
        self.moves = moves
        self.tasks = []
        self.calls = []

    def propose(self, task, *, seed, iteration):
        self.tasks.append(task)
        self.calls.append((seed, iteration))
        move = self.moves[iteration % len(self.moves)]
        if isinstance(move, Exception):
            raise move
        if isinstance(move, Proposal):
            return move
        return Proposal(move, llm_calls=1)


DOWN = Proposal(None, llm_calls=1, error="endpoint down")


def test_best_is_kept_and_every_failure_is_recorded(davinci, worker, ref):
    program, module = ref
    proposer = Scripted(SLOW, FAULTY, GARBAGE, program, RuntimeError("boom"), DOWN, SLOW)
    seen = []
    result = tune(relu(), davinci, proposer, budget=7, seed=3, worker=worker, trials=2,
                  on_candidate=lambda c, r: seen.append((c.iteration, r.iterations)))
    assert seen == [(i, i + 1) for i in range(7)]
    assert proposer.calls == [(3, i) for i in range(7)]
    assert result.iterations == 7 and [c.iteration for c in result.candidates] == list(range(7))
    assert [c.outcome for c in result.candidates] == [
        "ok", "fault", "admission", "ok", "no_proposal", "no_proposal", "ok"]
    assert [c.stage for c in result.candidates] == [
        "done", "verify", "admit", "done", "propose", "propose", "done"]
    slow, faulty, garbage, fast, raised, down, slow2 = result.candidates

    assert fast.cycles < slow.cycles == slow2.cycles
    assert result.best is fast and result.best_text == program
    assert tvm_ffi.structural_equal(result.best_module, module)
    assert verify(result.best_module, davinci) == []
    assert fast.bottleneck and fast.roofline_cycles and fast.legal and fast.correct

    assert faulty.faults and "ILLEGAL_PATH" in faulty.faults and not faulty.legal
    assert all(line.startswith("[NPU] ERROR") for line in faulty.fault_log)
    assert len(faulty.fault_log) == len(faulty.faults)
    assert "syntax error" in garbage.admission and garbage.admission.rstrip().endswith("^")
    assert raised.text is None and "raised RuntimeError: boom" in raised.error
    assert down.error == "endpoint down" and down.llm_calls == 1
    assert all(c.wall_s >= 0 for c in result.candidates)

    assert result.solved and result.pass_at_1 and result.first_solved_at == 0
    assert result.llm_calls == 6  # the raising proposer spent nothing we know of
    assert result.outcomes() == {"ok": 3, "no_proposal": 2, "fault": 1, "admission": 1}


def test_feedback_carries_what_the_device_said(davinci, worker, ref):
    program, _ = ref
    proposer = Scripted(FAULTY, GARBAGE, SLOW, ValueError("flaky"), DOWN, program)
    result = tune(relu(), davinci, proposer, budget=6, worker=worker, trials=1)
    tasks = proposer.tasks
    assert tasks[0].feedback is None
    assert all(isinstance(t.view, ApiView) and not hasattr(t, "spec") for t in tasks)

    after_fault = tasks[1].feedback
    assert after_fault.program == FAULTY and after_fault.failed
    assert after_fault.device_log == result.candidates[0].fault_log
    assert "The NPU reported:" in after_fault.render() and "ILLEGAL_PATH" in after_fault.render()

    after_garbage = tasks[2].feedback
    assert after_garbage.program == GARBAGE and after_garbage.admission.rstrip().endswith("^")
    assert "refused before running" in after_garbage.render()

    after_ok = tasks[3].feedback
    assert not after_ok.failed and after_ok.cycles == result.candidates[2].cycles
    assert after_ok.bottleneck and f"{after_ok.cycles} cycles" in after_ok.render()
    # a candidate with no text leaves the last real attempt as the feedback
    assert tasks[4].feedback == after_ok and tasks[5].feedback == after_ok
    assert not result.pass_at_1 and result.first_solved_at == 2 and result.best.iteration == 5


def test_a_search_of_failures_never_raises(davinci, worker):
    proposer = Scripted(RuntimeError("no"), DOWN, GARBAGE, FAULTY, Proposal("", kind="asm"), Proposal(42), "x")
    result = tune(relu(), davinci, proposer, budget=7, worker=worker)
    assert result.iterations == 7
    assert [c.outcome for c in result.candidates] == [
        "no_proposal", "no_proposal", "admission", "fault", "admission", "no_proposal", "admission"]
    assert "unknown proposal kind 'asm'" in result.candidates[4].admission
    assert result.candidates[5].error == "the proposal's text is int, not str"
    assert result.best is None and result.best_text is None and result.best_module is None
    assert not result.solved and not result.pass_at_1 and result.first_solved_at is None
    d = result.to_dict()
    assert d["best_program"] is None and d["cycles"] is None and d["solved"] is False
    json.dumps(d)


def test_harness_failures_become_outcomes(davinci, worker, ref, monkeypatch):
    program, _ = ref
    calls = {"verify": 0, "execute": 0, "time": 0}
    real_verify, real_execute, real_time = loop_mod.verify, loop_mod.execute, loop_mod.time_kernel

    def flaky_verify(module, spec):
        calls["verify"] += 1
        if calls["verify"] == 1:
            raise RuntimeError("verify bug")
        return real_verify(module, spec)

    def flaky_execute(module, workload, **kw):
        calls["execute"] += 1
        if calls["execute"] == 1:
            return ExecResult("timeout", "no result within 1 s")
        if calls["execute"] == 2:
            return ExecResult("crash", "the worker process died while building or running the kernel")
        if calls["execute"] == 3:
            return ExecResult("mismatch", "trial 0: 3 of 16384 elements of Y differ (max abs error 1)")
        return real_execute(module, workload, **kw)

    def flaky_time(module, spec, workload=None):
        calls["time"] += 1
        if calls["time"] == 1:
            raise SimulatorError("no NPU program: unsupported loop")
        return real_time(module, spec, workload)

    monkeypatch.setattr(loop_mod, "verify", flaky_verify)
    monkeypatch.setattr(loop_mod, "execute", flaky_execute)
    monkeypatch.setattr(loop_mod, "time_kernel", flaky_time)
    proposer = Scripted(program)
    result = tune(relu(), davinci, proposer, budget=6, worker=worker, trials=1)
    outcomes = [c.outcome for c in result.candidates]
    assert outcomes == ["internal_error", "timeout", "crash", "wrong", "timing_error", "ok"]
    first, timeout, crash, wrong, untimed, ok = result.candidates
    assert first.stage == "verify" and "verify bug" in first.error and not first.legal
    assert timeout.legal and not timeout.correct and timeout.exec_status == "timeout"
    assert crash.exec_status == "crash" and "died" in crash.message
    assert wrong.exec_status == "mismatch" and "differ" in wrong.exec_message
    assert untimed.legal and untimed.correct and untimed.cycles is None and "unsupported loop" in untimed.error
    # an internal error tells the next proposal nothing; host failures say what happened
    tasks = proposer.tasks
    assert tasks[1].feedback is None
    assert "timeout: no result within 1 s" in tasks[2].feedback.mismatch
    assert tasks[3].feedback.mismatch.startswith("crash")
    assert "wrong results" in tasks[4].feedback.mismatch and "result is wrong" in tasks[4].feedback.render()
    assert "unsupported loop" in tasks[5].feedback.device_log[0]
    # the timed kernel beats the correct-but-untimed one; both count as solving it
    assert result.best is ok and result.first_solved_at == 4 and result.solved


def test_a_repeated_correct_kernel_is_run_on_the_host_once(davinci, worker, ref, monkeypatch):
    program, _ = ref
    runs = []
    real_execute = loop_mod.execute

    def counting_execute(module, workload, **kw):
        runs.append(module)
        return real_execute(module, workload, **kw)

    monkeypatch.setattr(loop_mod, "execute", counting_execute)
    result = tune(relu(), davinci, Scripted(program), budget=3, worker=worker, trials=1)
    assert [c.outcome for c in result.candidates] == ["ok"] * 3
    assert len(runs) == 1 and len({c.cycles for c in result.candidates}) == 1


def test_tvmscript_proposals_are_admitted_in_the_sandbox(davinci, worker, ref):
    _, module = ref
    script = module.script()
    wrong = script.replace("T.max(", "T.min(")  # legal on the NPU, wrong on the host
    bad_signature = script.replace('Y: T.Buffer((64, 256)', 'Y: T.Buffer((64, 128)')
    assert wrong != script and bad_signature != script
    proposer = Scripted(Proposal(wrong, TVMSCRIPT), Proposal(bad_signature, TVMSCRIPT))
    result = tune(relu(), davinci, proposer, budget=2, worker=worker, trials=1)
    wrong_c, sig_c = result.candidates
    assert wrong_c.kind == TVMSCRIPT and wrong_c.outcome == "wrong" and wrong_c.legal
    assert wrong_c.exec_status == "mismatch"
    assert sig_c.outcome == "signature" and sig_c.stage == "signature" and "param Y" in sig_c.admission
    assert proposer.tasks[1].feedback.mismatch.startswith("wrong results")


def test_to_dict(davinci, worker, ref):
    program, _ = ref
    result = tune(relu(), davinci, Scripted(FAULTY, program, DOWN), budget=3, seed=1, worker=worker, trials=1)
    assert isinstance(result, TuneResult) and all(isinstance(c, Candidate) for c in result.candidates)
    d = json.loads(json.dumps(result.to_dict(candidates=True)))
    assert d["name"] == "relu" and d["target"] == davinci.name and d["proposer"] == "scripted"
    assert (d["seed"], d["budget"], d["iterations"], d["llm_calls"]) == (1, 3, 3, 3)
    assert d["best_program"] == program and d["best_iteration"] == 1 and d["best_kind"] == "program"
    assert d["cycles"] == result.best.cycles > 0
    assert d["pass_at_1"] is False and d["solved"] is True and d["first_solved_at"] == 1
    hist = d["fault_history"]
    assert [h["outcome"] for h in hist] == ["fault", "ok", "no_proposal"]
    assert "ILLEGAL_PATH" in hist[0]["faults"] and hist[1]["faults"] == [] and hist[1]["cycles"] == d["cycles"]
    assert hist[2]["message"] == "endpoint down"
    assert d["candidates"][0]["text"] == FAULTY and d["candidates"][0]["fault_log"]
    assert "candidates" not in result.to_dict()


def _fake_cycles(monkeypatch, *plans):
    """The simulator reports plans[i](profile) as the cycles of the i-th timed kernel."""
    real_time = loop_mod.time_kernel
    calls = []

    def time_kernel(module, spec, workload=None):
        profile = real_time(module, spec, workload)
        plan = plans[len(calls) % len(plans)]
        calls.append(profile)
        return dataclasses.replace(profile, cycles=plan(profile))

    monkeypatch.setattr(loop_mod, "time_kernel", time_kernel)


def test_implausible_kernels_are_flagged_never_best(davinci, worker, ref, monkeypatch):
    program, _ = ref
    reference_cycles = 100_000
    _fake_cycles(monkeypatch, lambda p: p.roofline_cycles - 1, lambda p: reference_cycles // 20,
                 lambda p: reference_cycles // 9, lambda p: reference_cycles // 2)
    proposer = Scripted(program)
    result = tune(relu(), davinci, proposer, budget=4, worker=worker, trials=1,
                  reference_cycles=reference_cycles)
    beyond, twenty, nine, twice = result.candidates
    assert reference_cycles // 20 > beyond.roofline_cycles  # the 20x one breaks only the reference rule
    assert [c.outcome for c in result.candidates] == ["flagged", "flagged", "ok", "ok"]
    assert beyond.flag_reason == f"faster than the roofline: {beyond.cycles} < {beyond.roofline_cycles} cycles"
    assert twenty.flag_reason == f"20.0x faster than the reference ({twenty.cycles} vs 100000 cycles)"
    assert beyond.legal and beyond.correct and not beyond.is_result and nine.is_result
    # excluded from best and from every figure of merit, but counted and kept for review
    assert result.best is nine and twice.is_result and result.first_solved_at == 2 and not result.pass_at_1
    assert result.flagged == [beyond, twenty] and result.outcomes()["flagged"] == 2
    assert beyond.message == f"flagged for review: {beyond.flag_reason}"
    d = json.loads(json.dumps(result.to_dict()))
    assert d["cycles"] == nine.cycles and d["best_iteration"] == 2
    assert [(f["iteration"], f["cycles"], f["reason"], f["program"]) for f in d["flagged"]] == [
        (0, beyond.cycles, beyond.flag_reason, program), (1, twenty.cycles, twenty.flag_reason, program)]
    assert d["flagged"][0]["roofline_cycles"] == beyond.roofline_cycles
    assert d["flagged"][1]["reference_cycles"] == reference_cycles
    # the proposer is not rewarded: no cycles, and none of the gate's numbers reach it
    for task in proposer.tasks[1:3]:
        fb = task.feedback
        assert fb.failed and fb.cycles is None and fb.device_log == (loop_mod.FLAGGED_FEEDBACK,)
        text = fb.render()
        for number in (beyond.cycles, beyond.roofline_cycles, twenty.cycles, reference_cycles):
            assert str(number) not in text
    assert proposer.tasks[3].feedback.cycles == nine.cycles


def test_only_flagged_kernels_mean_unsolved(davinci, worker, ref, monkeypatch):
    program, _ = ref
    _fake_cycles(monkeypatch, lambda p: 0)
    result = tune(relu(), davinci, Scripted(program), budget=2, worker=worker, trials=1)
    assert result.best is None and not result.solved and len(result.flagged) == 2
    assert result.to_dict()["cycles"] is None


def test_without_a_reference_a_fast_kernel_is_judged_by_its_roofline_only(davinci, worker, ref, monkeypatch):
    program, _ = ref
    _fake_cycles(monkeypatch, lambda p: p.roofline_cycles)
    result = tune(relu(), davinci, Scripted(program), budget=1, worker=worker, trials=1)
    assert result.best is result.candidates[0] and result.flagged == []
    flagged = tune(relu(), davinci, Scripted(program), budget=1, worker=worker, trials=1,
                   reference_cycles=result.best.cycles * 11)
    assert flagged.best is None and "11.0x faster than the reference" in flagged.flagged[0].flag_reason


def test_zero_budget_is_an_empty_result(davinci):
    result = tune(relu(), davinci, Scripted(GARBAGE), budget=0)
    assert result.iterations == 0 and not result.solved and not result.pass_at_1


# --- hawk tune ------------------------------------------------------------------------------


@pytest.fixture
def workload_file(tmp_path):
    path = tmp_path / "w.py"
    path.write_text("from hawk.ir import ops\nWORKLOADS = [ops.unary('relu', 'relu', 64, 256)]\n")
    return path


def _fake_offline(monkeypatch, *moves):
    """Stands in for hawk.propose.offline, which `hawk tune --llm offline` imports lazily."""
    made = []

    class OfflineProposer(Scripted):
        name = "offline-stub"

        def __init__(self):
            super().__init__(*moves)
            made.append(self)

    module = types.ModuleType("hawk.propose.offline")
    module.OfflineProposer = OfflineProposer
    monkeypatch.setitem(sys.modules, "hawk.propose.offline", module)
    return made


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_tune_writes_json(capsys, tmp_path, workload_file, ref, monkeypatch):
    program, _ = ref
    made = _fake_offline(monkeypatch, GARBAGE, program, FAULTY)
    out_file = tmp_path / "out.json"
    code, out, err = run(capsys, "tune", "--target", "davinci-like", "--workload", str(workload_file),
                         "--budget", "3", "--seed", "2", "--trials", "1", "--json", str(out_file))
    assert code == 0, err
    assert len(made) == 1 and made[0].calls == [(2, 0), (2, 1), (2, 2)]
    assert "[relu 1/3] admission" in err and "[relu 3/3] fault" in err  # progress on stderr
    assert "relu (elementwise)" in out and "reference" in out and "outcomes:" in out
    report = json.loads(out_file.read_text())
    assert report["target"] == "davinci-like" and report["proposer"] == "offline-stub"
    (entry,) = report["workloads"]
    for key in ("name", "category", "target", "best_program", "cycles", "reference_cycles", "roofline_cycles",
                "iterations", "llm_calls", "pass_at_1", "solved", "fault_history"):
        assert key in entry, key
    assert entry["name"] == "relu" and entry["category"] == "elementwise" and entry["best_program"] == program
    assert entry["solved"] is True and entry["pass_at_1"] is False and entry["iterations"] == 3
    assert entry["llm_calls"] == 3
    # the stub replays the vendor schedule, so it matches the reference
    assert entry["cycles"] == entry["reference_cycles"] and entry["speedup_vs_reference"] == 1.0
    assert 0 < entry["roofline_cycles"] <= entry["cycles"]
    assert [h["outcome"] for h in entry["fault_history"]] == ["admission", "ok", "fault"]
    s = report["summary"]
    assert (s["workloads"], s["solved"], s["pass_at_1"]) == (1, 1, 0)
    assert s["accuracy"] == 1.0 and s["pass_at_1_rate"] == 0.0 and s["geomean_speedup_vs_reference"] == 1.0


def test_cli_tune_shows_flagged_kernels_and_does_not_count_them(capsys, tmp_path, workload_file, ref,
                                                               monkeypatch):
    from hawk.bench import harness

    program, _ = ref
    _fake_offline(monkeypatch, program)
    _fake_cycles(monkeypatch, lambda p: p.roofline_cycles - 1)
    real_time = harness.time_kernel
    monkeypatch.setattr(harness, "time_kernel", lambda k, s, w=None: dataclasses.replace(
        real_time(k, s, w), cycles=1))  # the reference too: beyond its roofline
    out_file = tmp_path / "out.json"
    code, out, err = run(capsys, "tune", "--target", "davinci-like", "--workload", str(workload_file),
                         "--budget", "2", "--trials", "1", "--json", str(out_file))
    assert code == 1  # a flagged kernel does not solve the workload
    assert "[relu 1/2] " in err and "cycles, flagged for review (faster than the roofline: " in err
    assert "no kernel yet" in err
    assert "flagged for review, not counted: 2 kernel(s)" in out
    assert "    iteration 1, 2: " in out  # the same kernel twice is listed once
    assert "reference flagged for review: faster than the roofline: 1 < " in out
    (entry,) = json.loads(out_file.read_text())["workloads"]
    assert entry["solved"] is False and entry["cycles"] is None and entry["speedup_vs_reference"] is None
    assert entry["reference_status"] == "flagged" and entry["reference_cycles"] is None
    assert [f["iteration"] for f in entry["flagged"]] == [0, 1] and entry["flagged"][0]["program"] == program
    summary = json.loads(out_file.read_text())["summary"]
    assert (summary["flagged"], summary["flagged_references"], summary["solved"]) == (2, 1, 0)


def test_cli_tune_exits_1_when_nothing_is_solved(capsys, workload_file, monkeypatch):
    _fake_offline(monkeypatch, FAULTY, DOWN)
    code, out, err = run(capsys, "tune", "--target", "davinci-like", "--workload", str(workload_file),
                         "--budget", "2", "-q", "--json", "-")
    assert code == 1 and err.count("\n") >= 3 and "no legal and correct kernel" in err  # summary to stderr
    report = json.loads(out)
    assert report["workloads"][0]["solved"] is False and report["summary"]["accuracy"] == 0.0


@pytest.mark.parametrize("argv, words", [
    (["--budget", "0"], "--budget"),
    (["--llm", "bogus"], "--llm must be"),
    (["--model", "m"], "only apply to --llm openai"),
    (["--llm", "replay:/nonexistent/t.jsonl"], "no such transcript"),
    (["--llm", "openai", "--api-key-env", "HAWK_TEST_SURELY_UNSET_VAR"], "not set"),
])
def test_cli_tune_bad_usage(capsys, workload_file, argv, words, monkeypatch):
    monkeypatch.delenv("HAWK_TEST_SURELY_UNSET_VAR", raising=False)
    code, _, err = run(capsys, "tune", "--target", "davinci-like", "--workload", str(workload_file), *argv)
    assert code == 2 and words in err


def test_cli_tune_without_the_offline_proposer_is_a_usage_error(capsys, workload_file, monkeypatch):
    monkeypatch.setitem(sys.modules, "hawk.propose.offline", None)  # makes the import fail
    code, _, err = run(capsys, "tune", "--target", "davinci-like", "--workload", str(workload_file))
    assert code == 2 and "offline proposer is not available" in err


def test_cli_tune_needs_a_workload(capsys):
    code, _, err = run(capsys, "tune", "--target", "davinci-like")
    assert code == 2 and "--workload" in err
