"""``hawk bench``: every baseline on every workload of a suite, over several seeds.

Per workload: the roofline; the vendor reference kernel (verified, run on the host, timed;
"none" where the library has no kernel, never an invented one); per seed the
MetaSchedule baseline (``hawk.tuning``) and Hawk's generation loop (``hawk.search``), both
at the same trial budget on the same NPU model and inputs. The result is one JSON-able
dict (schema in ``hawk.bench.report``); ``summarize`` computes the summary.

Every timed kernel passes the gate (``hawk.search.gate``): one faster than its roofline, or
more than ``MAX_SPEEDUP`` times faster than the reference, is no method's result; it is
listed under the workload's ``flagged`` for review. The reference is judged on every
workload, also when it is not a compared baseline, because its cycles arm that gate.
"""

from __future__ import annotations

import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from ..ir.workload import Workload
from ..npu import register_intrinsics
from ..npu.spec import HardwareSpec
from ..runtime.execute import DEFAULT_TIMEOUT_S, DEFAULT_TRIALS, HostWorker, execute
from ..runtime.roofline import roofline
from ..runtime.timing import time_kernel
from ..runtime.verify import verify
from ..search.gate import MAX_SPEEDUP, gate
from .report import summarize

BASELINES = ("reference", "metaschedule", "loop")


def reference_entry(workload: Workload, spec: HardwareSpec, *, trials: int = DEFAULT_TRIALS,
                    timeout: float = DEFAULT_TIMEOUT_S, worker: HostWorker | None = None) -> dict:
    """The vendor kernel judged like any candidate: status none, error, illegal, wrong, flagged or ok.

    A flagged reference (faster than its roofline: the model is wrong) has no cycles; what
    the gate saw is under ``flagged``."""
    from .reference import has_reference, reference_kernel

    if not has_reference(workload, spec):
        return {"status": "none", "cycles": None, "message": f"no reference kernel for op {workload.op!r}"}
    try:
        kernel = reference_kernel(workload, spec)
        faults = verify(kernel, spec)
        if faults:
            return {"status": "illegal", "cycles": None, "message": faults[0].log}
        outcome = execute(kernel, workload, trials=trials, timeout=timeout, worker=worker)
        if outcome.status != "ok":
            return {"status": "wrong", "cycles": None, "message": f"{outcome.status}: {outcome.message}"}
        profile = time_kernel(kernel, spec, workload)
        verdict = gate(cycles=profile.cycles, roofline_cycles=profile.roofline_cycles, model_bug=profile.model_bug)
        if verdict.flagged:
            return {"status": "flagged", "cycles": None, "message": verdict.reason,
                    "flagged": {"iteration": None, "cycles": profile.cycles,
                                "roofline_cycles": profile.roofline_cycles, "reference_cycles": None,
                                "reason": verdict.reason, "program": None}}
        return {"status": "ok", "cycles": profile.cycles, "message": ""}
    except Exception as err:  # noqa: BLE001 -- a broken reference costs its comparison only
        return {"status": "error", "cycles": None, "message": f"{type(err).__name__}: {err}"}


def roofline_cycles(workload: Workload, spec: HardwareSpec) -> int | None:
    try:
        return roofline(workload, spec).cycles
    except Exception:  # noqa: BLE001 -- the roofline is context, not a result
        return None


def loop_entry(result, knowledge=None) -> dict:
    """One seed of the generation loop (a ``TuneResult``) in the bench schema."""
    best = result.best
    legal = sum(c.legal for c in result.candidates)
    # legal: the loop produced a kernel the NPU accepts; correct: one that also computes the right thing
    extra = {}
    if knowledge is not None:
        extra["knowledge"] = knowledge_entry(result, knowledge)
    return {**extra, "legal": legal > 0, "correct": best is not None,
            "cycles": best.cycles if best else None, "iterations": result.iterations,
            "llm_calls": result.llm_calls, "pass_at_1": result.pass_at_1, "first_solved_at": result.first_solved_at,
            "legal_candidates": legal,
            "wall_s": round(sum(c.wall_s for c in result.candidates), 3),
            "best_program": best.text if best else None, "flagged": result.flagged_entries()}


def knowledge_entry(result, knowledge) -> dict:
    """What knowledge did in one loop run: repairs by origin and how many worked, the first
    solution, what the store holds after it."""
    repairs = [c for c in result.candidates if c.origin != "proposer"]
    by = {}
    for c in repairs:
        d = by.setdefault(c.origin, {"tried": 0, "results": 0})
        d["tried"] += 1
        d["results"] += c.is_result
    return {"repairs": by, "best_origin": result.best.origin if result.best else None,
            "solved_by_iteration": [int(any(c.is_result for c in result.candidates[: i + 1]))
                                    for i in range(len(result.candidates))],
            "store_triples": len(knowledge.triples()), "learned_so_far": len(knowledge.learned),
            "retrievals": knowledge.retrievals,
            "distilled": _decisions(knowledge.distillations),
            "effect_model": model.meta.get("quality") if (model := knowledge.effect()) is not None else None}


def _decisions(reports) -> dict[str, int]:
    """Distillation decisions taken so far in this run, by kind (and how many were rejected)."""
    out = Counter(e["action"] for report in reports for e in report.applied)
    out["rejected"] += sum(len(report.rejected) for report in reports)
    return {k: v for k, v in out.items() if v}


def run_bench(workloads: list[Workload], spec: HardwareSpec, *, make_proposer: Callable | None = None,
              baselines=BASELINES, budget: int = 30, seeds=(0,), trials: int = DEFAULT_TRIALS,
              exec_timeout: float = DEFAULT_TIMEOUT_S, provenance: dict | None = None,
              progress: bool = True, knowledge: dict | None = None) -> dict:
    """Run the chosen baselines; ``make_proposer()`` gives a fresh proposer per (workload, seed).

    ``knowledge`` maps a seed to the ``hawk.knowledge.Knowledge`` its loop runs use (in
    suite order, so a cold store learns across the suite); without it the loop has none.

    Interrupted (Ctrl-C), it returns the workloads finished so far with ``interrupted`` set."""
    from tqdm import tqdm

    from ..search import tune
    from ..tuning import tune_metaschedule

    unknown = set(baselines) - set(BASELINES)
    if unknown:
        raise ValueError(f"unknown baseline(s) {sorted(unknown)}; choose from {', '.join(BASELINES)}")
    if "loop" in baselines and make_proposer is None:
        raise ValueError("the loop baseline needs make_proposer")
    register_intrinsics(spec)
    start = time.perf_counter()
    tuned = [b for b in baselines if b in ("metaschedule", "loop")]
    steps = len(workloads) * (1 + len(tuned) * len(seeds))
    entries = []
    worker = HostWorker()
    bar = tqdm(total=steps, desc=f"bench {spec.name}", unit="run", file=sys.stderr, disable=not progress,
               dynamic_ncols=True)
    try:
        for wl in workloads:
            entry = {"name": wl.name, "category": wl.category, "model": wl.model, "op": wl.op,
                     "roofline_cycles": roofline_cycles(wl, spec), "seeds": []}
            bar.set_postfix_str(f"{wl.name}: reference")
            entry["reference"] = reference_entry(wl, spec, trials=trials, timeout=exec_timeout, worker=worker)
            reference_cycles = entry["reference"]["cycles"]  # None unless legal, correct and unflagged
            bar.update()
            for seed in seeds:
                runs = {"seed": seed, "loop": None, "metaschedule": None}
                if "metaschedule" in baselines:
                    bar.set_postfix_str(f"{wl.name}: MetaSchedule, seed {seed}")
                    ms = tune_metaschedule(wl, spec, budget=budget, seed=seed, trials=trials,
                                           exec_timeout=exec_timeout, worker=worker,
                                           reference_cycles=reference_cycles)
                    runs["metaschedule"] = ms.to_dict()
                    bar.update()
                if "loop" in baselines:
                    bar.set_postfix_str(f"{wl.name}: loop, seed {seed}")
                    kb = (knowledge or {}).get(seed)
                    result = tune(wl, spec, make_proposer(), budget=budget, seed=seed, worker=worker,
                                  trials=trials, timeout=exec_timeout, reference_cycles=reference_cycles,
                                  knowledge=kb)
                    runs["loop"] = loop_entry(result, knowledge=kb)
                    bar.update()
                entry["seeds"].append(runs)
            _aggregate(entry)
            entries.append(entry)
            bar.write(_one_line(entry))
    except KeyboardInterrupt:  # keep what is finished: a long run stopped by hand still reports
        interrupted = True
    else:
        interrupted = False
    finally:
        bar.close()
        worker.close()
    return {"provenance": provenance or {}, "baselines": list(baselines), "gate": {"max_speedup": MAX_SPEEDUP},
            "wall_s": round(time.perf_counter() - start, 1), "interrupted": interrupted,
            "workloads": entries, "summary": summarize(entries, list(baselines), list(seeds))}


def _median(values) -> int | None:
    values = [v for v in values if v is not None]
    return int(statistics.median(values)) if values else None


def _aggregate(entry: dict) -> None:
    """Per-workload figures over the seeds: cycles are medians over the seeds that solved it."""
    loops = [s["loop"] for s in entry["seeds"] if s["loop"] is not None]
    mss = [s["metaschedule"] for s in entry["seeds"] if s["metaschedule"] is not None]
    solved = [r for r in loops if r["legal"] and r["correct"]]
    entry["reference_cycles"] = entry["reference"]["cycles"]
    entry["legal"] = bool(loops) and all(r["legal"] for r in loops)
    entry["correct"] = bool(loops) and all(r["correct"] for r in loops)
    entry["solved_seeds"] = len(solved)
    entry["cycles"] = _median(r["cycles"] for r in solved)
    entry["metaschedule_cycles"] = _median(r["cycles"] for r in mss if r["legal"] and r["correct"])
    entry["iterations"] = round(statistics.mean(r["iterations"] for r in loops), 2) if loops else 0
    entry["llm_calls"] = sum(r["llm_calls"] for r in loops)
    entry["wall_s"] = round(sum(r["wall_s"] for r in loops), 3)
    entry["flagged"] = _flagged(entry)


def _flagged(entry: dict) -> list[dict]:
    """Every kernel the gate held for review on this workload, in one shape."""
    found = []
    if entry["reference"]["status"] == "flagged":
        found.append({"method": "reference", "seed": None, **entry["reference"]["flagged"]})
    for runs in entry["seeds"]:
        for method in ("metaschedule", "loop"):
            for flagged in (runs[method] or {}).get("flagged", []):
                found.append({"method": method, "seed": runs["seed"], **flagged})
    return found


def _one_line(e: dict) -> str:
    def show(c):
        return f"{c}" if c is not None else "-"

    ref = e["reference"]
    ref_s = show(ref["cycles"]) if ref["status"] == "ok" else ref["status"]
    flagged = f"  flagged for review: {len(e['flagged'])}" if e["flagged"] else ""
    return (f"{e['name']:30s} ref {ref_s:>10s}  MetaSchedule {show(e['metaschedule_cycles']):>10s}  "
            f"loop {show(e['cycles']):>10s}  roofline {show(e['roofline_cycles'])}{flagged}")


def provenance(command: str, *, suite: str, target: str, llm: str, budget: int, seeds, trials: int) -> dict:
    """What produced a result: the command, its settings, the commit and the machine."""
    import tvm

    from .. import __version__

    commit, dirty = _git_state()
    return {"command": command, "suite": suite, "target": target, "llm": llm, "budget": budget,
            "seeds": list(seeds), "trials": trials, "commit": commit, "dirty": dirty,
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {_cores()} cores, Python {platform.python_version()}",
            "hawk_version": __version__, "tvm_version": tvm.__version__}


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _git_state() -> tuple[str, bool]:
    root = Path(__file__).resolve().parents[3]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                    capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return "unknown", False
    return commit or "unknown (not a git checkout)", dirty
