"""A model as a framework without fusion runs it: op by op, the vendor library where it has
a kernel, Hawk's search where it has none (``bench/e2e.py --vendor``).

Each op of the unfused graph (Relax legalized, no FuseOps) is matched to an operator of the
vendor library (``hawk.bench.reference``) by its name and shapes, and the match is checked
numerically on the host (both built, same inputs, outputs compared): a match that does
not compute the same thing is not used. A reshape is a view (no kernel, no cycles).
"""

from __future__ import annotations

import math
import re

import numpy as np
import tvm
from hawk.bench.reference import has_reference, reference_kernel
from hawk.ir import ops
from hawk.ir.workload import np_dtype, param_specs
from hawk.runtime.timing import time_kernel
from hawk.tuning.compile import call_counts
from hawk.tuning.tasks import narrow, workload_of
from tvm import relax

UNARY = {"relu", "silu", "exp", "sigmoid", "tanh"}


def unfused(mod: tvm.IRModule) -> tvm.IRModule:
    return relax.transform.LegalizeOps()(mod)


def candidates(name: str, func) -> list:
    """Vendor-library workloads that may compute what ``func`` (op ``name``) computes."""
    p = param_specs(func)
    ins, out = p[:-1], p[-1]
    kind = re.sub(r"\d+$", "", name)
    flat = (math.prod(out.shape[:-1]) if len(out.shape) > 1 else 1, out.shape[-1])
    found = []
    if kind == "matmul" and len(ins) == 2:
        a, b = ins
        if len(a.shape) == 2 and len(b.shape) == 2:
            found.append(ops.matmul(name, a.shape[0], b.shape[1], a.shape[1], dtype=a.dtype, out_dtype=out.dtype))
        elif len(a.shape) == 3 and len(b.shape) == 3:
            found.append(ops.batch_matmul(name, a.shape[0], a.shape[1], b.shape[2], a.shape[2], dtype=a.dtype,
                                          out_dtype=out.dtype))
    elif kind in UNARY and len(ins) == 1:
        found.append(ops.unary(name, kind, *flat, dtype=out.dtype))
    elif kind in ("add", "multiply") and len(ins) == 2:
        if ins[0].shape == ins[1].shape == out.shape:
            found.append(ops.binary(name, "add" if kind == "add" else "mul", *flat, dtype=out.dtype))
        elif kind == "add" and ins[0].shape == out.shape and ins[1].shape == (out.shape[-1],):
            found.append(ops.bias_add(name, *flat, dtype=out.dtype))
    elif kind == "softmax" and len(ins) == 1:
        found.append(ops.softmax(name, *flat, dtype=out.dtype))
    elif kind in ("transpose", "permute_dims") and len(ins) == 1 and len(out.shape) == 2:
        found.append(ops.transpose(name, out.shape[1], out.shape[0], dtype=out.dtype))
    elif kind == "max_pool2d" and len(ins) == 1 and len(out.shape) == 4:
        n, h, w, c = ins[0].shape
        found.append(ops.pool2d(name, "max", n, h, w, c, h // out.shape[1], h // out.shape[1], dtype=out.dtype))
    return [w for w in found if _same(func, w.func)]


def _same(a, b, seed: int = 0) -> bool:
    """Both functions, built for the host, give the same output for the same inputs (flat)."""
    pa, pb = param_specs(a), param_specs(b)
    if len(pa) != len(pb) or any(math.prod(x.shape) != math.prod(y.shape) for x, y in zip(pa, pb)):
        return False
    rng = np.random.default_rng(seed)
    inputs = [rng.uniform(-2, 2, size=x.shape).astype(np_dtype(x.dtype)) for x in pa[:-1]]
    outs = []
    for f, params in ((a, pa), (b, pb)):
        lib = tvm.compile(tvm.IRModule({"main": f.with_attr("global_symbol", "main")}), target="llvm")
        args = [tvm.runtime.tensor(x.reshape(s.shape).astype(np_dtype(s.dtype))) for x, s in zip(inputs, params)]
        args.append(tvm.runtime.tensor(np.zeros(params[-1].shape, np_dtype(params[-1].dtype))))
        lib["main"](*args)
        outs.append(args[-1].numpy().astype(np.float64).ravel())
    return bool(np.allclose(outs[0], outs[1], rtol=1e-2, atol=1e-2))


def op_by_op(mod: tvm.IRModule, spec, *, budget: int, worker, knowledge=None) -> dict:
    """Cycles of the unfused model: vendor kernels where the library has one, Hawk's search
    (``budget`` iterations) elsewhere; which ops took which."""
    from hawk.propose.offline import OfflineProposer
    from hawk.search import tune

    graph = unfused(mod)
    calls = call_counts(graph)
    total, rows = 0, []
    for gv, func in graph.functions.items():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        name, n = gv.name_hint, calls.get(gv.name_hint, 1)
        one = narrow(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))["main"]
        if re.sub(r"\d+$", "", name) == "reshape":
            rows.append({"op": name, "calls": n, "by": "view", "cycles": 0})
            continue
        vendor = next((w for w in candidates(name, one) if has_reference(w, spec)), None)
        cycles, by = None, "none"
        if vendor is not None:
            try:
                cycles, by = time_kernel(reference_kernel(vendor, spec), spec, vendor).cycles, "vendor"
            except Exception:  # noqa: BLE001 - the library has no legal kernel for this shape
                vendor = None
        if vendor is None:
            best = tune(workload_of(name, one), spec, OfflineProposer(), budget=budget, worker=worker,
                        knowledge=knowledge).best
            if best is not None:
                cycles, by = best.cycles, "hawk"
        rows.append({"op": name, "calls": n, "by": by, "cycles": cycles})
        total = None if total is None or cycles is None else total + cycles * n
    found = sum(r["cycles"] * r["calls"] for r in rows if r["cycles"] is not None)
    return {"cycles": total, "found": found, "ops": rows}
