"""Knowledge against the loop without it, MetaSchedule and the references, from bench JSONs.

    python bench/knowledge_figures.py --kb KB.json --none NONE.json --baselines BASE.json [--seed 0]

KB.json: ``hawk bench ... --knowledge cold|warm`` (loop with knowledge); NONE.json: the same
suite and target without knowledge (``--baselines loop``); BASE.json: a bench run with
MetaSchedule and the references at the same budget (e.g. docs/bench/SUITE-TARGET/result.json).
Accuracy at 10 iterations is read off each run's first solution (the offline loop's first
ten iterations do not depend on the budget). Prints one Markdown table row and the
workloads where knowledge still loses.
"""

from __future__ import annotations

import argparse
import json
import math


def runs(path: str, seed: int, method: str = "loop") -> dict[str, dict]:
    doc = json.load(open(path))
    out = {}
    for w in doc["workloads"]:
        for s in w["seeds"]:
            if s["seed"] == seed and s.get(method):
                out[w["name"]] = {**s[method], "reference": w["reference"].get("cycles"),
                                  "roofline": w.get("roofline_cycles")}
    return out


def first_solved(run: dict) -> int | None:
    if "first_solved_at" in run:
        return run["first_solved_at"]
    curve = (run.get("knowledge") or {}).get("solved_by_iteration") or []
    return next((i for i, v in enumerate(curve) if v), None)


def geomean_speedup(fast: dict, slow: dict, key_slow=lambda r: r.get("cycles")) -> tuple[float | None, int]:
    logs = [math.log(key_slow(slow[n]) / fast[n]["cycles"]) for n in fast
            if n in slow and fast[n].get("correct") and fast[n].get("cycles") and key_slow(slow[n])]
    return (math.exp(sum(logs) / len(logs)) if logs else None), len(logs)


def fmt(x, n) -> str:
    return "-" if x is None else f"{x:.2f}x (n={n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kb", required=True)
    ap.add_argument("--none", required=True)
    ap.add_argument("--baselines", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--label", default="")
    a = ap.parse_args()
    kb, none = runs(a.kb, a.seed), runs(a.none, a.seed)
    ms = runs(a.baselines, a.seed, "metaschedule")
    n = len(kb)

    def acc(rs, within=None):
        return sum(1 for r in rs.values() if r.get("correct") and (within is None or
                   (first_solved(r) is not None and first_solved(r) < within))) / max(1, len(rs))

    def pass1(rs):
        return sum(1 for r in rs.values() if r.get("pass_at_1")) / max(1, len(rs))

    vs_none = geomean_speedup(kb, none)
    vs_ms = geomean_speedup(kb, ms)
    vs_ref = geomean_speedup(kb, kb, key_slow=lambda r: r.get("reference"))
    none_ref = geomean_speedup(none, none, key_slow=lambda r: r.get("reference"))
    ms_acc = sum(1 for r in ms.values() if r.get("correct")) / max(1, len(ms))
    print("| suite/target/mode | accuracy@30 (no kb) | accuracy@10 (no kb) | pass@1 (no kb) | MetaSchedule accuracy "
          "| Hawk vs no-kb loop | Hawk vs MetaSchedule | Hawk vs reference (no kb) |")
    print(f"| {a.label} ({n}) | {acc(kb):.1%} ({acc(none):.1%}) | {acc(kb, 10):.1%} ({acc(none, 10):.1%}) | "
          f"{pass1(kb):.1%} ({pass1(none):.1%}) | {ms_acc:.1%} | {fmt(*vs_none)} | {fmt(*vs_ms)} | "
          f"{fmt(*vs_ref)} ({fmt(*none_ref)}) |")
    lost = []
    for name, r in sorted(kb.items()):
        if not r.get("correct"):
            lost.append(f"{name}: unsolved" + (" (solved without knowledge)" if none.get(name, {}).get("correct") else ""))
            continue
        for other, label in ((none.get(name), "no-kb loop"), (ms.get(name), "MetaSchedule")):
            if other and other.get("correct") and other["cycles"] < r["cycles"]:
                lost.append(f"{name}: {label} {other['cycles']} < {r['cycles']} cycles")
        if r.get("reference") and r["reference"] < r["cycles"]:
            lost.append(f"{name}: reference {r['reference']} < {r['cycles']} cycles")
    print("\nwhere knowledge loses:\n" + "\n".join("  " + x for x in lost))


if __name__ == "__main__":
    main()
