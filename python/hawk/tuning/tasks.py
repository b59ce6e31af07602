"""Tuning tasks: the distinct PrimFuncs of a model, each with how often it runs.

``extract_tasks`` takes what a TVM user has: an IRModule of PrimFuncs, or a Relax model
(fused the way ``tvm.compile`` fuses it for Hawk: legalize, annotate, fold, FuseOps,
FuseTIR). Tasks are deduplicated by structural hash and weighted by their call sites, as
MetaSchedule's ``extract_tasks`` does (for Relax it is MetaSchedule's own extraction). Each
task carries a Hawk workload: its reference is the unscheduled PrimFunc built for the host,
so any PrimFunc can be tuned and checked. Index arithmetic is narrowed to int32 first and
parameter buffers get one name each (``narrow``: Relax legalizes with int64 loops, which no
intrinsic's description matches, and ``x * x`` into two buffers named ``x``); the compile
flow narrows the same way, so database keys agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm
import tvm_ffi
from tvm import relax, s_tir, tirx
from tvm.s_tir import meta_schedule as ms

from ..ir.workload import Workload
from ..npu import target
from ..npu.spec import HardwareSpec


@dataclass
class HawkTask:
    """One PrimFunc to tune: ``mod`` holds it as ``main``; ``weight`` is how often it runs."""

    name: str
    mod: tvm.IRModule
    weight: int
    workload: Workload


def weighted_total(pairs) -> int | None:
    """The sum of value x count over (value, count) pairs; None if a value is missing (a
    total with a hole in it is not a total)."""
    pairs = list(pairs)
    if any(value is None for value, _ in pairs):
        return None
    return sum(value * count for value, count in pairs)


def fuse_passes() -> list:
    """Relax to fused PrimFuncs, as MetaSchedule's ``compile_relax`` prepares a model (so
    database keys match between tuning and compiling)."""
    return [relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(), relax.transform.FuseOps(), relax.transform.FuseTIR()]


def is_relax(mod: tvm.IRModule) -> bool:
    return any(isinstance(f, relax.Function) for f in mod.functions.values())


def extract_tasks(mod: tvm.IRModule | tirx.PrimFunc, spec: HardwareSpec) -> list[HawkTask]:
    """The distinct PrimFuncs of ``mod`` (a Relax model, an IRModule of PrimFuncs, or one
    PrimFunc) as tasks, heaviest first."""
    if isinstance(mod, tirx.PrimFunc):
        mod = tvm.IRModule({"main": mod})
    if is_relax(mod):
        fused = tvm.transform.Sequential(fuse_passes())(mod)
        found = [(t.task_name, t.dispatched[0], int(t.weight))
                 for t in ms.relax_integration.extract_tasks(fused, target(spec))]
    else:
        by_hash: dict[int, list] = {}
        for gv, func in mod.functions.items():
            if isinstance(func, tirx.PrimFunc):
                one = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
                key = tvm_ffi.structural_hash(one)
                if key in by_hash:
                    by_hash[key][2] += 1
                else:
                    by_hash[key] = [gv.name_hint, one, 1]
        found = [tuple(v) for v in by_hash.values()]
    tasks = []
    for name, one, weight in found:
        one = narrow(one)
        tasks.append(HawkTask(safe_name(name), one, weight, workload_of(safe_name(name), one["main"])))
    return sorted(tasks, key=lambda t: -t.weight)


def narrow(mod: tvm.IRModule) -> tvm.IRModule:
    """The module as Hawk tunes it (and keys it in databases): int32 indices (what the
    intrinsics' descriptions are written in) and one name per parameter buffer."""
    mod = tirx.transform.ForceNarrowIndexToInt32()(mod)
    return tvm.IRModule({gv: unique_names(f) if isinstance(f, tirx.PrimFunc) else f
                         for gv, f in mod.functions.items()})


def workload_of(name: str, func: tirx.PrimFunc) -> Workload:
    """A Hawk workload of any static PrimFunc: outputs are the trailing params it writes."""
    func = unique_names(func.with_attr("global_symbol", "main"))
    written = _written(func)
    n_outputs = 0
    for buf in reversed(list(func.params)):
        if buf.name not in written:
            break
        n_outputs += 1
    return Workload(name=name, category=classify(func), func=func, op=name, model="",
                    n_outputs=max(1, n_outputs))


def unique_names(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """The function with one name per parameter buffer. Relax legalizes ``x * x`` into a
    function of two buffers both named ``x``; their staging blocks would share a name, and
    a schedule could not tell them apart. A repeated name becomes ``x_1``, ``x_2``, ...:
    the parameter's variable is replaced throughout (no printing and parsing back, which
    would run TVMScript in-process)."""
    taken = {buf.name for buf in func.params}
    seen: set[str] = set()
    renamed = {}
    for buf in func.params:
        if buf.name in seen:
            k = 1
            while f"{buf.name}_{k}" in taken:
                k += 1
            taken.add(f"{buf.name}_{k}")
            renamed[buf] = tvm.ir.Var(f"{buf.name}_{k}", buf.ty)
        seen.add(buf.name)
    if not renamed:
        return func
    return tvm_ffi.structural_map(func, [(tvm.ir.Var, lambda v: renamed.get(v, v))])


def classify(func: tirx.PrimFunc) -> str:
    """The workload category a kernel author would give this PrimFunc, from its blocks."""
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    blocks = [sch.get(b) for b in sch.get_child_blocks(sch.get_sblock("root"))]
    mma = [b for b in blocks if _multiply_accumulate(b)]
    if len(blocks) == 1 and mma:
        return "conv" if any(len(r.region) == 4 for r in mma[0].reads) else "matmul"
    if len(blocks) > 1:
        return "fused"
    if any(int(iv.iter_type) != 0 for b in blocks for iv in b.iter_vars):
        return "reduction"
    return "elementwise"


def _multiply_accumulate(block) -> bool:
    value = getattr(block.body, "value", None)
    return isinstance(value, tirx.Add) and isinstance(value.b, tirx.Mul)


def _written(func: tirx.PrimFunc) -> set[str]:
    sch = s_tir.Schedule(tvm.IRModule({"main": func}))
    out = set()
    for b in sch.get_child_blocks(sch.get_sblock("root")):
        out.update(w.source.name for w in sch.get(b).writes)
    return out


def safe_name(name: str) -> str:
    """A name a workload may carry (letters, digits, '-', '_', '.'), from any PrimFunc's."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)[:100] or "task"
