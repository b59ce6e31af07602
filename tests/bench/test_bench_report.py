"""The bench summary and report: summarize's numbers against hand-computed values, and
write_report's Markdown and PNGs on a small synthetic result (no TVM needed)."""

import copy
import math
import statistics
import subprocess
import sys

import pytest

from hawk.bench.report import fmt_pct, fmt_x, geomean, summarize, write_report

SEEDS = [0, 1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _run(spec, **extra):
    """A per-seed run from shorthand: an int is a legal correct kernel of that many
    cycles, "wrong" is legal but incorrect, "illegal" is neither."""
    if isinstance(spec, int):
        run = {"legal": True, "correct": True, "cycles": spec}
    elif spec == "wrong":
        run = {"legal": True, "correct": False, "cycles": 15}
    else:
        run = {"legal": False, "correct": False, "cycles": None}
    return {**run, **extra}


def _median_solved(specs):
    solved = [s for s in specs if isinstance(s, int)]
    return statistics.median(solved) if solved else None


def _workload(name, category, roofline, reference, ms, loop, pass_at_1=(False, False)):
    """``reference`` is cycles or a status; ``ms`` and ``loop`` are one shorthand per seed."""
    ref = ({"status": "ok", "cycles": reference, "message": ""} if isinstance(reference, int)
           else {"status": reference, "cycles": None, "message": reference})
    seeds = [{"seed": s,
              "loop": _run(loop[i], iterations=4, llm_calls=4, pass_at_1=pass_at_1[i],
                           legal_candidates=2, wall_s=1.0),
              "metaschedule": _run(ms[i], trials=8, legal_trials=6, wall_s=2.0, error="")}
             for i, s in enumerate(SEEDS)]
    solved = sum(isinstance(x, int) for x in loop)
    return {"name": name, "category": category, "model": "test-model", "op": category,
            "roofline_cycles": roofline, "reference": ref,
            "reference_cycles": reference if isinstance(reference, int) else None,
            "legal": solved == len(SEEDS), "correct": solved == len(SEEDS),
            "cycles": _median_solved(loop), "metaschedule_cycles": _median_solved(ms),
            "iterations": 4.0, "llm_calls": 8, "wall_s": 2.0, "solved_seeds": solved, "seeds": seeds}


WORKLOADS = [
    _workload("mm_a", "matmul", 100, 400, [300, 300], [200, 200], pass_at_1=(True, True)),
    _workload("mm_b", "matmul", 50, "none", [200, 200], [100, "illegal"]),
    _workload("conv_a", "conv", 1000, 2000, [1000, 1000], [2000, 2000]),  # MetaSchedule wins
    _workload("conv_b", "conv", 10, "illegal", ["wrong", "illegal"], [40, 40]),
    _workload("relu", "elementwise", 10, 20, [20, 20], ["wrong", "illegal"]),  # loop unsolved
    _workload("add", "elementwise", 8, 16, ["illegal", "illegal"], [8, 16], pass_at_1=(True, False)),
]
ALL = ["reference", "metaschedule", "loop"]


def _result(baselines=ALL, workloads=WORKLOADS):
    workloads = copy.deepcopy(workloads)
    for w in workloads:  # what the driver leaves out for a baseline it did not run
        if "metaschedule" not in baselines:
            w["metaschedule_cycles"] = None
            for s in w["seeds"]:
                s["metaschedule"] = None
        if "loop" not in baselines:
            w.update(cycles=None, solved_seeds=0, legal=False, correct=False)
            for s in w["seeds"]:
                s["loop"] = None
    provenance = {"command": "hawk bench --suite synthetic --target davinci-like --seeds 0,1",
                  "suite": "synthetic", "target": "davinci-like", "llm": "offline", "budget": 4,
                  "seeds": SEEDS, "trials": 8, "commit": "0123456789abcdef", "dirty": True,
                  "date": "2026-05-09T12:00:00", "machine": "test-host", "hawk_version": "0.1.0",
                  "tvm_version": "0.0"}
    return {"provenance": provenance, "baselines": list(baselines), "gate": {"max_speedup": 10.0}, "wall_s": 3725.0,
            "workloads": workloads, "summary": summarize(workloads, list(baselines), SEEDS)}


def _close(stats, value, n):
    assert stats["n"] == n
    assert stats["geomean"] == pytest.approx(value)


def test_geomean_skips_missing_values():
    assert geomean([2, 8, None, 0]) == pytest.approx(4.0)
    assert geomean([None]) is None


def test_summarize_rates_and_roofline():
    s = summarize(WORKLOADS, ALL, SEEDS)
    assert (s["workloads"], s["runs"]) == (6, 12)
    loop = s["loop"]
    assert loop["compile_rate"] == pytest.approx(10 / 12)  # mm_b seed 1 and relu seed 1 illegal
    assert loop["accuracy"] == pytest.approx(9 / 12)
    assert loop["pass_at_1"] == pytest.approx(3 / 12)
    assert loop["candidate_legal_rate"] == pytest.approx(0.5)
    # loop cycles: mm_a 200, mm_b 100, conv_a 2000, conv_b 40, add median(8, 16) = 12
    assert loop["roofline_fraction"] == pytest.approx((0.5 * 0.5 * 0.5 * 0.25 * (8 / 12)) ** (1 / 5))
    ms = s["metaschedule"]
    assert ms["compile_rate"] == pytest.approx(9 / 12)
    assert ms["accuracy"] == pytest.approx(8 / 12)
    assert ms["roofline_fraction"] == pytest.approx((1 / 3 * 1 / 4 * 1 * 1 / 2) ** (1 / 4))
    ref = s["reference"]
    assert ref["available"] == 5 and ref["accuracy"] == pytest.approx(4 / 6)
    assert ref["roofline_fraction"] == pytest.approx((0.25 * 0.5 * 0.5 * 0.5) ** (1 / 4))


def test_summarize_speedups():
    sp = summarize(WORKLOADS, ALL, SEEDS)["speedup"]
    _close(sp["vs_reference"], (2 * 1 * (16 / 12)) ** (1 / 3), 3)      # mm_a, conv_a, add
    _close(sp["vs_metaschedule"], (1.5 * 2 * 0.5) ** (1 / 3), 3)       # mm_a, mm_b, conv_a
    _close(sp["metaschedule_vs_reference"], ((4 / 3) * 2 * 1) ** (1 / 3), 3)  # mm_a, conv_a, relu


def test_summarize_per_seed():
    s0, s1 = summarize(WORKLOADS, ALL, SEEDS)["per_seed"]
    assert s0["seed"] == 0 and s1["seed"] == 1
    assert s0["loop_accuracy"] == pytest.approx(5 / 6)
    assert s1["loop_accuracy"] == pytest.approx(4 / 6)
    assert s0["metaschedule_accuracy"] == pytest.approx(4 / 6)
    assert s0["speedup_vs_reference"] == pytest.approx((2 * 1 * 2) ** (1 / 3))  # add: 16/8 in seed 0
    assert s1["speedup_vs_reference"] == pytest.approx((2 * 1 * 1) ** (1 / 3))
    assert s0["speedup_vs_metaschedule"] == pytest.approx((1.5 * 2 * 0.5) ** (1 / 3))
    assert s1["speedup_vs_metaschedule"] == pytest.approx(math.sqrt(1.5 * 0.5))  # mm_b unsolved


def test_summarize_absent_baselines_are_none():
    s = summarize(WORKLOADS, ["loop"], SEEDS)
    assert s["metaschedule"] is None and s["reference"] is None
    assert s["speedup"]["vs_reference"] == {"geomean": None, "n": 0}
    assert s["per_seed"][0]["metaschedule_accuracy"] is None
    assert s["per_seed"][0]["speedup_vs_metaschedule"] is None
    assert summarize(WORKLOADS, ["reference", "metaschedule"], SEEDS)["loop"] is None


def test_summarize_empty():
    s = summarize([], ALL, SEEDS)
    assert s["runs"] == 0 and s["loop"]["accuracy"] is None
    assert s["speedup"]["vs_reference"] == {"geomean": None, "n": 0}


def test_formatting():
    assert fmt_pct(5 / 6) == "83.3%" and fmt_pct(1e-4) == "0.01%" and fmt_pct(None) == "-"
    assert fmt_x(1.4213) == "1.42x" and fmt_x(None) == "-"


def _png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG_MAGIC


def test_write_report_full(tmp_path):
    path = write_report(_result(), tmp_path / "out")
    assert path == tmp_path / "out" / "report.md"
    text = path.read_text()
    assert text.startswith("# Hawk bench: `synthetic` on `davinci-like`")
    assert "```\nhawk bench --suite synthetic --target davinci-like --seeds 0,1\n```" in text
    assert "(dirty" in text and "1h 02m 05s" in text
    table = text.split("## Per workload")[1].split("## Flagged for review")[0]
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| `")}
    assert {"`mm_a`", "`mm_b`", "`conv_a`", "`conv_b`", "`relu`", "`add`"} <= set(rows)
    assert "no reference" in rows["`mm_b`"] and "illegal" in rows["`conv_b`"]
    assert "unsolved" in rows["`relu`"] and "2/2" in rows["`mm_a`"] and "1/2" in rows["`mm_b`"]
    # sorted by category, then name
    order = [name for name in rows if name in {"`conv_a`", "`add`", "`mm_a`"}]
    assert order[:3] == ["`conv_a`", "`add`", "`mm_a`"]
    wins = text.split("## Where the baselines win")[1].split("## Plots")[0]
    assert "`conv_a`" in wins and "MetaSchedule" in wins and "0.50x" in wins
    assert "`relu`" in wins  # solved by the reference and MetaSchedule, not by the loop
    assert "`mm_a`" not in wins
    assert "83.3%" in text  # loop compile rate
    assert "## Flagged for review" in text and "No kernel was flagged." in text
    assert "flagged for review**" not in text  # no summary note without flagged kernels
    for name in ("speedup.png", "accuracy_by_category.png", "roofline.png"):
        assert _png(tmp_path / "out" / name), name
        assert f"]({name})" in text


@pytest.mark.parametrize("baselines", [["loop"], ["reference", "loop"], ["metaschedule"],
                                       ["reference", "metaschedule"]])
def test_write_report_baseline_subsets(tmp_path, baselines):
    text = write_report(_result(baselines), tmp_path).read_text()
    assert "`conv_a`" in text
    if "metaschedule" not in baselines:
        assert "MetaSchedule cycles" not in text and "MetaSchedule accuracy" not in text
    has_speedup = "loop" in baselines and len(baselines) > 1
    assert _png(tmp_path / "speedup.png") == has_speedup
    assert "](speedup.png)" in text if has_speedup else "`speedup.png` was not drawn:" in text
    assert _png(tmp_path / "roofline.png")
    assert _png(tmp_path / "accuracy_by_category.png")


FLAGGED = [
    {"method": "reference", "seed": None, "iteration": None, "cycles": 5, "roofline_cycles": 10,
     "reference_cycles": None, "reason": "faster than the roofline: 5 < 10 cycles", "program": None},
    {"method": "loop", "seed": 1, "iteration": 3, "cycles": 20, "roofline_cycles": 10, "reference_cycles": 400,
     "reason": "20.0x faster than the reference (20 vs 400 cycles)", "program": "sch.cheat()  # ```x```\n"},
    {"method": "loop", "seed": 1, "iteration": 6, "cycles": 20, "roofline_cycles": 10, "reference_cycles": 400,
     "reason": "20.0x faster than the reference (20 vs 400 cycles)", "program": "sch.cheat()  # ```x```\n"},
    {"method": "metaschedule", "seed": 0, "iteration": None, "cycles": 90, "roofline_cycles": 100,
     "reference_cycles": 400, "reason": "faster than the roofline: 90 < 100 cycles", "program": "sch.fast()\n"},
]


def _with_flagged():
    workloads = copy.deepcopy(WORKLOADS)
    workloads[0]["flagged"] = FLAGGED[1:]  # mm_a: the loop's and MetaSchedule's kernels
    workloads[3]["flagged"] = FLAGGED[:1]  # conv_b: the reference itself
    return _result(workloads=workloads)


def test_summarize_counts_flagged_kernels():
    s = _with_flagged()["summary"]["flagged"]
    assert s == {"reference": 1, "metaschedule": 1, "loop": 2, "total": 4, "workloads": 2}
    assert summarize(WORKLOADS, ALL, SEEDS)["flagged"]["total"] == 0


def test_report_lists_flagged_kernels_for_review(tmp_path):
    text = write_report(_with_flagged(), tmp_path).read_text()
    summary = text.split("## Summary")[1].split("## Per workload")[0]
    assert "**4 kernel(s) on 2 workload(s) were flagged for review**" in summary
    section = text.split("## Flagged for review")[1].split("## Where the baselines win")[0]
    assert "more than 10x faster than the reference" in section
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert len(rows) == 4
    assert rows[0].startswith("| `conv_b` | Reference | - | - | 5 | 10 | - | faster than the roofline: 5 < 10")
    assert "| `mm_a` | Hawk loop | 1 | 4 | 20 | 10 | 400 | 20.0x faster than the reference" in rows[1]
    assert "| `mm_a` | MetaSchedule | 0 | - | 90 | 100 | 400 |" in rows[3]
    # one listing per distinct kernel, fenced longer than the backticks inside it
    assert section.count("<details>") == 2
    assert "Hawk loop seed 1, iteration 4; Hawk loop seed 1, iteration 7" in section
    assert "````python\nsch.cheat()  # ```x```\n````" in section


def test_report_of_a_result_from_before_the_gate(tmp_path):
    result = _result()
    del result["gate"]
    text = write_report(result, tmp_path).read_text()
    assert "## Flagged for review\n\nNot checked: this result predates the gate." in text


def test_write_report_without_data(tmp_path):
    (tmp_path / "speedup.png").write_bytes(b"stale")
    result = _result(workloads=[])
    del result["summary"]  # computed on the fly when the driver did not store one
    text = write_report(result, tmp_path).read_text()
    assert "No workloads." in text
    assert not any(tmp_path.glob("*.png"))


def test_import_does_not_load_matplotlib():
    code = "import sys, hawk.bench.report; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
