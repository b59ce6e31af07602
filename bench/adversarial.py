"""The standing set of adversarial kernels through the tuning loop: which are flagged, and by what.

    python bench/adversarial.py [--out RESULT.json] [-v]

Every kernel of ``tests/adversarial`` (unwritten outputs, stale outputs, input mutation,
right for one seed, constant or shape-specialised, work hidden from the timing model,
faster than the roofline) is judged as ``hawk tune`` judges a candidate, each text admitted
on its own (a sandboxed parse per TVMScript text), beside its honest twin. Prints per
category the kernels, how many were flagged and by which check; exits 1 if any kernel is
not flagged (a known hole included) or its twin is not a result.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.adversarial, run from anywhere

from hawk.runtime import HostWorker

from tests.adversarial.judge import CATEGORIES, Judge, charged, failing_trial, problem
from tests.adversarial.kernels import adversaries


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write every kernel's verdict as JSON here")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per kernel")
    args = ap.parse_args()

    start = time.perf_counter()
    rows = []
    worker = HostWorker()
    try:
        judge = Judge(worker)
        for a in adversaries():
            kernel, twin = judge.adversary(a), judge.twin(a)
            c = kernel.candidate
            paid = charged(a, kernel, twin)
            check = f"time: charged as its twin ({c.cycles} vs {twin.candidate.cycles} cycles)" if paid else kernel.check
            rows.append({
                "name": a.name, "category": a.category, "workload": a.workload.name, "target": a.target,
                "cheat": a.what, "flagged": kernel.flagged or paid, "check": check, "outcome": c.outcome,
                "message": c.message, "failing_trial": failing_trial(c), "as_expected": not problem(a, kernel, twin),
                "cycles": c.cycles, "hole": a.hole, "twin_is_result": twin.candidate.is_result,
                "twin_cycles": twin.candidate.cycles, "reference_cycles": kernel.reference_cycles,
            })
            if args.verbose:
                print(f"  {a.name:28s} {a.target:13s} {rows[-1]['check']:45s} {a.what}", file=sys.stderr)
    finally:
        worker.close()

    width = max(len(title) for title, _, _ in CATEGORIES.values())
    print(f"{'category':{width}s}  kernels  flagged  by which check")
    for cat, (title, _, _) in CATEGORIES.items():
        mine = [r for r in rows if r["category"] == cat]
        checks = Counter(r["check"] for r in mine)
        by = "; ".join(f"{check} x{n}" for check, n in checks.most_common())
        print(f"{title:{width}s}  {len(mine):7d}  {sum(r['flagged'] for r in mine):7d}  {by}")
    through = [r for r in rows if not r["flagged"]]
    odd = [r for r in rows if r["flagged"] and not r["as_expected"]]
    bad_twins = [r for r in rows if not r["twin_is_result"]]
    print(f"total {len(rows)} kernels, {len(rows) - len(through)} flagged, {len(odd)} for an unexpected reason, "
          f"{len(bad_twins)} twins not a result; {time.perf_counter() - start:.0f} s")
    for r in through:
        print(f"NOT FLAGGED: {r['name']} ({r['target']}): {r['cheat']}" + (f" -- known hole: {r['hole']}" if r["hole"] else ""))
    for r in odd:
        print(f"UNEXPECTED: {r['name']}: {r['check']}: {r['message']}")
    for r in bad_twins:
        print(f"TWIN NOT A RESULT: {r['name']}")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))
    return 1 if through or odd or bad_twins else 0


if __name__ == "__main__":
    sys.exit(main())
