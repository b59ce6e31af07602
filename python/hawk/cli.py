"""The ``hawk`` command. Exit codes: 0 success, 1 kernel illegal or wrong, 2 bad usage."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input from the user: reported on stderr with exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from .ir import WorkloadError
    from .npu import SpecError

    try:
        return args.func(args)
    except (UsageError, SpecError, WorkloadError) as err:
        print(f"hawk: error: {err}", file=sys.stderr)
        return EXIT_USAGE


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hawk", description="LLM-written NPU kernels, checked on an NPU model.")
    sub = p.add_subparsers(metavar="COMMAND")

    t = sub.add_parser("targets", help="list NPU presets, or show one spec")
    t.add_argument("action", nargs="?", choices=["show"], help="show one target")
    t.add_argument("name", nargs="?", help="preset name or spec file (with 'show')")
    t.add_argument("--json", action="store_true", help="machine-readable output")
    t.set_defaults(func=cmd_targets)

    w = sub.add_parser("workloads", help="list workloads of a suite")
    w.add_argument("--suite", help="built-in suite name or workload file (default: every built-in suite)")
    w.add_argument("--json", action="store_true")
    w.set_defaults(func=cmd_workloads)

    r = sub.add_parser("run", help="verify and execute a kernel on the NPU model")
    r.add_argument("--target", required=True, help="preset name or spec file")
    r.add_argument("--workload", help="workload name or workload file (default: every workload of --suite)")
    r.add_argument("--suite", help="built-in suite name or workload file")
    src = r.add_mutually_exclusive_group(required=True)
    src.add_argument("--reference", action="store_true", help="run the vendor reference kernel")
    src.add_argument("--kernel", help="a kernel saved as TVM JSON (tvm.ir.save_json)")
    r.add_argument("--trials", type=int, default=5, help="seeded input sets (default 5)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeout", type=float, default=60.0, help="seconds for build + run on the host")
    r.add_argument("--save-kernel", metavar="FILE", help="write the kernel run as TVM JSON")
    r.add_argument("--listing", action="store_true", help="print the NPU program (assembly-like)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)
    return p


# --- targets ------------------------------------------------------------------------------


def cmd_targets(args) -> int:
    from .npu import load_spec, preset_names

    if args.action == "show":
        if not args.name:
            raise UsageError("targets show needs a preset name or spec file")
        spec = load_spec(args.name)
        if args.json:
            print(spec.to_json(), end="")  # a valid spec file as it stands
        else:
            print(_describe_spec(spec))
        return EXIT_OK
    if args.name:
        raise UsageError(f"unexpected argument {args.name!r} (did you mean 'targets show {args.name}'?)")
    specs = [load_spec(n) for n in preset_names()]
    if args.json:
        print(json.dumps([{"name": s.name, "fingerprint": s.fingerprint(), "description": s.description,
                           "scopes": [sc.name for sc in s.scopes], "units": [u.name for u in s.units]}
                          for s in specs], indent=2))
    else:
        for s in specs:
            print(f"{s.name:14s} {s.fingerprint()}  {s.description}")
    return EXIT_OK


def _describe_spec(spec) -> str:
    lines = [f"{spec.name} ({spec.fingerprint()}), {spec.clock_ghz:g} GHz", spec.description, "", "scopes:"]
    for sc in spec.scopes:
        cap = "off-chip" if sc.capacity is None else f"{sc.capacity // 1024} KiB"
        frac = ", ".join(f"{f.dtype} {f.rows}x{f.cols}" for f in sc.fractal)
        lines.append(f"  {sc.name:16s} {cap:>9s}  align {sc.alignment:4d} B" + (f"  fractal {frac}" if frac else ""))
    lines.append("data paths:")
    for p in spec.paths:
        conv = " (converts)" if p.convert else ""
        lines.append(f"  {p.src:16s} -> {p.dst:16s} {p.pipe:5s} {p.bandwidth:g} B/cycle, latency {p.latency}{conv}")
    lines.append("units:")
    for u in spec.units:
        lines.append(f"  {u.name:8s} {u.kind:7s} pipe {u.pipe:7s} reads {', '.join(u.reads)}; writes "
                     f"{', '.join(u.writes)}; dtypes {', '.join(u.dtypes)}")
        for sh in u.shapes:
            lines.append(f"           {sh.in_dtype} -> {sh.acc_dtype} {sh.m}x{sh.n}x{sh.k}")
    lines.append("fault manual:")
    lines += [f"  {f.id} {f.code:17s} {f.text}" for f in spec.faults]
    return "\n".join(lines)


# --- workloads ----------------------------------------------------------------------------


def cmd_workloads(args) -> int:
    from .bench.suites import load_suite, suite_names

    suites = [args.suite] if args.suite else suite_names()
    rows = [(s, w) for s in suites for w in load_suite(s)]
    if args.json:
        print(json.dumps([{"suite": s, **w.summary()} for s, w in rows], indent=2))
        return EXIT_OK
    for s, w in rows:
        shapes = ", ".join(f"{t.dtype}{list(t.shape)}" for t in w.params)
        print(f"{s:8s} {w.name:22s} {w.category:12s} {shapes}  ({w.model})")
    return EXIT_OK


# --- run ----------------------------------------------------------------------------------


def cmd_run(args) -> int:
    from .bench.suites import find_workload, load_suite
    from .npu import load_spec, register_intrinsics

    spec = load_spec(args.target)
    register_intrinsics(spec)
    if args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.workload:
        workloads = [find_workload(args.workload, args.suite)]
    elif args.suite:
        workloads = list(load_suite(args.suite))
    else:
        raise UsageError("give --workload NAME or --suite NAME")
    if args.kernel and len(workloads) != 1:
        raise UsageError("--kernel runs one workload: give --workload")
    if args.save_kernel and len(workloads) != 1:
        raise UsageError("--save-kernel takes one workload: give --workload")
    results = [_run_one(w, spec, args) for w in workloads]
    if args.json:
        print(json.dumps(results[0] if args.workload else {"target": spec.name, "results": results}, indent=2))
    elif args.workload:
        _print_single(results[0])
    else:
        _print_table(results, spec)
    ok = all(r["legal"] and r["correct"] for r in results)
    return EXIT_OK if ok else EXIT_FAIL


def _load_kernel(path: str):
    import tvm

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such kernel file")
    if p.suffix != ".json":
        raise UsageError(f"{path}: kernels are read as TVM JSON (tvm.ir.save_json); "
                         "TVMScript is only parsed inside the admission sandbox")
    try:
        return tvm.ir.load_json(p.read_text())
    except Exception as err:  # noqa: BLE001 - a corrupt file is bad input
        raise UsageError(f"{path}: not a TVM JSON kernel: {str(err).strip().splitlines()[-1]}") from None


def _run_one(workload, spec, args) -> dict:
    import tvm

    from .bench.reference import NoReference, reference_kernel
    from .runtime import execute, verify
    from .runtime.codegen import lower
    from .runtime.timing import SimulatorError, time_kernel

    row = {"workload": workload.name, "category": workload.category, "target": spec.name,
           "kernel": "reference" if args.reference else args.kernel}
    if args.reference:
        try:
            kernel = reference_kernel(workload, spec)
        except NoReference as err:
            return {**row, "legal": False, "correct": False, "faults": [], "execution": None,
                    "note": str(err)}
    else:
        kernel = _load_kernel(args.kernel)
    if args.save_kernel:
        Path(args.save_kernel).write_text(tvm.ir.save_json(kernel))
    t0 = time.perf_counter()
    faults = verify(kernel, spec)
    verify_s = time.perf_counter() - t0
    row.update(legal=not faults, faults=[f.to_dict() for f in faults], verify_s=round(verify_s, 5))
    if faults:
        return {**row, "correct": False, "execution": None, "cycles": None, "bottleneck": None,
                "roofline_cycles": None, "note": "not executed: the kernel faults on the NPU"}
    t0 = time.perf_counter()
    try:
        profile = time_kernel(kernel, spec, workload)
    except SimulatorError as err:
        row["timing_error"] = str(err)
        profile = None
    row["time_s"] = round(time.perf_counter() - t0, 5)
    if profile is not None:
        row.update(profile.to_dict())
    else:
        row.update(cycles=None, bottleneck=None, roofline_cycles=None)
    if args.listing:
        row["listing"] = lower(kernel, spec).listing()
    result = execute(kernel, workload, trials=args.trials, seed=args.seed, timeout=args.timeout)
    return {**row, "correct": result.correct, "execution": result.to_dict()}


def _print_single(r: dict) -> None:
    print(f"{r['workload']} on {r['target']} ({r['kernel']})")
    if r.get("note") and r["execution"] is None and not r["faults"]:
        print(f"  {r['note']}")
        return
    if r["faults"]:
        print(f"  illegal: {len(r['faults'])} fault(s)")
        for f in r["faults"]:
            print(f"  {f['log']}")
        return
    e = r["execution"]
    print(f"  legal: no faults (verify {r['verify_s'] * 1000:.1f} ms)")
    verdict = "correct" if r["correct"] else f"WRONG ({e['status']}: {e['message']})"
    print(f"  {verdict} over {e['trials']} trial(s), max abs error {e['max_abs_error']:.3g}, "
          f"execute {e['wall_s']:.2f} s")
    if r.get("cycles") is not None:
        busy = ", ".join(f"{p} {c}" for p, c in sorted(r["busy"].items(), key=lambda kv: -kv[1]) if c)
        print(f"  {r['cycles']} cycles, bottleneck {r['bottleneck']} (busy: {busy})")
        print(f"  roofline {r['roofline_cycles']} cycles ({r['roofline_bound']}-bound): "
              f"{r['roofline_fraction']:.1%} of the limit reached (time {r['time_s'] * 1000:.1f} ms)")
        if r["model_bug"]:
            print("  MODEL BUG: the kernel is reported faster than its roofline")
    elif r.get("timing_error"):
        print(f"  timing failed: {r['timing_error']}")
    if r.get("listing"):
        print("  NPU program:")
        print("\n".join("    " + ln for ln in r["listing"].splitlines()))


def _print_table(results: list[dict], spec) -> None:
    header = (f"{'workload':24s} {'category':12s} {'legal':>6s} {'correct':>8s} {'cycles':>9s} "
              f"{'bottleneck':>10s} {'roofline':>9s} {'of limit':>8s} {'verify ms':>9s} {'time ms':>8s} "
              f"{'execute s':>9s}")
    print(f"reference kernels on {spec.name}")
    print(header)
    print("-" * len(header))
    for r in results:
        e = r.get("execution") or {}
        legal = "yes" if r["legal"] else ("-" if not r["faults"] else f"{len(r['faults'])}F")
        correct = "yes" if r["correct"] else (e.get("status", "-") if e else "-")
        vms = f"{r['verify_s'] * 1000:.1f}" if "verify_s" in r else "-"
        tms = f"{r['time_s'] * 1000:.1f}" if "time_s" in r else "-"
        es = f"{e['wall_s']:.2f}" if e else "-"
        cyc = str(r["cycles"]) if r.get("cycles") is not None else "-"
        roof = str(r["roofline_cycles"]) if r.get("roofline_cycles") is not None else "-"
        frac = f"{r['roofline_fraction']:.1%}" if r.get("roofline_fraction") else "-"
        flag = "  MODEL BUG: faster than roofline" if r.get("model_bug") else ""
        print(f"{r['workload']:24s} {r['category']:12s} {legal:>6s} {correct:>8s} {cyc:>9s} "
              f"{r.get('bottleneck') or '-':>10s} {roof:>9s} {frac:>8s} {vms:>9s} {tms:>8s} {es:>9s}{flag}"
              + (f"  ({r['note']})" if r.get("note") and not r["faults"] else ""))
    ran = [r for r in results if r.get("execution")]
    if ran:
        print(f"\n{sum(r['correct'] for r in results)}/{len(results)} legal and correct; median verify "
              f"{statistics.median(r['verify_s'] for r in ran) * 1000:.1f} ms, median time "
              f"{statistics.median(r['time_s'] for r in ran) * 1000:.1f} ms, median execute "
              f"{statistics.median(r['execution']['wall_s'] for r in ran):.2f} s")
        fractions = [r["roofline_fraction"] for r in ran if r.get("roofline_fraction")]
        if fractions:
            print(f"geometric-mean fraction of the roofline reached: {statistics.geometric_mean(fractions):.1%}")
    for r in results:
        for f in r["faults"]:
            print(f"{r['workload']}: {f['log']}")


if __name__ == "__main__":
    sys.exit(main())
