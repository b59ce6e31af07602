"""How many of the offline proposer's padded GEMMs (pad_einsum) the runtime model admits.

Runs the loop on every level1 workload and counts the candidates whose program pads with
``pad_einsum``: how many were legal, and how many of those correct. Guards that TVM 0.27
writes for padding (``prim.if_then_else``, ``prim.likely``, block predicates) must be
understood by verify for any of them to pass.

    python bench/padded_gemms.py [--target davinci-like] [--seeds 0-2] [--budget 30]
"""

from __future__ import annotations

import argparse

from hawk.bench.suites import load_suite
from hawk.npu import load_spec
from hawk.propose.offline import OfflineProposer
from hawk.runtime import HostWorker
from hawk.search import tune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--target", default="davinci-like")
    ap.add_argument("--seeds", default="0-2")
    ap.add_argument("--budget", type=int, default=30)
    args = ap.parse_args()
    lo, _, hi = args.seeds.partition("-")
    seeds = range(int(lo), int(hi or lo) + 1)
    spec = load_spec(args.target)
    worker = HostWorker()
    padded = legal = correct = 0
    per_workload = {}
    for wl in load_suite("level1"):
        if wl.category != "matmul":
            continue
        for seed in seeds:
            result = tune(wl, spec, OfflineProposer(), budget=args.budget, seed=seed, worker=worker)
            mine = [c for c in result.candidates if c.text and "pad_einsum" in c.text]
            if not mine:
                continue
            row = per_workload.setdefault(wl.name, [0, 0, 0])
            row[0] += len(mine)
            row[1] += sum(c.legal for c in mine)
            row[2] += sum(c.legal and c.correct for c in mine)
    worker.close()
    for name, (n, ok, right) in per_workload.items():
        print(f"{name:28s} padded {n:3d}  legal {ok:3d}  correct {right:3d}")
        padded, legal, correct = padded + n, legal + ok, correct + right
    print(f"{args.target}, seeds {args.seeds}, budget {args.budget}: "
          f"{legal} of {padded} padded GEMM candidates legal, {correct} correct")


if __name__ == "__main__":
    main()
