"""hawk bench: baselines over a suite, the result schema, the CLI."""

import dataclasses
import json

import pytest

from hawk.bench import harness
from hawk.bench.harness import provenance, reference_entry, run_bench
from hawk.bench.suites import find_workload, load_suite
from hawk.cli import main
from hawk.propose.offline import OfflineProposer

WORKLOAD_KEYS = {"name", "category", "model", "legal", "correct", "cycles", "reference_cycles",
                 "metaschedule_cycles", "roofline_cycles", "iterations", "llm_calls", "wall_s"}


def test_reference_entry_judges_the_vendor_kernel(davinci):
    ok = reference_entry(find_workload("silu_f32"), davinci)
    assert ok["status"] == "ok" and ok["cycles"] > 0
    none = reference_entry(find_workload("matmul_nt_bert_qkv"), davinci)
    assert none["status"] == "none" and none["cycles"] is None and "matmul_nt" in none["message"]


def _reference_beyond_roofline(monkeypatch, names):
    """The simulator reports the reference of the named workloads one cycle under its roofline."""
    real_time = harness.time_kernel

    def time_kernel(kernel, spec, workload=None):
        profile = real_time(kernel, spec, workload)
        if workload.name in names:
            return dataclasses.replace(profile, cycles=profile.roofline_cycles - 1)
        return profile

    monkeypatch.setattr(harness, "time_kernel", time_kernel)


def test_a_reference_beyond_its_roofline_is_flagged_not_a_result(davinci, monkeypatch):
    _reference_beyond_roofline(monkeypatch, {"silu_f32"})
    ref = reference_entry(find_workload("silu_f32"), davinci)
    assert ref["status"] == "flagged" and ref["cycles"] is None
    f = ref["flagged"]
    assert f["cycles"] == f["roofline_cycles"] - 1 and f["reference_cycles"] is None and f["program"] is None
    assert ref["message"] == f["reason"] == f"faster than the roofline: {f['cycles']} < {f['roofline_cycles']} cycles"


def test_bench_gates_every_method_and_lists_the_flagged(edge, monkeypatch):
    """Both tuners get the judged reference's cycles for their gate (none when it is flagged);
    their flagged kernels, and a flagged reference, land in the workload's ``flagged``."""
    import hawk.search
    import hawk.tuning
    from hawk.search import Candidate, TuneResult
    from hawk.tuning import MetaScheduleResult

    seen = {}
    review = {"iteration": None, "cycles": 3, "roofline_cycles": 9, "reference_cycles": None,
              "reason": "faster than the roofline: 3 < 9 cycles", "program": "sch.ms()\n"}

    def fake_tune(wl, spec, proposer, *, reference_cycles, **kw):
        seen[(wl.name, "loop")] = reference_cycles
        result = TuneResult(wl.name, spec.name, "fake", kw["seed"], 2, reference_cycles)
        result.candidates = [
            Candidate(0, text="sch.fast()\n", stage="done", outcome="flagged", exec_status="ok", cycles=4,
                      roofline_cycles=9, flag_reason="faster than the roofline: 4 < 9 cycles"),
            Candidate(1, text="sch.ok()\n", stage="done", outcome="ok", exec_status="ok", cycles=50)]
        return result

    def fake_metaschedule(wl, spec, *, reference_cycles, **kw):
        seen[(wl.name, "metaschedule")] = reference_cycles
        return MetaScheduleResult(trials=2, legal=True, flagged=[{**review, "reference_cycles": reference_cycles}])

    monkeypatch.setattr(hawk.search, "tune", fake_tune)
    monkeypatch.setattr(hawk.tuning, "tune_metaschedule", fake_metaschedule)
    _reference_beyond_roofline(monkeypatch, {"add_f16"})
    workloads = [find_workload("silu_f32", "smoke"), find_workload("add_f16", "smoke")]
    result = run_bench(workloads, edge, make_proposer=lambda: None, baselines=["metaschedule", "loop"],
                       budget=2, seeds=[0], progress=False)
    json.dumps(result)
    silu, add = result["workloads"]
    # the reference is judged although it is not a compared baseline: it arms the gate
    assert silu["reference"]["status"] == "ok" and add["reference"]["status"] == "flagged"
    ref = silu["reference_cycles"]
    assert seen == {("silu_f32", "loop"): ref, ("silu_f32", "metaschedule"): ref,
                    ("add_f16", "loop"): None, ("add_f16", "metaschedule"): None}
    assert silu["cycles"] == 50 and silu["solved_seeds"] == 1  # the flagged 4 cycles are not the best
    assert silu["metaschedule_cycles"] is None
    assert [(f["method"], f["seed"], f["iteration"], f["cycles"]) for f in silu["flagged"]] == [
        ("metaschedule", 0, None, 3), ("loop", 0, 0, 4)]
    assert silu["flagged"][1]["program"] == "sch.fast()\n"
    assert silu["flagged"][1]["reference_cycles"] == silu["reference_cycles"]
    assert [f["method"] for f in add["flagged"]] == ["reference", "metaschedule", "loop"]
    assert result["gate"] == {"max_speedup": 10.0}
    assert result["summary"]["flagged"] == {"reference": 1, "metaschedule": 2, "loop": 2, "total": 5,
                                            "workloads": 2}


def test_bench_reference_and_loop_over_two_seeds(edge):
    workloads = [find_workload("silu_f32", "smoke"), find_workload("add_f16", "smoke")]
    result = run_bench(workloads, edge, make_proposer=OfflineProposer, baselines=["reference", "loop"],
                       budget=3, seeds=[0, 1], progress=False)
    json.dumps(result)  # the result is plain JSON
    assert [w["name"] for w in result["workloads"]] == ["silu_f32", "add_f16"]
    for w in result["workloads"]:
        assert WORKLOAD_KEYS <= set(w)
        assert [s["seed"] for s in w["seeds"]] == [0, 1]
        assert all(s["metaschedule"] is None and s["loop"]["iterations"] == 3 for s in w["seeds"])
        assert w["metaschedule_cycles"] is None
        solved = [s["loop"]["cycles"] for s in w["seeds"] if s["loop"]["correct"]]
        assert w["solved_seeds"] == len(solved)
        if solved:
            assert min(solved) <= w["cycles"] <= max(solved)
        assert w["reference"]["status"] == "ok" and w["reference_cycles"] == w["reference"]["cycles"]
        assert w["flagged"] == [f for s in w["seeds"] for f in s["loop"]["flagged"]]
    summary = result["summary"]
    assert summary["workloads"] == 2 and summary["runs"] == 4
    assert summary["metaschedule"] is None
    assert 0 <= summary["loop"]["accuracy"] <= 1
    for seed in summary["per_seed"]:  # each seed's speedup says how many workloads it covers
        solved = sum(1 for w in result["workloads"] for s in w["seeds"]
                     if s["seed"] == seed["seed"] and s["loop"]["correct"])
        assert seed["n_vs_reference"] == solved and seed["n_vs_metaschedule"] == 0


def test_bench_metaschedule_baseline(davinci):
    wl = find_workload("add_f16", "smoke")
    result = run_bench([wl], davinci, baselines=["metaschedule"], budget=6, seeds=[0], progress=False)
    (entry,) = result["workloads"]
    ms = entry["seeds"][0]["metaschedule"]
    assert ms["trials"] <= 6 and entry["seeds"][0]["loop"] is None
    assert entry["metaschedule_cycles"] == (ms["cycles"] if ms["correct"] else None)
    assert entry["reference"]["status"] == "ok"  # judged for the gate, though not compared
    assert isinstance(ms["flagged"], list) and isinstance(entry["flagged"], list)


def test_bench_rejects_unknown_baselines(davinci):
    with pytest.raises(ValueError, match="unknown baseline"):
        run_bench(load_suite("smoke")[:1], davinci, baselines=["autotvm"], progress=False)


def test_provenance_names_the_commit_and_settings():
    p = provenance("hawk bench --suite smoke", suite="smoke", target="edge-like", llm="offline", budget=3,
                   seeds=[0, 1], trials=5)
    assert p["command"] == "hawk bench --suite smoke" and p["seeds"] == [0, 1] and p["budget"] == 3
    assert p["commit"] and p["date"] and "cores" in p["machine"]


def test_cli_bench_writes_json_and_report(tmp_path, capsys):
    out, report = tmp_path / "bench.json", tmp_path / "report"
    code = main(["bench", "--suite", "smoke", "--workload", "silu_f32", "--target", "edge-like",
                 "--baselines", "reference,loop", "--budget", "2", "--seeds", "0-1", "--json", str(out),
                 "--report", str(report), "-q"])
    assert code == 0
    result = json.loads(out.read_text())
    assert result["provenance"]["command"].startswith("hawk bench --suite smoke")
    assert result["provenance"]["seeds"] == [0, 1]
    text = (report / "report.md").read_text()
    assert "silu_f32" in text and result["provenance"]["command"] in text
    assert "accuracy" in capsys.readouterr().out


def test_cli_bench_shows_a_flagged_reference(tmp_path, capsys, monkeypatch):
    _reference_beyond_roofline(monkeypatch, {"silu_f32"})
    out, report = tmp_path / "bench.json", tmp_path / "report"
    code = main(["bench", "--suite", "smoke", "--workload", "silu_f32", "--target", "edge-like",
                 "--baselines", "reference", "--json", str(out), "--report", str(report), "-q"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "flagged for review, not counted: 1 kernel(s) on 1 workload(s) (loop 0, MetaSchedule 0, reference 1)" \
        in printed
    (entry,) = json.loads(out.read_text())["workloads"]
    assert entry["reference"]["status"] == "flagged" and entry["reference_cycles"] is None
    text = (report / "report.md").read_text()
    section = text.split("## Flagged for review")[1]
    assert "| `silu_f32` | Reference |" in section and "faster than the roofline" in section


@pytest.mark.parametrize("args, message", [
    (["--baselines", "reference,autotvm"], "--baselines"),
    (["--seeds", "a-b"], "--seeds"),
    (["--workload", "no_such_workload"], "not in suite"),
    (["--budget", "0"], "--budget"),
])
def test_cli_bench_bad_input_is_a_usage_error(args, message, capsys):
    code = main(["bench", "--suite", "smoke", "--target", "edge-like", "-q", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_interrupted_bench_keeps_the_finished_workloads(edge, monkeypatch, tmp_path, capsys):
    import hawk.search

    real_tune = hawk.search.tune
    calls = []

    def tune_then_interrupt(*args, **kw):
        calls.append(args[0].name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_tune(*args, **kw)

    monkeypatch.setattr(hawk.search, "tune", tune_then_interrupt)
    out = tmp_path / "partial.json"
    code = main(["bench", "--suite", "smoke", "--target", "edge-like", "--baselines", "loop", "--budget", "1",
                 "--json", str(out), "-q"])
    assert code == 130
    result = json.loads(out.read_text())
    assert result["interrupted"] and [w["name"] for w in result["workloads"]] == [calls[0]]
    assert "interrupted: 1 of 6" in capsys.readouterr().err


def test_loop_entry_separates_legal_from_correct():
    from hawk.bench.harness import loop_entry
    from hawk.search import Candidate, TuneResult

    result = TuneResult("silu_f32", "davinci-like", "offline", 0, 2)
    result.candidates = [Candidate(0, stage="verify", outcome="fault"),
                         Candidate(1, stage="execute", outcome="wrong", exec_status="mismatch")]
    entry = loop_entry(result)
    assert entry["legal"] and not entry["correct"] and entry["cycles"] is None
    assert entry["legal_candidates"] == 1 and entry["iterations"] == 2 and entry["flagged"] == []
