"""MetaSchedule around Hawk's kernels: their tiles become the search's decisions.

A kernel of the Hawk loop is a schedule program with constant tile sizes. ``tunable``
rewrites each constant split (except an instruction's own tile, which the intrinsic fixes)
into ``sample_perfect_tile`` with the program's factors as the decision, followed by a
split by the sampled factors: the same kernel, now a design space in MetaSchedule's terms
(compute_at keeps unit loops, so that every decision replays the same trace).
``search_around`` gives the design spaces of a few kernels to stock MetaSchedule (its
evolutionary search, tile-size mutator, XGBoost cost model and database) with the NPU
builder and runner, then checks the fastest of what it measured on the host like every
kernel Hawk reports.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from tvm import s_tir
from tvm.s_tir import meta_schedule as ms

from ..knowledge.rewrite import Line, Src, parse_script, tile_factors
from ..propose.program import apply_program, split_extents
from ..runtime.execute import HostWorker
from .metaschedule import MetaScheduleResult, _pick_best, _tune
from .space import VectorizeInner

MAX_INNERMOST = 1024  # what the tile-size mutator may give an innermost tile


@dataclass
class Found:
    trace: object | None
    cycles: int | None
    trials: int
    error: str = ""


def tunable(text: str, kernel) -> str | None:
    """The program with its free tile sizes as sampled decisions (None: none to free)."""
    script = parse_script(text)
    if script is None:
        return None
    free = {i for i, _ in tile_factors(script)}
    extents = split_extents(text, kernel)
    out, lifted = [], 0
    for i, line in enumerate(script.lines):
        factors = line.kw.get("factors") if line.prim == "split" else None
        decision = _decision(factors, extents.get(i)) if i in free and isinstance(factors, list) else None
        if line.prim in ("compute_at", "reverse_compute_at"):  # loop counts must not vary with tiles of 1
            line.kw["preserve_unit_loops"] = True
        if decision is None:
            out.append(line)
            continue
        names = [f"t{lifted}_{k}" for k in range(len(decision))]
        out.append(Line(names, "sample_perfect_tile",
                        {"loop": line.kw["loop"], "n": len(decision),
                         "max_innermost_factor": max(MAX_INNERMOST, decision[-1]), "decision": decision}, True))
        out.append(Line(line.targets, "split", {**line.kw, "factors": [Src(n) for n in names]}, line.unpack))
        lifted += 1
    if not lifted:
        return None
    script.lines = out
    return script.render()


def _decision(factors: list, extent: int | None) -> list[int] | None:
    """Constant factors (one may be None) as a perfect tiling of ``extent``, or None."""
    if extent is None or not all(f is None or (isinstance(f, int) and not isinstance(f, bool) and f > 0)
                                 for f in factors) or sum(f is None for f in factors) > 1:
        return None
    known = math.prod(f for f in factors if f is not None)
    if extent % known:
        return None
    out = [extent // known if f is None else f for f in factors]
    return out if math.prod(out) == extent else None


def design_spaces(programs: list[str], mod) -> list[s_tir.Schedule]:
    """Schedules of ``mod`` with the decisions of each program freed (programs that do not
    apply are left out)."""
    out = []
    for text in programs:
        applied = apply_program(tunable(text, mod) or text, mod)
        if not applied.ok:
            applied = apply_program(text, mod)
        if applied.ok:
            sch = s_tir.Schedule(mod)
            applied.trace.apply_to_schedule(sch, remove_postproc=False)
            out.append(sch)
    return out


def search_around(task, spec, programs: list[str], *, trials: int, seed: int = 0,
                  worker: HostWorker | None = None) -> Found:
    """MetaSchedule's search over the design spaces of ``programs``; the fastest record
    that is legal, correct on the host and passed by the gate."""
    spaces = design_spaces(programs, task.mod)
    if not spaces:
        return Found(None, None, 0, "no program applies")
    space = ms.space_generator.ScheduleFn(
        lambda sch: design_spaces(programs, sch.mod), sch_rules=[], postprocs=[VectorizeInner()],
        mutator_probs={ms.mutator.MutateTileSize(): 1.0})
    result = MetaScheduleResult()
    records = _tune(task.workload, spec, trials, seed, result, space=space, mod=task.mod)
    _pick_best(records, task.workload, spec, result, reference_cycles=None, trials=5, seed=seed, timeout=60.0,
               worker=worker)
    if not result.correct or result.program is None:
        return Found(None, None, result.trials, result.error)
    applied = apply_program(result.program, task.mod)
    return Found(applied.trace if applied.ok else None, result.cycles if applied.ok else None, result.trials,
                 "" if applied.ok else str(applied.error))
