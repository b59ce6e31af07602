"""The ``hawk`` command. Exit codes: 0 success, 1 kernel illegal or wrong, 2 bad usage, 130 interrupted."""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
import threading
import time
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_INTERRUPTED = 130  # the shell convention for SIGINT


class UsageError(Exception):
    """Bad input from the user: reported on stderr with exit code 2."""


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for provenance
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    from .ir import WorkloadError
    from .npu import SpecError

    # SIGTERM unwinds like Ctrl-C: workers and sandboxes are closed, stores left committed
    # (handlers can only be set from the main thread: main() called elsewhere keeps them)
    on_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminated) if on_main else None
    try:
        return args.func(args)
    except (UsageError, SpecError, WorkloadError) as err:
        print(f"hawk: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("hawk: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _terminated(signum, frame):
    signal.signal(signum, signal.SIG_IGN)  # a second one must not cut the clean-up short
    raise KeyboardInterrupt(f"signal {signum}")


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
    src.add_argument("--kernel", help="a kernel file: TVM JSON (.json), a schedule program, or TVMScript")
    r.add_argument("--trials", type=int, default=5, help="seeded input sets (default 5)")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--timeout", type=float, default=60.0, help="seconds for build + run on the host")
    r.add_argument("--save-kernel", metavar="FILE", help="write the kernel run as TVM JSON")
    r.add_argument("--listing", action="store_true", help="print the NPU program (assembly-like)")
    r.add_argument("--json", action="store_true")
    r.set_defaults(func=cmd_run)

    u = sub.add_parser("tune", help="search for a fast legal kernel: propose, verify, execute, time, repeat")
    u.add_argument("--target", required=True, help="preset name or spec file")
    u.add_argument("--workload", help="workload name or workload file")
    u.add_argument("--model-file", metavar="MODEL.py", help="tune every task of a model file (see examples/) into the "
                                                       "MetaSchedule database in --work-dir")
    u.add_argument("--work-dir", metavar="DIR", help="--model-file: the MetaSchedule database directory")
    u.add_argument("--jobs", type=int, default=1, metavar="N", help="--model-file: tasks tuned at once in N processes")
    u.add_argument("--search-trials", type=int, default=0, metavar="N",
                   help="--model-file: MetaSchedule trials around Hawk's kernels per task (default 0: none)")
    u.add_argument("--suite", help="built-in suite name or workload file (every workload, unless --workload)")
    u.add_argument("--budget", type=int, default=30, help="proposals per workload (default 30)")
    u.add_argument("--llm", default="offline", metavar="offline|openai|replay:FILE",
                   help="who writes kernels: the offline proposer (default), an OpenAI-compatible "
                        "endpoint, or a recorded transcript")
    u.add_argument("--seed", type=int, default=0)
    u.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT ('-' for stdout)")
    _add_host_flags(u)
    u.add_argument("--kb", metavar="PATH", help="knowledge store: retrieved into prompts, applied as repairs, and "
                                                "learned into (created if absent; without --kb no knowledge)")
    u.add_argument("--kb-readonly", action="store_true", help="use the store's knowledge without learning")
    _add_ablation_flag(u)
    u.add_argument("-q", "--quiet", action="store_true", help="no per-iteration progress on stderr")
    _add_llm_flags(u)
    u.set_defaults(func=cmd_tune)

    b = sub.add_parser("bench", help="the loop against the reference kernels and MetaSchedule over a suite")
    b.add_argument("--suite", required=True, help="built-in suite name or workload file")
    b.add_argument("--target", required=True, help="preset name or spec file")
    b.add_argument("--workload", action="append", metavar="NAME", help="only these workloads of the suite")
    b.add_argument("--baselines", default="reference,metaschedule,loop",
                   help="comma-separated subset of reference,metaschedule,loop (default: all)")
    b.add_argument("--budget", type=int, default=30, help="trials per workload for MetaSchedule and the loop")
    b.add_argument("--seeds", default="0", metavar="K[,K...]|N-M", help="seeds, e.g. 0,1,2 or 0-2 (default 0)")
    b.add_argument("--llm", default="offline", metavar="offline|openai|replay:FILE", help="as for hawk tune")
    _add_host_flags(b)
    b.add_argument("--knowledge", choices=["off", "cold", "warm"], default="off",
                   help="the loop without knowledge (default); cold: each seed learns from an empty store "
                        "across the suite in order; warm: the store --kb from an earlier run")
    b.add_argument("--kb", metavar="PATH", help="knowledge store (cold: written, one per seed; warm: read)")
    b.add_argument("--kb-learn", action="store_true", help="warm: keep learning into --kb")
    _add_ablation_flag(b)
    b.add_argument("--json", metavar="OUT", help="write the result as JSON to OUT")
    b.add_argument("--report", metavar="DIR", help="write report.md and PNG plots into DIR")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    _add_llm_flags(b)
    b.set_defaults(func=cmd_bench)

    c = sub.add_parser("compile", help="compile a model for an NPU target: every PrimFunc scheduled by Hawk "
                                       "(database, rules, then search), run on the host, checked")
    c.add_argument("model", metavar="MODEL.py", help="a model file defining model() (see examples/)")
    c.add_argument("--target", required=True, help="preset name or spec file")
    c.add_argument("--db", metavar="DIR", help="MetaSchedule database: read first, new kernels written")
    c.add_argument("--kb", metavar="PATH", help="knowledge store for the search (learned into)")
    c.add_argument("--rules", metavar="FILE", help="rules exported by hawk kb export-rules")
    c.add_argument("--budget", type=int, default=10, help="loop iterations per PrimFunc to search (default 10)")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--json", metavar="OUT", help="write the report as JSON to OUT")
    c.set_defaults(func=cmd_compile)

    k = sub.add_parser("kb", help="inspect, export and import a knowledge store")
    k.add_argument("action", choices=["list", "show", "export", "export-rules", "import", "stats", "distill", "history",
                                      "revert"])
    k.add_argument("item", nargs="?", help="triple id (show), output file (export), export file (import), "
                                            "history entry (revert)")
    k.add_argument("--kb", required=True, metavar="PATH", help="the knowledge store (SQLite file)")
    k.add_argument("-o", "--output", metavar="RULES", help="export-rules: the rules file to write")
    k.add_argument("--all", action="store_true", help="list pruned and merged triples too")
    k.add_argument("--dry-run", action="store_true", help="distill: say what would change, change nothing")
    k.add_argument("--llm", default="offline", metavar="offline|openai|replay:FILE",
                   help="distill: the arbiter (offline: the evidence alone decides)")
    k.add_argument("--json", action="store_true")
    _add_llm_flags(k)
    k.set_defaults(func=cmd_kb)
    return p


def _add_host_flags(parser) -> None:
    parser.add_argument("--trials", type=int, default=5, help="seeded input sets per host execution (default 5)")
    parser.add_argument("--exec-timeout", type=float, default=60.0, metavar="S",
                        help="seconds for build + run of one kernel on the host (default 60)")


def _add_ablation_flag(parser) -> None:
    from .knowledge.base import ABLATIONS

    parser.add_argument("--kb-ablation", default="none", choices=ABLATIONS,
                        help="take one part of knowledge away: executables (free-text), an axis of retrieval, "
                             "the bottleneck weighting, distillation with the effect model (no-distill), or the "
                             "effect model's ranking")


def _open_knowledge(path: str, *, readonly: bool, ablation: str, cold: bool = False, writer=None):
    """(Knowledge, store) for a store file; UsageError for a store that cannot be used."""
    from .knowledge import KnowledgeStore, StoreError
    from .knowledge.base import Knowledge, ablation_options

    try:
        store = KnowledgeStore(path, readonly=readonly)
    except StoreError as err:
        raise UsageError(str(err)) from None
    if cold and len(store):
        store.close()
        raise UsageError(f"{path}: a cold run starts from an empty store; this one holds triples")
    return Knowledge(store, options=ablation_options(ablation, learn=not readonly), writer=writer), store


def _check_store(path: str) -> None:
    """UsageError for a store the tasks could not write, before any of them opens it."""
    from .knowledge import KnowledgeStore, StoreError

    try:
        KnowledgeStore(path).close()
    except StoreError as err:
        raise UsageError(str(err)) from None


def _add_llm_flags(parser) -> None:
    llm = parser.add_argument_group("LLM endpoint (--llm openai; defaults from HAWK_LLM_* variables)")
    llm.add_argument("--model")
    llm.add_argument("--base-url")
    llm.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the API key")
    llm.add_argument("--timeout", type=float, metavar="S", help="seconds per LLM request")
    llm.add_argument("--retries", type=int, metavar="N", help="attempts after the first")
    llm.add_argument("--cache", metavar="DIR", help="response cache directory")
    llm.add_argument("--transcript", metavar="FILE", help="append every exchange to FILE (for replay:FILE)")
    llm.add_argument("--llm-fallback", choices=["none", "offline"], default="none",
                     help="who writes a kernel when the LLM call failed after its retries (default: nobody, "
                          "the iteration is recorded as no proposal)")


# --- kb -----------------------------------------------------------------------------------


def cmd_kb(args) -> int:
    from .knowledge import KnowledgeStore, StoreError
    from .knowledge.render import describe

    writes = args.action in ("import", "revert") or (args.action == "distill" and not args.dry_run)
    if args.action in ("show", "export", "import", "revert") and not args.item:
        raise UsageError(f"kb {args.action} needs " + {"show": "a triple id", "export": "an output file",
                                                         "import": "an export file",
                                                         "revert": "a history entry number"}[args.action])
    if args.action in ("distill", "history", "revert"):
        return _kb_distillation(args, writes)
    if not writes and not Path(args.kb).exists():
        raise UsageError(f"{args.kb}: no such knowledge store")
    try:
        with KnowledgeStore(args.kb, readonly=not writes) as kb:
            if args.action == "list":
                triples = kb.triples(status=None if args.all else "active")
                if args.json:
                    print(json.dumps([t.to_dict() for t in triples], indent=1))
                else:
                    for t in triples:
                        st = t.stats
                        trigger = t.context.code or f"bottleneck:{t.context.pipe}"
                        print(f"{t.id}  {st.status:7s} {'V' if st.verified else '-'} {st.successes:3d}/"
                              f"{st.applications:<3d} {trigger:18s} {t.executable.call()[:70]}")
                _warn_skipped(kb)
            elif args.action == "show":
                t = kb.get(args.item)
                if t is None:
                    raise UsageError(f"{args.kb}: no triple {args.item!r}")
                if args.json:
                    print(json.dumps({**t.to_dict(), "applications": kb.applications(t.id)}, indent=1))
                else:
                    print(describe(t))
            elif args.action == "export-rules":
                from .tuning.rules import export_rules

                out = args.output or args.item
                if not out:
                    raise UsageError("kb export-rules needs -o RULES")
                rules = export_rules(kb, out)
                print(f"wrote {out}: {len(rules.capacity)} capacities, {len(rules.no_path)} missing paths, "
                      f"{len(rules.unit_scope)} unit limits, {len(rules.misaligned)} alignments, "
                      f"{len(rules.speedups)} speed-ups, from {sum(map(len, rules.support.values()))} triples")
            elif args.action == "export":
                n = kb.export(args.item)
                _warn_skipped(kb)
                print(f"exported {n} triples to {args.item}")
            elif args.action == "import":
                added, present = kb.import_file(args.item)
                print(f"imported {added} triples (unverified) into {args.kb}; {present} were already there")
            else:
                stats = kb.stats()
                if args.json:
                    print(json.dumps(stats, indent=1))
                else:
                    for key, value in stats.items():
                        print(f"{key:14s} {value}")
    except StoreError as err:
        raise UsageError(str(err)) from None
    return EXIT_OK


def _kb_distillation(args, writes: bool) -> int:
    from .knowledge import KnowledgeStore, StoreError
    from .knowledge.distill import distill, history_time, revert

    if not Path(args.kb).exists():
        raise UsageError(f"{args.kb}: no such knowledge store")
    arbiter = None
    if args.action == "distill" and args.llm != "offline":
        _, arbiter = _make_proposer(args)
    try:
        with KnowledgeStore(args.kb, readonly=not writes) as kb:
            if args.action == "distill":
                report = distill(kb, llm=arbiter, dry_run=args.dry_run)
                if args.json:
                    print(json.dumps(report.to_dict(), indent=1))
                    return EXIT_OK
                verb = "would apply" if args.dry_run else "applied"
                print(f"distill ({'llm' if arbiter else 'deterministic'} arbiter): {verb} "
                      f"{len(report.applied)} decision(s), rejected {len(report.rejected)}")
                for e in report.applied:
                    seq = f"#{e['seq']} " if "seq" in e else ""
                    print(f"  {seq}{e['action']:7s} {' '.join(e['triples'])}: {e['reason']}")
                for e in report.rejected:
                    print(f"  rejected {e['action']} {' '.join(e.get('triples', []))}: {e['rejected']}")
            elif args.action == "history":
                entries = kb.history()
                if args.json:
                    print(json.dumps(entries, indent=1))
                    return EXIT_OK
                for h in entries:
                    mark = " (reverted)" if h["reverted"] else ""
                    print(f"#{h['seq']:<4d} {history_time(h)}  {h['action']:7s} by {h['arbiter']:13s} "
                          f"{' '.join(h['triples'])}{mark}\n      {h['reason']}")
            else:
                try:
                    seq = revert(kb, int(args.item))
                except ValueError as err:
                    raise UsageError(f"kb revert {args.item}: {err}") from None
                print(f"reverted #{args.item} (recorded as #{seq})")
    except StoreError as err:
        raise UsageError(str(err)) from None
    return EXIT_OK


def _warn_skipped(kb) -> None:
    for reason in kb.skipped:
        print(f"hawk: warning: {reason}", file=sys.stderr)


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


def _load_kernel(path: str, workload):
    """A kernel file: TVM JSON, a schedule program, or TVMScript (parsed only in the
    sandbox). Returns (module, admission error text)."""
    from .ir.safe_json import load_ir_json
    from .propose.program import apply_program
    from .propose.proposer import TVMSCRIPT, kind_of
    from .propose.sandbox import parse_tvmscript

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"{path}: no such kernel file")
    text = p.read_text()
    if p.suffix == ".json":
        try:
            return load_ir_json(text), ""
        except Exception as err:  # noqa: BLE001 - a corrupt or hostile file is bad input
            raise UsageError(f"{path}: not a TVM JSON kernel: {str(err).strip().splitlines()[-1]}") from None
    if kind_of(text) == TVMSCRIPT:
        parsed = parse_tvmscript(text)
        return parsed.module, parsed.error.render() if parsed.error else ""
    applied = apply_program(text, workload.module())
    return applied.module, applied.error.render() if applied.error else ""


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
        kernel, refused = _load_kernel(args.kernel, workload)
        if refused:
            return {**row, "legal": False, "correct": False, "faults": [], "execution": None, "cycles": None,
                    "bottleneck": None, "roofline_cycles": None, "admission": refused,
                    "note": f"refused before running:\n{refused}"}
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



# --- tune ---------------------------------------------------------------------------------

_LLM_FLAGS = ("model", "base_url", "api_key_env", "timeout", "retries", "cache", "transcript")


def cmd_compile(args) -> int:
    import numpy as np

    from .npu import load_spec
    from .tuning.compile import compile_model, run
    from .tuning.models import ModelError, load_model

    if args.budget < 0:
        raise UsageError("--budget must be at least 0")
    if args.kb:
        _check_store(args.kb)
    spec = load_spec(args.target)
    try:
        model = load_model(args.model)
    except ModelError as err:
        raise UsageError(str(err)) from None
    ex, report = compile_model(model.mod, spec, database=args.db, knowledge=args.kb, rules=args.rules,
                               budget=args.budget, seed=args.seed)
    print(report.render())
    out = run(ex, model.mod, model.inputs)
    expected = model.reference(model.inputs) if model.reference is not None else _host_output(model)
    outs, refs = (out, expected) if isinstance(out, list) else ([out], [expected])
    errors = [float(np.max(np.abs(o.astype(np.float64) - np.asarray(r, dtype=np.float64)))) for o, r in zip(outs, refs)]
    scale = max(float(np.max(np.abs(np.asarray(r, dtype=np.float64)))) for r in refs) or 1.0
    ok = all(e <= 1e-2 * scale for e in errors)
    print(f"on the host through the Relax VM: max abs error {max(errors):.3g} against "
          f"{'reference()' if model.reference is not None else 'the unscheduled build'} "
          f"(output scale {scale:.3g}): {'match' if ok else 'MISMATCH'}")
    if args.json:
        doc = {**report.to_dict(), "model": str(args.model), "max_abs_error": max(errors), "match": ok}
        Path(args.json).write_text(json.dumps(doc, indent=2) + "\n")
    return EXIT_OK if ok and report.total_cycles is not None else EXIT_FAIL


def _host_output(model):
    import tvm

    from .tuning.compile import run

    return run(tvm.compile(model.mod, target="llvm"), model.mod, model.inputs)


def cmd_tune(args) -> int:
    if args.model_file:
        return _tune_model(args)
    from .bench.harness import reference_entry
    from .bench.suites import find_workload, load_suite
    from .npu import load_spec, register_intrinsics
    from .runtime import HostWorker
    from .search import tune

    if args.budget < 1:
        raise UsageError("--budget must be at least 1")
    if args.trials < 1:
        raise UsageError("--trials must be at least 1")
    if args.exec_timeout <= 0:
        raise UsageError("--exec-timeout must be positive")
    spec = load_spec(args.target)
    register_intrinsics(spec)
    if args.workload:
        workloads = [find_workload(args.workload, args.suite)]
    elif args.suite:
        workloads = list(load_suite(args.suite))
    else:
        raise UsageError("give --workload NAME or --suite NAME")
    proposer, client = _make_proposer(args)
    if args.kb_readonly and not args.kb:
        raise UsageError("--kb-readonly needs --kb")
    # with an endpoint, the LLM writes the semantics of what is learned
    knowledge, store = _open_knowledge(args.kb, readonly=args.kb_readonly, ablation=args.kb_ablation,
                                       writer=client) if args.kb else (None, None)

    entries, interrupted = [], False
    worker = HostWorker()
    try:
        for wl in workloads:
            progress = None if args.quiet else _progress(wl.name, args.budget)
            # judged first, as in hawk bench: a legal, correct, unflagged reference arms the gate
            ref = reference_entry(wl, spec, worker=worker)
            result = tune(wl, spec, proposer, budget=args.budget, seed=args.seed, worker=worker,
                          on_candidate=progress, trials=args.trials, timeout=args.exec_timeout,
                          reference_cycles=ref["cycles"], knowledge=knowledge)
            entry = _tune_entry(result, wl, spec, ref)
            entries.append(entry)
            _print_tune_entry(entry, out=sys.stderr if args.json == "-" else sys.stdout)
    except KeyboardInterrupt:  # keep what is finished, as hawk bench does
        interrupted = True
    finally:
        worker.close()
        if store is not None:
            store.close()

    summary = _tune_summary(entries)
    if knowledge is not None:
        summary["knowledge"] = {"store": args.kb, "run": knowledge.run, "learned": len(knowledge.learned),
                                "retrievals": knowledge.retrievals}
    usage = getattr(client, "usage", None)
    if usage is not None:
        from dataclasses import asdict

        summary["llm_usage"] = asdict(usage)
        summary["llm_fallbacks"] = getattr(proposer, "fallbacks", 0)
    report = {"target": spec.name, "proposer": getattr(proposer, "name", type(proposer).__name__),
              "llm": args.llm, "seed": args.seed, "budget": args.budget, "interrupted": interrupted,
              "workloads": entries, "summary": summary}
    out = sys.stderr if args.json == "-" else sys.stdout
    _print_tune_summary(summary, out=out)
    if summary.get("llm_fallbacks"):
        print(f"the LLM call failed {summary['llm_fallbacks']} time(s); the offline proposer wrote those kernels",
              file=out)
    if args.json == "-":
        print(json.dumps(report, indent=2))
    elif args.json:
        try:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
        except OSError as err:
            raise UsageError(f"cannot write {args.json}: {err.strerror or err}") from None
    if interrupted:
        print(f"interrupted: {len(entries)} of {len(workloads)} workloads finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if all(e["solved"] for e in entries) else EXIT_FAIL


def _tune_model(args) -> int:
    from .npu import load_spec
    from .tuning.models import ModelError, load_model
    from .tuning.tune import tune_model

    if not args.work_dir:
        raise UsageError("--model-file needs --work-dir (the MetaSchedule database directory)")
    if args.jobs < 1 or args.budget < 1:
        raise UsageError("--jobs and --budget must be at least 1")
    if args.kb:
        _check_store(args.kb)
    _make_proposer(args)  # the flags are checked here, once; each task's process makes its own
    factory = None if args.llm == "offline" else ProposerFactory(
        {f: getattr(args, f) for f in ("llm", "llm_fallback", *_LLM_FLAGS)})
    spec = load_spec(args.target)
    try:
        model = load_model(args.model_file)
    except ModelError as err:
        raise UsageError(str(err)) from None

    def progress(task):
        cycles = task.cycles if task.cycles is not None else "-"
        print(f"{task.name[:56]:56} x{task.weight:<3} {cycles:>10} cycles  {task.source or task.error}  "
              f"{task.wall_s:.1f} s", file=sys.stderr if args.json == "-" else sys.stdout, flush=True)

    report = tune_model(model.mod, spec, args.work_dir, budget=args.budget, knowledge=args.kb, jobs=args.jobs,
                        seed=args.seed, search_trials=args.search_trials, proposer_factory=factory,
                        progress=None if args.quiet else progress)
    total = report.weighted_cycles
    print(f"{len(report.tasks)} tasks, {sum(t.cycles is not None for t in report.tasks)} with a kernel; "
          f"weighted cycles {total if total is not None else '-'}; database {args.work_dir}; {report.wall_s:.1f} s")
    if args.json:
        text = json.dumps(report.to_dict(), indent=2)
        print(text) if args.json == "-" else Path(args.json).write_text(text + "\n")
    return EXIT_OK if total is not None else EXIT_FAIL


def cmd_bench(args) -> int:
    import shlex

    from .bench.harness import BASELINES, provenance, run_bench
    from .bench.suites import load_suite
    from .npu import load_spec

    baselines = [b.strip() for b in args.baselines.split(",") if b.strip()]
    wrong = [b for b in baselines if b not in BASELINES]
    if wrong or not baselines:
        raise UsageError(f"--baselines takes a subset of {','.join(BASELINES)}, not {args.baselines!r}")
    if args.budget < 1 or args.trials < 1 or args.exec_timeout <= 0:
        raise UsageError("--budget and --trials must be at least 1, --exec-timeout positive")
    seeds = _parse_seeds(args.seeds)
    spec = load_spec(args.target)
    workloads = list(load_suite(args.suite))
    if args.workload:
        missing = sorted(set(args.workload) - {w.name for w in workloads})
        if missing:
            raise UsageError(f"not in suite {args.suite}: {', '.join(missing)}")
        workloads = [w for w in workloads if w.name in args.workload]
    proposer, client = _make_proposer(args)
    # the offline proposer keeps per-workload state: a fresh one per run keeps seeds independent
    make_proposer = (lambda: _make_proposer(args)[0]) if args.llm == "offline" else (lambda: proposer)
    command = "hawk " + " ".join(shlex.quote(a) for a in (args.argv or []))
    prov = provenance(command, suite=str(args.suite), target=spec.name, llm=args.llm, budget=args.budget,
                      seeds=seeds, trials=args.trials)
    knowledge = _bench_knowledge(args, seeds, writer=client)
    if knowledge:
        prov["knowledge"] = {"mode": args.knowledge, "ablation": args.kb_ablation,
                             "stores": {str(s): str(k.store.path) for s, k in knowledge.items()}}
    try:
        result = run_bench(workloads, spec, make_proposer=make_proposer if "loop" in baselines else None,
                           baselines=baselines, budget=args.budget, seeds=seeds, trials=args.trials,
                           exec_timeout=args.exec_timeout, provenance=prov, progress=not args.quiet,
                           knowledge=knowledge)
    finally:
        for k in knowledge.values():
            k.store.close()
    usage = getattr(client, "usage", None)
    if usage is not None:
        from dataclasses import asdict

        result["llm_usage"] = asdict(usage)
    _print_bench_summary(result)
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        except OSError as err:
            raise UsageError(f"cannot write {args.json}: {err.strerror or err}") from None
    if args.report:
        from .bench.report import write_report

        try:
            print(f"report: {write_report(result, args.report)}")
        except OSError as err:
            raise UsageError(f"cannot write the report into {args.report}: {err.strerror or err}") from None
    if result["interrupted"]:
        print(f"interrupted: {len(result['workloads'])} of {len(workloads)} workloads finished", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK


def _bench_knowledge(args, seeds: list[int], writer=None) -> dict:
    """seed -> Knowledge: cold, one empty store per seed (``--kb`` itself for one seed, else
    ``STEM-seedK.SUFFIX``); warm, the store ``--kb`` for every seed (read-only unless --kb-learn)."""
    if args.knowledge == "off":
        if args.kb or args.kb_learn or args.kb_ablation != "none":
            raise UsageError("--kb, --kb-learn and --kb-ablation need --knowledge cold or warm")
        return {}
    if not args.kb:
        raise UsageError(f"--knowledge {args.knowledge} needs --kb PATH")
    out = {}
    try:
        for seed in seeds:
            if args.knowledge == "cold":
                path = Path(args.kb)
                if len(seeds) > 1:
                    path = path.with_name(f"{path.stem}-seed{seed}{path.suffix}")
                out[seed] = _open_knowledge(str(path), readonly=False, ablation=args.kb_ablation, cold=True,
                                            writer=writer)[0]
            else:
                if not Path(args.kb).exists():
                    raise UsageError(f"{args.kb}: no such knowledge store")
                out[seed] = _open_knowledge(args.kb, readonly=not args.kb_learn, ablation=args.kb_ablation,
                                            writer=writer)[0]
    except UsageError:
        for k in out.values():
            k.store.close()
        raise
    return out


def _parse_seeds(text: str) -> list[int]:
    try:
        if "-" in text.strip("-"):
            lo, hi = (int(x) for x in text.split("-", 1))
            seeds = list(range(lo, hi + 1))
        else:
            seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"--seeds takes K,K,... or N-M, not {text!r}") from None
    if not seeds:
        raise UsageError(f"--seeds {text!r} names no seed")
    return seeds


def _print_bench_summary(result: dict) -> None:
    from .bench.report import fmt_pct, fmt_stats

    s = result["summary"]
    print(f"\n{s['workloads']} workloads x {len(result['provenance'].get('seeds', [0]))} seed(s) "
          f"in {result['wall_s']:.0f} s")
    for name, label in (("loop", "Hawk loop"), ("metaschedule", "MetaSchedule"), ("reference", "reference")):
        part = s.get(name)
        if not part:
            continue
        rate = f"compile {fmt_pct(part['compile_rate'])}, " if "compile_rate" in part else ""
        print(f"  {label:13s} {rate}accuracy {fmt_pct(part['accuracy'])}, "
              f"roofline {fmt_pct(part['roofline_fraction'])} (geomean)")
    sp = s["speedup"]
    print(f"  loop speedup vs reference {fmt_stats(sp['vs_reference'])}, "
          f"vs MetaSchedule {fmt_stats(sp['vs_metaschedule'])}; "
          f"MetaSchedule vs reference {fmt_stats(sp['metaschedule_vs_reference'])}")
    flagged = s["flagged"]
    if flagged["total"]:
        print(f"  flagged for review, not counted: {flagged['total']} kernel(s) on {flagged['workloads']} "
              f"workload(s) (loop {flagged['loop']}, MetaSchedule {flagged['metaschedule']}, "
              f"reference {flagged['reference']})")


class ProposerFactory:
    """A fresh proposer from the --llm flags, in whichever process calls it (picklable)."""

    def __init__(self, flags: dict):
        self.flags = flags

    def __call__(self):
        import types

        return _make_proposer(types.SimpleNamespace(**self.flags))[0]


def _make_proposer(args):
    """(proposer, LLM client or None) for ``--llm``; the proposer modules load only when asked for."""
    import os

    kind = args.llm
    given = [f"--{f.replace('_', '-')}" for f in _LLM_FLAGS if getattr(args, f) is not None]
    if kind != "openai" and given:
        raise UsageError(f"{', '.join(given)} only apply to --llm openai")
    fallback = getattr(args, "llm_fallback", "none")
    if kind == "offline" and fallback != "none":
        raise UsageError("--llm-fallback applies to --llm openai or replay:FILE")
    if kind == "offline" or fallback == "offline":
        try:
            from .propose.offline import OfflineProposer
        except ImportError as err:
            raise UsageError(f"the offline proposer is not available (hawk.propose.offline): {err}") from None
    if kind == "offline":
        return OfflineProposer(), None
    if kind != "openai" and not kind.startswith("replay:"):
        raise UsageError(f"--llm must be offline, openai or replay:FILE, not {kind!r}")
    try:
        from .propose.llm import LLMConfig, OpenAIClient, ReplayClient
        from .propose.llm_proposer import LLMProposer
    except ImportError as err:
        raise UsageError(f"the LLM proposer is not available (hawk.propose.llm, hawk.propose.llm_proposer): "
                         f"{err}") from None
    if kind == "openai":
        api_key = None
        if args.api_key_env:
            api_key = os.environ.get(args.api_key_env)
            if not api_key:
                raise UsageError(f"--api-key-env {args.api_key_env}: that environment variable is not set")
        try:
            config = LLMConfig.from_env(model=args.model, base_url=args.base_url, api_key=api_key,
                                        timeout_s=args.timeout, retries=args.retries)
        except ValueError as err:
            raise UsageError(str(err)) from None
        client = OpenAIClient(config, cache_dir=args.cache, transcript=args.transcript)
    else:
        path = Path(kind[len("replay:"):])
        if not path.is_file():
            raise UsageError(f"--llm {kind}: no such transcript file")
        client = ReplayClient(path)
    return LLMProposer(client, OfflineProposer() if fallback == "offline" else None), client


def _progress(name: str, budget: int):
    width = len(str(budget))

    def show(cand, result) -> None:
        best = result.best
        what = cand.outcome
        if cand.flagged:
            what = f"{cand.cycles} cycles, flagged for review ({_clip(cand.flag_reason, 70)})"
        elif cand.faults:
            what += " " + ",".join(dict.fromkeys(cand.faults))
        elif cand.cycles is not None:
            what += f" {cand.cycles} cycles"
        elif cand.message:
            what += f" ({_clip(cand.message, 70)})"
        best_s = f"best {best.cycles} cycles" if best and best.cycles is not None else (
            "best: correct, untimed" if best else "no kernel yet")
        print(f"[{name} {cand.iteration + 1:{width}d}/{budget}] {what}; {best_s} ({cand.wall_s:.2f} s)",
              file=sys.stderr, flush=True)

    return show


def _tune_entry(result, workload, spec, ref: dict) -> dict:
    """The JSON entry of one workload: the loop's result plus reference and roofline cycles.
    ``ref`` is the reference judged as in ``hawk bench``: it counts only when legal, correct
    and not flagged."""
    from .bench.harness import roofline_cycles

    entry = result.to_dict()
    ref_cycles = ref["cycles"]
    speedup = (ref_cycles / entry["cycles"]) if ref_cycles and entry["cycles"] else None
    return {"name": entry.pop("name"), "category": workload.category, **entry,
            "reference_cycles": ref_cycles, "reference_status": ref["status"], "reference_note": ref["message"],
            "roofline_cycles": roofline_cycles(workload, spec),
            "speedup_vs_reference": round(speedup, 4) if speedup else None}


def _tune_summary(entries: list[dict]) -> dict:
    n = len(entries)
    both = [e for e in entries if e["speedup_vs_reference"]]
    return {
        "workloads": n,
        "pass_at_1": sum(e["pass_at_1"] for e in entries),
        "pass_at_1_rate": round(sum(e["pass_at_1"] for e in entries) / n, 4) if n else None,
        "solved": sum(e["solved"] for e in entries),
        "accuracy": round(sum(e["solved"] for e in entries) / n, 4) if n else None,
        "speedup_workloads": len(both),
        "geomean_speedup_vs_reference": (
            round(statistics.geometric_mean(e["speedup_vs_reference"] for e in both), 4) if both else None),
        "iterations": sum(e["iterations"] for e in entries),
        "llm_calls": sum(e["llm_calls"] for e in entries),
        "flagged": sum(len(e["flagged"]) for e in entries),
        "flagged_references": sum(e["reference_status"] == "flagged" for e in entries),
    }


def _print_tune_entry(e: dict, out) -> None:
    print(f"{e['name']} ({e['category']}) on {e['target']}, proposer {e['proposer']}, seed {e['seed']}", file=out)
    if e["solved"]:
        cyc = f"{e['cycles']} cycles" if e["cycles"] is not None else "correct but not timed"
        line = f"  best: {cyc} (iteration {e['best_iteration'] + 1})"
        if e["reference_cycles"]:
            line += f"; reference {e['reference_cycles']} cycles"
            if e["speedup_vs_reference"]:
                line += f" ({e['speedup_vs_reference']:.2f}x)"
        if e["roofline_cycles"]:
            line += f"; roofline {e['roofline_cycles']}"
        print(line, file=out)
        print(f"  first legal and correct kernel at iteration {e['first_solved_at'] + 1}"
              f"{' (pass@1)' if e['pass_at_1'] else ''}", file=out)
    else:
        ref = f" (reference {e['reference_cycles']} cycles)" if e["reference_cycles"] else ""
        print(f"  no legal and correct kernel{ref}", file=out)
    print(f"  {e['iterations']} iterations, {e['llm_calls']} LLM calls; outcomes: "
          + ", ".join(f"{k} {v}" for k, v in e["outcomes"].items()), file=out)
    if e["reference_status"] == "flagged":
        print(f"  reference flagged for review: {e['reference_note']}", file=out)
    if e["flagged"]:
        print(f"  flagged for review, not counted: {len(e['flagged'])} kernel(s)", file=out)
        kernels: dict[str, list[dict]] = {}  # a kernel proposed again is listed once
        for f in e["flagged"]:
            kernels.setdefault(f["program"], []).append(f)
        for fs in kernels.values():
            at = ", ".join(str(f["iteration"] + 1) for f in fs)
            print(f"    iteration {at}: {fs[0]['cycles']} cycles, {fs[0]['reason']}", file=out)


def _print_tune_summary(s: dict, out) -> None:
    if s["workloads"] < 2:
        return
    line = (f"\n{s['solved']}/{s['workloads']} solved within the budget, pass@1 {s['pass_at_1']}/{s['workloads']}; "
            f"{s['iterations']} iterations, {s['llm_calls']} LLM calls")
    print(line, file=out)
    if s["flagged"] or s["flagged_references"]:
        print(f"flagged for review, not counted: {s['flagged']} kernel(s) and {s['flagged_references']} "
              "reference kernel(s)", file=out)
    if s["geomean_speedup_vs_reference"]:
        print(f"geometric-mean speedup vs reference over {s['speedup_workloads']} workload(s): "
              f"{s['geomean_speedup_vs_reference']:.2f}x", file=out)


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
