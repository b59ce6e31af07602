"""Tuning a model the way MetaSchedule's ``tune_tir`` / ``tune_relax`` do, with Hawk.

``tune_model(mod, spec, work_dir)`` extracts the tasks (``hawk.tuning.tasks``), runs the
Hawk loop with its knowledge on each, and writes every task's best kernel -- legal on the
NPU model, correct on the host, passed by the gate -- to the MetaSchedule database in
``work_dir`` (a ``JSONDatabase`` any MetaSchedule user can open). With ``search_trials``,
MetaSchedule then searches around Hawk's kernels: their tile sizes become
``sample_perfect_tile`` decisions of a design space (``HawkSpace``), which MetaSchedule's
evolutionary search, cost model and database explore; what it finds goes through the same
checks before it is committed. Tasks run in ``jobs`` worker processes at once, each with
its own database part, merged into ``work_dir`` under a lock; they share one knowledge
store (SQLite, safe across processes).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import tvm
from tvm.s_tir import meta_schedule as ms

from ..npu.spec import HardwareSpec
from . import database as dbmod
from .measure import CLOCK_HZ
from .tasks import HawkTask, extract_tasks, weighted_total, workload_of


@dataclass
class TaskResult:
    name: str
    weight: int
    category: str
    cycles: int | None = None  # the best kernel's simulated cycles
    source: str = ""  # hawk | metaschedule (which found the best kernel)
    iterations: int = 0
    search_trials: int = 0
    wall_s: float = 0.0
    error: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TuneReport:
    target: str
    work_dir: str
    tasks: list[TaskResult] = field(default_factory=list)
    wall_s: float = 0.0

    @property
    def weighted_cycles(self) -> int | None:
        return weighted_total((t.cycles, t.weight) for t in self.tasks) if self.tasks else None

    def to_dict(self) -> dict:
        return {"target": self.target, "work_dir": self.work_dir, "weighted_cycles": self.weighted_cycles,
                "wall_s": round(self.wall_s, 2), "tasks": [t.to_dict() for t in self.tasks]}


def tune_model(mod, spec: HardwareSpec, work_dir: str | Path, *, budget: int = 30, knowledge: str | Path | None = None,
               proposer_factory=None, jobs: int = 1, seed: int = 0, search_trials: int = 0,
               progress=None) -> TuneReport:
    """Tune every task of ``mod`` (a Relax model, an IRModule of PrimFuncs or a PrimFunc)
    for ``spec``; the database in ``work_dir`` receives each task's best kernel.

    ``budget``: loop iterations per task; ``knowledge``: a store path (read, and learned
    into); ``proposer_factory()``: a fresh proposer per task (default: offline; must be
    picklable with ``jobs`` > 1); ``search_trials``: MetaSchedule trials around Hawk's
    kernels per task (0: none); ``progress(TaskResult)``: called as each task ends."""
    start = time.perf_counter()
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    tasks = extract_tasks(mod, spec)
    report = TuneReport(spec.name, str(work_dir))
    settings = {"budget": budget, "knowledge": str(knowledge) if knowledge else None,
                "proposer_factory": proposer_factory, "seed": seed, "search_trials": search_trials}
    if jobs <= 1:
        from ..runtime.execute import HostWorker

        worker = HostWorker()
        try:
            for t in tasks:
                report.tasks.append(_guarded(t.name, t.weight, lambda t=t: tune_task(
                    t, spec, work_dir, worker=worker, **settings), t.workload.category))
                if progress is not None:
                    progress(report.tasks[-1])
        finally:
            worker.close()
    else:
        import multiprocessing

        pool = ProcessPoolExecutor(max_workers=jobs, mp_context=multiprocessing.get_context("spawn"))
        try:
            args = [(t.name, t.weight, tvm.ir.save_json(t.mod), spec, str(work_dir), settings) for t in tasks]
            for res in pool.map(_tune_in_a_process, args):
                report.tasks.append(res)
                if progress is not None:
                    progress(res)
        except BaseException:
            _stop(pool)
            raise
        finally:
            pool.shutdown(cancel_futures=True)  # an interrupted run does not wait for the queue
    report.wall_s = time.perf_counter() - start
    return report


def _stop(pool: ProcessPoolExecutor, grace_s: float = 5.0) -> None:
    """Interrupt the running tasks too: each unwinds (closing its sandboxes), and one that
    does not within the grace period (blocked in native code) is killed -- its sandboxes die
    with it, its store writes are transactions, and its sandbox directories are removed."""
    from ..sandbox.process import remove_stale_workdirs

    procs = list((pool._processes or {}).values())  # no public handle on the workers in 3.11
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in procs:
        proc.join(grace_s)
        if proc.is_alive():
            proc.kill()
            proc.join()
    remove_stale_workdirs()


def _tune_in_a_process(args) -> TaskResult:
    """A task sent to a worker process as TVM JSON (no pickle of IR crosses)."""
    name, weight, mod_json, spec, work_dir, settings = args

    def run() -> TaskResult:
        mod = tvm.ir.load_json(mod_json)
        return tune_task(HawkTask(name, mod, weight, workload_of(name, mod["main"])), spec, work_dir, **settings)

    return _guarded(name, weight, run)


def _guarded(name: str, weight: int, run, category: str = "") -> TaskResult:
    try:
        return run()
    except Exception as err:  # noqa: BLE001 - one task failing is its result, not the run's end
        return TaskResult(name, weight, category, error=f"{type(err).__name__}: {err}")


def tune_task(task: HawkTask, spec: HardwareSpec, work_dir: str | Path, *, budget: int = 30,
              knowledge: str | Path | None = None, proposer_factory=None, seed: int = 0,
              search_trials: int = 0, worker=None) -> TaskResult:
    """One task: the Hawk loop (and MetaSchedule around its kernels), the best committed
    (``worker``: the host worker to run kernels in; one is started for the task if None)."""
    from ..search import tune

    start = time.perf_counter()
    result = TaskResult(task.name, task.weight, task.workload.category)
    proposer = proposer_factory() if proposer_factory else _offline()
    store = None
    kb = None
    if knowledge:
        from ..knowledge import KnowledgeStore
        from ..knowledge.base import Knowledge

        store = KnowledgeStore(knowledge)
        kb = Knowledge(store)
    try:
        run = tune(task.workload, spec, proposer, budget=budget, seed=seed, knowledge=kb, worker=worker)
    finally:
        if store is not None:
            store.close()
    result.iterations = run.iterations
    best = run.best
    programs = sorted((c for c in run.candidates if c.is_result and c.kind == "program"),
                      key=lambda c: c.cycles or 0)
    if best is None:
        result.error = f"no legal, correct kernel in {budget} iterations"
    else:
        result.cycles, result.source = best.cycles, "hawk"
    if search_trials > 0 and programs:
        from .around import search_around

        found = search_around(task, spec, [c.text for c in programs[:3]], trials=search_trials, seed=seed,
                              worker=worker)
        result.search_trials = found.trials
        if found.cycles is not None and (result.cycles is None or found.cycles < result.cycles):
            commit_trace(work_dir, task.mod, found.trace, found.cycles, task.name)
            result.cycles, result.source, result.error = found.cycles, "metaschedule", ""
            programs = []
    if programs:
        commit_best(work_dir, task.mod, programs[0], task.name)
    result.wall_s = time.perf_counter() - start
    return result


def commit_best(work_dir: str | Path, mod, candidate, name: str) -> None:
    """The loop's kernel (a schedule program) as a tuning record of ``mod`` in ``work_dir``."""
    from ..propose.program import apply_program

    applied = apply_program(candidate.text, mod)
    if applied.ok:
        commit_trace(work_dir, mod, applied.trace, candidate.cycles, name)


def commit_trace(work_dir: str | Path, mod, trace, cycles: int, name: str) -> None:
    """One record into this process's part, merged into ``work_dir`` under its lock."""
    part = dbmod.part_dir(work_dir, name)
    try:
        db = ms.database.JSONDatabase(work_dir=str(part))
        wl = db.commit_workload(mod)
        # no target in the record: a work_dir holds one target's records
        db.commit_tuning_record(ms.database.TuningRecord(trace, wl, [cycles / CLOCK_HZ], None, None))
        dbmod.merge(work_dir, [part])
    finally:
        shutil.rmtree(part, ignore_errors=True)


def _offline():
    from ..propose.offline import OfflineProposer

    return OfflineProposer()


def open_database(work_dir: str | Path) -> ms.database.MemoryDatabase:
    """The database of a tuning run, every record that loads (warnings for the rest)."""
    db, _ = dbmod.load(work_dir)
    return db

