"""Benchmark (not a test): how often the offline proposer's first proposal is legal, and the
fault codes of the others, over smoke + level1 and seeds 0-4 on both presets, each under
its own scope names and under neutral ones (bench/neutral_names.py: global.npu.m0, m1, ...).

The offline proposer picks scopes by name (``ub``, ``spm``, ... for staging, ``l1`` for
matrix operands), a prior an LLM has as well; the neutral copy has the same constraints,
so the difference between the two rows is what the names are worth.

    python bench/first_proposals.py
"""

import argparse
import collections

from neutral_names import neutral_copy

from hawk.bench.suites import load_suite
from hawk.npu import load_spec, register_intrinsics
from hawk.propose.offline import OfflineProposer
from hawk.propose.program import apply_program
from hawk.propose.prompt import Task
from hawk.runtime import verify


def first_proposals(spec, workloads, seeds):
    """(proposals, legal ones, fault-code histogram) of the first proposal per workload and seed."""
    register_intrinsics(spec)
    hist, n, legal = collections.Counter(), 0, 0
    for wl in workloads:
        for seed in seeds:
            text = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0).text
            applied = apply_program(text, wl.module())
            n += 1
            if not applied.ok:
                hist["(admission error)"] += 1
                continue
            codes = {f.code for f in verify(applied.module, spec)}
            legal += not codes
            hist.update(codes)
    return n, legal, hist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (default 5)")
    args = parser.parse_args()
    workloads = load_suite("smoke") + load_suite("level1")
    print(f"{len(workloads)} workloads (smoke + level1), seeds 0-{args.seeds - 1}, first proposal only")
    print("| preset | scope names | proposals | legal | legal rate | proposals per fault code, admission errors |")
    print("|---|---|---:|---:|---:|---|")
    for preset in ("davinci-like", "edge-like"):
        spec = load_spec(preset)
        for label, variant in (("preset's", spec), ("neutral", neutral_copy(spec))):
            n, legal, hist = first_proposals(variant, workloads, range(args.seeds))
            codes = ", ".join(f"{k} {v}" for k, v in hist.most_common())
            print(f"| {preset} | {label} | {n} | {legal} | {legal / n:.0%} | {codes} |")


if __name__ == "__main__":
    main()
