"""The compile flow: ``tvm.compile`` of a Relax model for a Hawk NPU target.

    import hawk.tuning  # registers the "hawk" Relax pipeline
    with hawk.tuning.CompileOptions(database="db/", knowledge="kb.sqlite", budget=10):
        ex = tvm.compile(mod, target=hawk.npu.target(spec), relax_pipeline="hawk")

The pipeline fuses the model as MetaSchedule's ``compile_relax`` does, then schedules every
fused PrimFunc for the NPU, first found first: a record of the database; a kernel built by
the exported rules that the NPU model passes; a search of the Hawk loop within the budget
(its kernel, legal and correct on the host, is committed to the database). A PrimFunc none
of these schedules keeps its host form and is reported as unscheduled. Then the usual
lowering and finalising passes, and the build for the host, where the Relax VM runs it.
``compile_model`` does the same and returns the executable with a report of every
PrimFunc's simulated cycles, per call and in all.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import tvm
from tvm import relax, tirx

from ..npu import register_intrinsics, spec_of, target
from ..npu.spec import HardwareSpec
from ..runtime.timing import SimulatorError, time_kernel
from ..runtime.verify import verify
from .tasks import fuse_passes, is_relax, narrow, safe_name, weighted_total, workload_of

_current: contextvars.ContextVar[CompileOptions | None] = contextvars.ContextVar("hawk_compile", default=None)


@dataclass
class CompileOptions:
    """How the "hawk" pipeline schedules; a context manager makes it the current one."""

    database: str | Path | None = None  # a JSONDatabase directory: read first, new kernels written
    knowledge: str | Path | None = None  # a knowledge store: prompts, repairs and learning
    rules: str | Path | None = None  # exported rules (``hawk kb export-rules``)
    budget: int = 10  # loop iterations per PrimFunc neither the database nor the rules schedule
    proposer: object | None = None  # default: the offline proposer
    seed: int = 0
    report: CompileReport | None = field(default=None, repr=False)  # filled by the pipeline

    def __enter__(self) -> Self:
        self._token = _current.set(self)
        return self

    def __exit__(self, *exc) -> None:
        _current.reset(self._token)


@dataclass
class KernelReport:
    name: str
    source: str  # database | rules | search | unscheduled
    calls: int
    cycles: int | None = None  # simulated, per call
    roofline_cycles: int | None = None
    wall_s: float = 0.0
    note: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CompileReport:
    target: str
    kernels: list[KernelReport] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def total_cycles(self) -> int | None:
        """Simulated cycles of one run of the model (None while a PrimFunc is unscheduled)."""
        return weighted_total((k.cycles, k.calls) for k in self.kernels)

    @property
    def roofline_cycles(self) -> int | None:
        return weighted_total((k.roofline_cycles, k.calls) for k in self.kernels)

    def to_dict(self) -> dict:
        return {"target": self.target, "total_cycles": self.total_cycles, "roofline_cycles": self.roofline_cycles,
                "wall_s": round(self.wall_s, 2), "kernels": [k.to_dict() for k in self.kernels]}

    def render(self) -> str:
        rows = [f"{'PrimFunc':48} {'from':11} {'calls':>5} {'cycles':>10} {'roofline':>9}"]
        for k in self.kernels:
            rows.append(f"{k.name[:48]:48} {k.source:11} {k.calls:>5} {k.cycles if k.cycles is not None else '-':>10} "
                        f"{k.roofline_cycles if k.roofline_cycles is not None else '-':>9}")
        total = self.total_cycles
        rows.append(f"total simulated cycles: {total if total is not None else '- (a PrimFunc is unscheduled)'}"
                    f"; roofline {self.roofline_cycles}; {self.wall_s:.1f} s")
        return "\n".join(rows)


def schedule_module(mod: tvm.IRModule, spec: HardwareSpec, options: CompileOptions | None = None
                    ) -> tuple[tvm.IRModule, CompileReport]:
    """``mod`` (a Relax model, fused here if it is not yet) with every PrimFunc scheduled
    for ``spec``, and the report."""
    options = options or CompileOptions()
    start = time.perf_counter()
    if is_relax(mod) and not any(isinstance(f, tirx.PrimFunc) for f in mod.functions.values()):
        mod = tvm.transform.Sequential(fuse_passes())(mod)
    register_intrinsics(spec)
    report = CompileReport(spec.name)
    calls = call_counts(mod)
    with _Scheduler(spec, options) as scheduler:
        for gv, func in list(mod.functions.items()):
            if not isinstance(func, tirx.PrimFunc):
                continue
            kernel = scheduler.schedule(gv.name_hint, func, calls.get(gv.name_hint, 1))
            report.kernels.append(kernel.report)
            if kernel.func is not None:
                mod[gv] = kernel.func
    report.wall_s = time.perf_counter() - start
    options.report = report
    return mod, report


def pipeline(options: CompileOptions | None = None) -> tvm.transform.Pass:
    """The "hawk" Relax pipeline: fuse, schedule every PrimFunc for the current target's
    NPU, lower and finalise (``options``: else the current ``CompileOptions``, else defaults)."""

    @tvm.transform.module_pass(opt_level=0, name="HawkPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        # the host's lowering (TVM 0.27's relax.pipeline dispatch misses these names for llvm)
        from tvm.relax.backend.cpu_generic import pipeline as relax_pipeline

        tgt = tvm.target.Target.current()
        spec = spec_of(tgt)
        if spec is None:
            raise ValueError(f"the hawk pipeline needs a Hawk NPU target (hawk.npu.target(spec)), got {tgt}")
        opts = options or _current.get() or CompileOptions()
        mod, _ = schedule_module(mod, spec, opts)
        passes = relax_pipeline.dataflow_lower_passes(tgt) + relax_pipeline.finalize_passes(tgt)
        return tvm.transform.Sequential(passes)(mod)

    return _pipeline


relax.register_pipeline("hawk")(lambda **kw: pipeline(**kw))


def compile_model(mod: tvm.IRModule, spec: HardwareSpec, **options) -> tuple[object, CompileReport]:
    """``tvm.compile`` of a Relax model for ``spec`` with the hawk pipeline: (executable for
    the Relax VM on the host, report). ``options`` are ``CompileOptions`` fields."""
    opts = CompileOptions(**options)
    with opts:
        ex = tvm.compile(mod, target=target(spec), relax_pipeline="hawk")
    return ex, opts.report


def run(ex, mod: tvm.IRModule, inputs: dict, function: str = "main"):
    """Run a compiled model on the host with named numpy inputs; returns numpy output(s)."""
    vm = relax.VirtualMachine(ex, tvm.cpu())
    names = [p.name for p in mod[function].params]
    missing = [n for n in names if n not in inputs]
    if missing:
        raise ValueError(f"inputs missing for {', '.join(missing)}")
    out = vm[function](*[tvm.runtime.tensor(inputs[n]) for n in names])
    return out.numpy() if hasattr(out, "numpy") else [o.numpy() for o in out]


def call_counts(mod: tvm.IRModule) -> dict[str, int]:
    """How often each PrimFunc is called from the Relax functions (by name)."""
    counts: dict[str, int] = {}
    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            for name in _called(func):
                counts[name] = counts.get(name, 0) + 1
    return counts


def _called(func) -> list[str]:
    names = []

    def visit(node):
        if isinstance(node, relax.Call) and len(node.args) and isinstance(node.args[0], tvm.ir.GlobalVar) \
                and getattr(node.op, "name", "") in ("relax.call_tir", "relax.call_tir_inplace"):
            names.append(node.args[0].name_hint)

    relax.analysis.post_order_visit(func, visit)
    return names


@dataclass
class _Kernel:
    func: tirx.PrimFunc | None
    report: KernelReport


class _Scheduler:
    """Database, then rules, then search, for one compile; owns the worker and the stores."""

    def __init__(self, spec: HardwareSpec, options: CompileOptions):
        self.spec, self.options = spec, options
        self.stack = contextlib.ExitStack()
        self.worker = None
        self.knowledge = None
        self.database = None
        self.rules = None

    def __enter__(self) -> Self:
        from . import database as dbmod

        if self.options.database is not None:
            self.database, _ = dbmod.load(self.options.database)
        if self.options.rules is not None:
            from .rules import load_rules

            self.rules = load_rules(self.options.rules)
        return self

    def __exit__(self, *exc) -> None:
        if self.worker is not None:
            self.worker.close()
        self.stack.close()

    def schedule(self, name: str, func: tirx.PrimFunc, calls: int) -> _Kernel:
        start = time.perf_counter()
        one = narrow(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))
        workload = workload_of(safe_name(name), one["main"])
        report = KernelReport(name, "unscheduled", calls)
        scheduled, note = None, ""
        for source, find in (("database", self._from_database), ("rules", self._from_rules),
                             ("search", self._from_search)):
            scheduled, why = find(one, workload)
            note = note or why
            if scheduled is not None:
                report.source = source
                break
        report.note = "" if scheduled is not None else note
        if scheduled is not None:
            try:
                profile = time_kernel(scheduled, self.spec, workload)
                report.cycles, report.roofline_cycles = profile.cycles, profile.roofline_cycles
            except SimulatorError as err:
                report.note = str(err)
        report.wall_s = time.perf_counter() - start
        if scheduled is None:
            return _Kernel(None, report)
        out = scheduled["main"].with_attr("global_symbol", func.attrs["global_symbol"]) \
            if func.attrs is not None and "global_symbol" in func.attrs else scheduled["main"].without_attr("global_symbol")
        return _Kernel(out, report)

    def _legal(self, mod) -> bool:
        try:
            return not verify(mod, self.spec)
        except Exception:  # noqa: BLE001
            return False

    def _from_database(self, one, workload):
        if self.database is None:
            return None, ""
        sch = self.database.query_schedule(one, target(self.spec), "main")
        if sch is None:
            return None, ""
        return (sch.mod, "") if self._legal(sch.mod) else (None, "the database's kernel is illegal on this NPU")

    def _from_rules(self, one, workload):
        if self.rules is None:
            return None, ""
        from ..runtime.execute import execute

        for mod in self.rules.kernels(one, self.spec):
            if self._legal(mod) and execute(mod, workload, worker=self._worker()).status == "ok":
                return mod, ""
        return None, "no rule gave a legal, correct kernel"

    def _from_search(self, one, workload):
        if self.options.budget <= 0:
            return None, "no search budget"
        from ..search import tune

        result = tune(workload, self.spec, self._proposer(), budget=self.options.budget, seed=self.options.seed,
                      worker=self._worker(), knowledge=self._knowledge())
        best = result.best
        if best is None or best.module is None:
            return None, f"no legal, correct kernel in {self.options.budget} iterations"
        if self.options.database is not None and best.kind == "program":
            from .tune import commit_best

            commit_best(self.options.database, one, best, f"compile-{workload.name}")
        return best.module, ""

    def _worker(self):
        if self.worker is None:
            from ..runtime.execute import HostWorker

            self.worker = HostWorker()
        return self.worker

    def _proposer(self):
        if self.options.proposer is None:
            from ..propose.offline import OfflineProposer

            self.options.proposer = OfflineProposer()
        return self.options.proposer

    def _knowledge(self):
        if self.options.knowledge is None:
            return None
        if self.knowledge is None:
            from ..knowledge import KnowledgeStore
            from ..knowledge.base import Knowledge

            store = self.stack.enter_context(KnowledgeStore(self.options.knowledge))
            self.knowledge = Knowledge(store)
        return self.knowledge
