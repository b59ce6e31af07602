"""Stock MetaSchedule with Hawk's exported rules against its defaults, at an equal trial budget.

    python bench/rules_figures.py --rules RULES.json --target davinci-like [--suite level1] [--budget 32]

For every workload: MetaSchedule over the NPU design space (``hawk.tuning.space``, the
baseline), and the same with the rules' postprocessor (``Rules.space``). Prints the rate of
legal candidates among those built, workloads with a legal and correct kernel, and the best
cycles' geometric-mean ratio over the workloads both solved; ``--json`` keeps the rows.
"""

from __future__ import annotations

import argparse
import json
import math

from hawk.bench.suites import load_suite
from hawk.npu import api_view, load_spec
from hawk.runtime import HostWorker
from hawk.tuning.metaschedule import tune_metaschedule
from hawk.tuning.rules import load_rules


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rules", required=True)
    ap.add_argument("--target", required=True)
    ap.add_argument("--suite", default="level1")
    ap.add_argument("--budget", type=int, default=32)
    ap.add_argument("--json")
    a = ap.parse_args()
    spec = load_spec(a.target)
    rules = load_rules(a.rules)
    rows = []
    worker = HostWorker()
    try:
        for wl in load_suite(a.suite):
            row = {"workload": wl.name}
            for name, space in (("default", None), ("rules", rules.space(api_view(spec)))):
                r = tune_metaschedule(wl, spec, budget=a.budget, worker=worker, space=space)
                row[name] = {"trials": r.trials, "legal": r.legal_trials, "cycles": r.cycles if r.correct else None}
            rows.append(row)
            print(wl.name, row["default"], row["rules"], flush=True)
    finally:
        worker.close()
    print(f"\n{a.suite} {a.target}, {a.budget} trials each")
    print("| MetaSchedule | legal candidates | solved | best cycles vs defaults (geomean, both solved) |")
    print("|---|---:|---:|---:|")
    both = [r for r in rows if r["default"]["cycles"] and r["rules"]["cycles"]]
    for name in ("default", "rules"):
        legal = sum(r[name]["legal"] for r in rows) / max(1, sum(r[name]["trials"] for r in rows))
        solved = sum(r[name]["cycles"] is not None for r in rows)
        ratio = math.exp(sum(math.log(r["default"]["cycles"] / r[name]["cycles"]) for r in both) / len(both)) \
            if both else float("nan")
        print(f"| {'with exported rules' if name == 'rules' else 'defaults'} | {100 * legal:.1f}% | "
              f"{solved}/{len(rows)} | {ratio:.2f}x (n={len(both)}) |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
