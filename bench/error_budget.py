"""The error budget behind execute's tolerances: how far correct kernels land from the
float64 reference, per value profile.

For every workload of the suites with float outputs and a numpy (float64) reference, under
every value profile it has (``hawk.ir.workload.PROFILES``, scaled as execute scales them)
and several seeds, two kinds of correct kernel run on the host:

- function: the unscheduled workload function (what every schedule of it computes);
- vendor: the vendor library's kernel for the workload on each preset (``hawk.bench.reference``).

An element's error is the smallest tolerance t at which it passes execute's check,
|got - want| <= t + t |want| (``element_tolerance``). Per output dtype, kind and profile:
the median, p99, p99.9 and max over all elements, the worst workload, and the margin
TOLERANCE / max. Writes a JSON and prints a markdown table.

    python bench/error_budget.py [--suites smoke,level1,level2] [--seeds 3]
        [--targets davinci-like,edge-like] [--json docs/bench/reliability/error_budget.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import tvm
from hawk.bench.reference import has_reference, reference_kernel
from hawk.bench.suites import load_suite
from hawk.ir.workload import PROFILES, is_float
from hawk.npu import load_spec, register_intrinsics
from hawk.runtime import HostWorker
from hawk.runtime.execute import (
    TOLERANCE,
    element_tolerance,
    kernel_json,
    profile_trial,
)

# errors are binned at 1/8 octave (quantiles to within 9%); the max is kept exactly
BINS_PER_OCTAVE = 8
LOWEST = -60  # log2 of the smallest non-zero error binned
TIMEOUT_S = 600.0


class Errors:
    """The distribution of element errors of one (dtype, kind, profile)."""

    def __init__(self):
        self.zero = self.n = 0
        self.max, self.worst = 0.0, ""
        self.hist = np.zeros((12 - LOWEST) * BINS_PER_OCTAVE + 2, np.int64)  # last bin: inf

    def add(self, t: np.ndarray, where: str) -> None:
        t = t.ravel()
        self.n += t.size
        self.zero += int(np.count_nonzero(t == 0))
        pos = t[t > 0]
        finite = pos[np.isfinite(pos)]
        idx = np.ceil((np.log2(finite) - LOWEST) * BINS_PER_OCTAVE).astype(np.int64)
        self.hist += np.bincount(np.clip(idx, 0, self.hist.size - 2), minlength=self.hist.size)
        self.hist[-1] += pos.size - finite.size
        top = float(t.max(initial=0.0))
        if top > self.max or not self.worst:
            self.max, self.worst = top, where

    def quantile(self, q: float) -> float:
        """The upper edge of the bin holding the q-quantile (0 when it is an exact match)."""
        k = q * self.n
        if k <= self.zero:
            return 0.0
        i = int(np.searchsorted(np.cumsum(self.hist), k - self.zero))
        return float("inf") if i == self.hist.size - 1 else float(2.0 ** (LOWEST + i / BINS_PER_OCTAVE))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suites", default="smoke,level1,level2")
    ap.add_argument("--seeds", type=int, default=3, help="seeds per profile (default 3)")
    ap.add_argument("--targets", default="davinci-like,edge-like")
    ap.add_argument("--json", default="docs/bench/reliability/error_budget.json")
    args = ap.parse_args()
    specs = [load_spec(t) for t in args.targets.split(",")]
    for spec in specs:
        register_intrinsics(spec)
    seen, workloads = set(), []
    for suite in args.suites.split(","):
        for wl in load_suite(suite):
            if wl.name not in seen and wl.reference is not None and any(is_float(t.dtype) for t in wl.outputs):
                seen.add(wl.name)
                workloads.append(wl)
    worker = HostWorker()
    dists: dict[tuple, Errors] = {}
    per_workload, skipped = [], []
    try:
        for wl in workloads:
            trials = [profile_trial(wl, p.name, seed, worker=worker, timeout=TIMEOUT_S)
                      for p in wl.profiles for seed in range(args.seeds)]
            kernels = [("function", "", tvm.ir.save_json(wl.module()))]
            for spec in (s for s in specs if has_reference(wl, s)):
                try:
                    kernels.append(("vendor", spec.name, kernel_json(reference_kernel(wl, spec))))
                except Exception as err:  # noqa: BLE001 - a shape the library cannot schedule costs that row
                    skipped.append({"workload": f"{wl.name}@{spec.name}", "kind": "vendor", "error": str(err)})
            for kind, preset, as_json in kernels:
                where = f"{wl.name}@{preset}" if preset else wl.name
                try:
                    res = worker.run(as_json, [t.inputs for t in trials],
                                     [(t.shape, t.dtype) for t in wl.outputs], TIMEOUT_S)
                except (TimeoutError, ChildProcessError) as err:
                    res = {"error": f"{type(err).__name__}: {err}"}
                if "error" in res:
                    skipped.append({"workload": where, "kind": kind, "error": res["error"]})
                    continue
                worst: dict[tuple, float] = {}
                for trial, outs in zip(trials, res["outputs"]):
                    for spec_out, got, want, floor in zip(wl.outputs, outs, trial.expected, trial.floor):
                        if not is_float(spec_out.dtype):
                            continue
                        t = element_tolerance(got, want, floor)
                        dists.setdefault((spec_out.dtype, kind, trial.profile), Errors()).add(t, where)
                        key = (spec_out.dtype, trial.profile)
                        worst[key] = max(worst.get(key, 0.0), float(t.max(initial=0.0)))
                per_workload += [{"workload": wl.name, "preset": preset, "kind": kind, "dtype": dtype,
                                  "profile": profile, "max": top, "tolerance": TOLERANCE[dtype]}
                                 for (dtype, profile), top in worst.items()]
            print(f"{wl.name}: {len(trials)} trials, {len(kernels)} kernels", file=sys.stderr, flush=True)
    finally:
        worker.close()
    rows = [{"dtype": dtype, "kind": kind, "profile": profile, "elements": d.n, "median": d.quantile(0.5),
             "p99": d.quantile(0.99), "p99.9": d.quantile(0.999), "max": d.max, "worst": d.worst, "tolerance": TOLERANCE[dtype],
             "margin": TOLERANCE[dtype] / d.max if d.max else None}
            for (dtype, kind, profile), d in sorted(dists.items(), key=_order)]
    doc = {"provenance": _provenance(args), "profiles": [{"name": p.name, "what": p.what} for p in PROFILES],
           "rows": rows, "workloads": per_workload, "skipped": skipped}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(doc, indent=1, default=str) + "\n")
    print(_markdown(rows, doc["provenance"]["command"]))


def _order(item) -> tuple:
    (dtype, kind, profile), _ = item
    return dtype != "float16", dtype, kind, [p.name for p in PROFILES].index(profile)


def _markdown(rows: list[dict], command: str) -> str:
    lines = ["| dtype | kernels | profile | elements | median | p99 | p99.9 | max | worst workload | TOLERANCE / max |",
             "|---|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for r in rows:
        margin = "exact" if r["margin"] is None else f"{r['margin']:.3g}x"
        lines.append(f"| {r['dtype']} | {r['kind']} | {r['profile']} | {r['elements']} | {r['median']:.2g} "
                     f"| {r['p99']:.2g} | {r['p99.9']:.2g} | {r['max']:.3g} | {r['worst']} | {margin} |")
    return "\n".join(lines) + f"\n\nProduced by `{command}`; the quantiles are 1/8-octave bin edges.\n"


def _provenance(args) -> dict:
    def git(*cmd):
        return subprocess.run(["git", *cmd], capture_output=True, text=True, check=False).stdout.strip()

    return {"command": "python bench/error_budget.py " + " ".join(sys.argv[1:]), "suites": args.suites,
            "seeds": args.seeds, "targets": args.targets, "commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, Python {platform.python_version()}, TVM {tvm.__version__}",
            "tolerance": TOLERANCE}


if __name__ == "__main__":
    main()
