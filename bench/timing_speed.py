"""Benchmark of the timing model (not a test): simulated instructions per second of the
C++ core against the pure-Python reference simulator, and the wall time to verify + time
one candidate (host execution excluded) over the reference kernels of the built-in suites.

    python bench/timing_speed.py [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from hawk.bench.reference import has_reference, reference_kernel
from hawk.bench.suites import load_suite
from hawk.npu import load_spec
from hawk.runtime import verify
from hawk.runtime.codegen import NpuInstr, NpuProgram
from hawk.runtime.timing import simulate, simulate_reference, time_kernel


def synthetic(tiles: int, inner: int) -> NpuProgram:
    """A double-buffered pipeline: per tile load A, then `inner` x (mma, vector op), store."""
    pipes = ("MTE2", "CUBE", "VECTOR", "MTE3")
    costs = ((200.0, 64.0, 512.0, 0.0, 1.0), (0.0, 1.0, 1.0, 2.0, 1.0), (0.0, 256.0, 1.0, 16.0, 4.0),
             (200.0, 64.0, 512.0, 0.0, 1.0))
    instrs = (
        NpuInstr("load", "dma", 0, 0, (16, 4096, 0, 0), (0,), (1,), ""),
        NpuInstr("mma", "matrix", 1, 1, (64, 1, 0, 0), (1, 2), (2,), ""),
        NpuInstr("act", "vector", 2, 2, (8, 1, 1, 1), (2,), (3,), ""),
        NpuInstr("store", "dma", 3, 3, (16, 4096, 0, 0), (3,), (4,), ""),
    )
    nodes = ((0, tiles, 0, 6), (1, 0, 3, 5), (2, 0, 0, 0), (0, inner, 0, 2), (2, 1, 0, 0), (2, 2, 0, 0),
             (2, 3, 0, 0))
    return NpuProgram(pipes, costs, ("in", "cube", "vec", "out"), ("A", "A_l1", "C", "Y", "Out"),
                      (1, 2, 1, 2, 1), nodes, (1, 2, 3), instrs)


def sim_speed() -> dict:
    big = synthetic(tiles=5_000, inner=1_000)  # ~10M dynamic instructions
    simulate(synthetic(1, 1))  # load the core once
    t0 = time.perf_counter()
    result = simulate(big)
    cpp_s = time.perf_counter() - t0
    small = synthetic(tiles=50, inner=1_000)
    t0 = time.perf_counter()
    ref = simulate_reference(small)
    py_s = time.perf_counter() - t0
    assert ref == simulate(small)
    return {
        "cpp_instructions": result.instructions, "cpp_seconds": round(cpp_s, 4),
        "cpp_instructions_per_s": round(result.instructions / cpp_s),
        "python_instructions": ref.instructions, "python_seconds": round(py_s, 4),
        "python_instructions_per_s": round(ref.instructions / py_s),
        "speedup": round((result.instructions / cpp_s) / (ref.instructions / py_s), 1),
    }


def candidate_speed() -> dict:
    rows = []
    for preset in ("davinci-like", "edge-like"):
        spec = load_spec(preset)
        for suite in ("smoke", "level1"):
            for wl in load_suite(suite):
                if not has_reference(wl, spec):
                    continue
                kernel = reference_kernel(wl, spec)
                t0 = time.perf_counter()
                faults = verify(kernel, spec)
                t1 = time.perf_counter()
                profile = time_kernel(kernel, spec, wl)
                t2 = time.perf_counter()
                assert not faults
                rows.append({"target": preset, "workload": wl.name, "verify_ms": (t1 - t0) * 1e3,
                             "time_ms": (t2 - t1) * 1e3, "total_ms": (t2 - t0) * 1e3,
                             "cycles": profile.cycles})
    totals = sorted(r["total_ms"] for r in rows)
    return {"candidates": len(rows), "median_verify_ms": round(statistics.median(r["verify_ms"] for r in rows), 2),
            "median_time_ms": round(statistics.median(r["time_ms"] for r in rows), 2),
            "median_total_ms": round(statistics.median(totals), 2), "max_total_ms": round(totals[-1], 2),
            "rows": rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    sim = sim_speed()
    cand = candidate_speed()
    print(f"C++ core:      {sim['cpp_instructions']:,} instructions in {sim['cpp_seconds']} s = "
          f"{sim['cpp_instructions_per_s'] / 1e6:.1f} M instructions/s (target >= 10 M/s)")
    print(f"Python ref:    {sim['python_instructions']:,} instructions in {sim['python_seconds']} s = "
          f"{sim['python_instructions_per_s'] / 1e6:.2f} M instructions/s; C++ is {sim['speedup']}x faster")
    print(f"verify + time: median {cand['median_total_ms']} ms per candidate (verify {cand['median_verify_ms']} ms, "
          f"time {cand['median_time_ms']} ms; max {cand['max_total_ms']} ms) over {cand['candidates']} "
          "reference kernels of smoke + level1 on both presets (target < 20 ms)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"simulator": sim, "candidates": cand}, f, indent=2)


if __name__ == "__main__":
    main()
