"""The MetaSchedule baseline: stock tuning of one workload for the NPU model.

``ms.tune_tir`` with the stock evolutionary search, tile-size mutator and XGBModel, over the
NPU design space (``hawk.tuning.space``), measured by the NPU builder/runner
(``hawk.tuning.measure``), at a given trial budget. The fastest candidates are then run on
the host against the reference, fastest first, until one is correct and passes the gate
(``hawk.search.gate``): the baseline is legal, correct and plausible like every kernel Hawk
reports; the flagged ones are kept for review. A failure anywhere is a value.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass, field

from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from ..ir.safe_json import ir_key
from ..ir.workload import Workload
from ..npu import api_view, register_intrinsics, target
from ..npu.spec import HardwareSpec
from ..propose.program import program_from_trace
from ..runtime.execute import DEFAULT_TIMEOUT_S, DEFAULT_TRIALS, HostWorker, execute
from ..runtime.timing import time_kernel
from ..search.gate import gate
from .measure import ArtifactStore, NpuBuilder, NpuRunner, measure_callbacks
from .space import NpuSpace, VectorizeInner

TRIALS_PER_ROUND = 10  # candidates measured between cost-model updates
POPULATION = 64  # evolutionary search population (stock default 512 is sized for thousands of trials)
CHECK_BEST = 3  # fastest candidates found wrong on the host before giving up
FAILED_RUN_SECS = 1e9  # MetaSchedule records a failed build or run as 1e10 s


@dataclass
class MetaScheduleResult:
    """What MetaSchedule found: ``module``/``cycles`` are set when a legal, correct kernel exists."""

    trials: int = 0  # candidates measured (built)
    legal_trials: int = 0  # of those, the ones verify passed
    cycles: int | None = None
    module: object | None = field(default=None, repr=False)
    program: str | None = None  # the best kernel as a schedule program (``hawk run --kernel``)
    legal: bool = False
    correct: bool = False
    wall_s: float = 0.0
    error: str = ""  # why there is no kernel
    flagged: list[dict] = field(default_factory=list)  # correct kernels the gate held for review

    def to_dict(self) -> dict:
        return {"legal": self.legal, "correct": self.correct, "cycles": self.cycles, "trials": self.trials,
                "legal_trials": self.legal_trials, "wall_s": round(self.wall_s, 3), "error": self.error,
                "best_program": self.program, "flagged": self.flagged}


def space_generator(spec: HardwareSpec) -> ms.space_generator.ScheduleFn:
    """The NPU design space as a stock ``ScheduleFn`` with MetaSchedule's tile-size mutator."""
    return ms.space_generator.ScheduleFn(
        NpuSpace(api_view(spec)), sch_rules=[], postprocs=[VectorizeInner()],
        mutator_probs={ms.mutator.MutateTileSize(): 1.0})


def tune_metaschedule(workload: Workload, spec: HardwareSpec, *, budget: int = 30, seed: int = 0,
                      trials: int = DEFAULT_TRIALS, exec_timeout: float = DEFAULT_TIMEOUT_S,
                      worker: HostWorker | None = None, reference_cycles: int | None = None,
                      space=None) -> MetaScheduleResult:
    """``reference_cycles`` (a legal, correct reference's cycles) arms the gate's speedup rule;
    ``space``: a design space other than the NPU default (``Rules.space``, for one)."""
    start = time.perf_counter()
    result = MetaScheduleResult()
    try:
        records = _tune(workload, spec, budget, seed, result, reference_cycles, space=space)
        _pick_best(records, workload, spec, result, reference_cycles=reference_cycles, trials=trials, seed=seed,
                   timeout=exec_timeout, worker=worker)
    except Exception as err:  # noqa: BLE001 -- the baseline failing is a result, not a crash
        result.error = f"{type(err).__name__}: {err}"
    result.wall_s = time.perf_counter() - start
    return result


def _tune(workload, spec, budget, seed, result, reference_cycles=None, space=None, mod=None) -> list:
    """Measured records, fastest first (``space``: the NPU design space unless given;
    ``mod``: the workload's module unless given)."""
    register_intrinsics(spec)
    store = ArtifactStore()
    _reset_logging()
    with tempfile.TemporaryDirectory(prefix="hawk-ms-") as work_dir:
        try:
            database = ms.tune_tir(
                mod if mod is not None else workload.module(), target(spec), work_dir, max_trials_global=budget,
                num_trials_per_iter=min(budget, TRIALS_PER_ROUND),
                builder=NpuBuilder(spec, store), runner=NpuRunner(spec, store, workload=workload, reference_cycles=reference_cycles),
                database=ms.database.MemoryDatabase(), measure_callbacks=measure_callbacks(),
                cost_model=ms.cost_model.XGBModel(num_warmup_samples=min(budget, TRIALS_PER_ROUND)),
                space=space if space is not None else space_generator(spec),
                strategy=ms.search_strategy.EvolutionarySearch(population_size=POPULATION,
                                                               init_min_unmeasured=POPULATION // 4),
                seed=seed, num_tuning_cores=1)
        finally:
            _reset_logging()  # closes the log files before their directory goes, also after an error
    result.trials, result.legal_trials = store.built, store.legal
    timed = [r for r in database.get_all_tuning_records()
             if r.run_secs and float(r.run_secs[0]) < FAILED_RUN_SECS]
    return sorted(timed, key=lambda r: float(r.run_secs[0]))


def _program(trace) -> str | None:
    try:
        return program_from_trace(trace)
    except ValueError:
        return None


def _reset_logging() -> None:
    """Warnings only, and no handlers left from an earlier run: MetaSchedule re-reads the
    names of its logger's handlers on every tune_tir (an unnamed one breaks it) and opens a
    log file in the work directory each time."""
    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.setLevel(logging.WARNING)


def _pick_best(records, workload, spec, result, *, reference_cycles, **run) -> None:
    if not records:
        result.error = f"no legal candidate in {result.trials} trials"
        return
    result.legal = True
    seen = set()
    wrong = 0  # only wrong kernels use up CHECK_BEST: a model bug would flag exactly the fastest
    for record in records:
        if wrong == CHECK_BEST:
            break
        sch = s_tir.Schedule(workload.module())
        record.trace.apply_to_schedule(sch, remove_postproc=False)
        key = ir_key(sch.mod)
        if key in seen:  # the same kernel measured twice
            continue
        seen.add(key)
        outcome = execute(sch.mod, workload, **run)
        if outcome.status != "ok":
            wrong += 1
            result.error = f"fastest candidates wrong on the host: {outcome.status}: {outcome.message}"
            continue
        profile = time_kernel(sch.mod, spec, workload)
        verdict = gate(cycles=profile.cycles, roofline_cycles=profile.roofline_cycles,
                       reference_cycles=reference_cycles, model_bug=profile.model_bug)
        if verdict.flagged:
            result.flagged.append({"iteration": None, "cycles": profile.cycles,
                                   "roofline_cycles": profile.roofline_cycles,
                                   "reference_cycles": reference_cycles, "reason": verdict.reason,
                                   "program": _program(sch.trace)})
            continue
        result.correct = True
        result.module = sch.mod
        result.program = _program(sch.trace)
        result.cycles = profile.cycles
        result.error = ""
        return
    if not result.error:
        result.error = f"every correct candidate was flagged for review ({len(result.flagged)})"
