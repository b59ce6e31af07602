"""hawk bench: baselines over a suite, the result schema, the CLI."""

import json

import pytest

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
    assert entry["reference"]["status"] == "not run"


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
    assert entry["legal_candidates"] == 1 and entry["iterations"] == 2
