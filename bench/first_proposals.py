"""Benchmark (not a test): how often the offline proposer's first proposal is legal, and the
fault codes of the others, over smoke + level1 and seeds 0-4 on both presets.

    python bench/first_proposals.py
"""

import collections
from hawk.bench.suites import load_suite
from hawk.npu import load_spec, register_intrinsics
from hawk.propose.offline import OfflineProposer
from hawk.propose.prompt import Task
from hawk.propose.program import apply_program
from hawk.runtime import verify

def main() -> None:
    for preset in ("davinci-like", "edge-like"):
        spec = load_spec(preset); register_intrinsics(spec)
        hist = collections.Counter(); n = legal = 0
        for wl in load_suite("smoke") + load_suite("level1"):
            for seed in range(5):
                p = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0)
                a = apply_program(p.text, wl.module()); n += 1
                if not a.ok:
                    hist["(admission error)"] += 1; continue
                codes = {f.code for f in verify(a.module, spec)}
                legal += not codes
                for c in codes: hist[c] += 1
        print(preset, f"{n} first proposals, {legal} legal ({legal/n:.0%});", ", ".join(f"{k} {v}" for k, v in hist.most_common()))


if __name__ == "__main__":
    main()
