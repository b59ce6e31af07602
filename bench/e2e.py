"""End to end: a model's total simulated cycles with Hawk and with MetaSchedule, and the roofline.

    python bench/e2e.py --model examples/llama_block.py --target davinci-like --budget 30 [--kb L1.sqlite]
                        [--json OUT]

Hawk: ``tune_model`` (the loop with knowledge, one database) then ``compile_model`` from the
database (no further search); the total is what the compile report gives, per call summed
over the model. MetaSchedule: stock tuning of every task over the NPU design space with
the same trials per task, each task's best checked on the host (``tune_metaschedule``),
weighted the same way. Vendor op by op (``bench/vendor_ops.py``): the unfused graph, the
vendor library's kernel for every op it has, Hawk's search (same budget, same knowledge)
for the rest. Roofline: the sum of the tasks' roofline bounds. Wall times of each. A task
without a legal, correct kernel leaves its total open (null).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from hawk.npu import load_spec
from hawk.runtime import HostWorker
from hawk.runtime.roofline import roofline
from hawk.tuning import compile_model, extract_tasks, tune_metaschedule, tune_model
from hawk.tuning.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--budget", type=int, default=30, help="iterations (Hawk) and trials (MetaSchedule) per task")
    ap.add_argument("--kb", help="knowledge store for Hawk (a copy is used; the file is not changed)")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--columns", default="hawk,metaschedule,vendor", help="which of hawk,metaschedule,vendor")
    ap.add_argument("--json")
    a = ap.parse_args()
    spec = load_spec(a.target)
    model = load_model(a.model)
    tasks = extract_tasks(model.mod, spec)
    row = {"model": Path(a.model).stem, "target": spec.name, "budget": a.budget, "tasks": len(tasks)}
    row["roofline"] = sum(roofline(t.workload, spec).cycles * t.weight for t in tasks)
    columns = set(a.columns.split(","))
    if "hawk" in columns:
        row["hawk"] = hawk_column(model, spec, a)
    if "metaschedule" in columns:
        row["metaschedule"] = metaschedule_column(tasks, spec, a.budget)
    if "vendor" in columns:
        row["vendor_op_by_op"] = vendor_column(model, spec, a)
    print(json.dumps(row, indent=1))
    if a.json:
        Path(a.json).write_text(json.dumps(row, indent=1) + "\n")


def _kb_copy(a, tmp: str):
    if not a.kb:
        return None
    import shutil

    shutil.copy(a.kb, Path(tmp) / "kb.sqlite")
    return Path(tmp) / "kb.sqlite"


def hawk_column(model, spec, a) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        tune_model(model.mod, spec, Path(tmp) / "work", budget=a.budget, knowledge=_kb_copy(a, tmp), jobs=a.jobs)
        _, report = compile_model(model.mod, spec, database=Path(tmp) / "work", budget=0)
        return {"cycles": report.total_cycles, "wall_s": round(time.perf_counter() - start, 1),
                "unscheduled": [k.name for k in report.kernels if k.cycles is None],
                "found": sum(k.cycles * k.calls for k in report.kernels if k.cycles is not None),
                "kernels": [{"name": k.name, "calls": k.calls, "cycles": k.cycles} for k in report.kernels]}


def metaschedule_column(tasks, spec, budget: int) -> dict:
    start = time.perf_counter()
    total, missing, kernels = 0, [], []
    worker = HostWorker()
    try:
        for t in tasks:
            r = tune_metaschedule(t.workload, spec, budget=budget, worker=worker)
            kernels.append({"name": t.name, "calls": t.weight, "cycles": r.cycles if r.correct else None})
            if r.correct:
                total += r.cycles * t.weight
            else:
                missing.append(t.name)
    finally:
        worker.close()
    return {"cycles": None if missing else total, "wall_s": round(time.perf_counter() - start, 1),
            "unsolved": missing, "found": total, "kernels": kernels}


def vendor_column(model, spec, a) -> dict:
    from hawk.knowledge import KnowledgeStore
    from hawk.knowledge.base import Knowledge
    from vendor_ops import op_by_op

    start = time.perf_counter()
    worker = HostWorker()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = _kb_copy(a, tmp)
            store = KnowledgeStore(path) if path else None
            try:
                out = op_by_op(model.mod, spec, budget=a.budget, worker=worker,
                               knowledge=Knowledge(store) if store is not None else None)
            finally:
                if store is not None:
                    store.close()
    finally:
        worker.close()
    return {**out, "wall_s": round(time.perf_counter() - start, 1)}


if __name__ == "__main__":
    main()
