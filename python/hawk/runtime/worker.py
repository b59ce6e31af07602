"""Code that runs inside the host worker process: build a kernel and run it.

Only plain data crosses the process boundary: the kernel as TVM JSON, numpy arrays in
and out. A hang or a crash in here ends the worker, never the caller.
"""

from __future__ import annotations

import time

import numpy as np


def run_kernel(kernel_json: str, trials: list[list[np.ndarray]], out_specs: list[tuple]) -> dict:
    """Build ``kernel_json`` for the host and run it once per trial.

    Outputs are pre-filled with NaN (or an extreme value for integer types) so that an
    element the kernel never writes cannot pass by accident.
    """
    import tvm

    t0 = time.perf_counter()
    try:
        mod = tvm.ir.load_json(kernel_json)
        func = tvm.compile(mod, target="llvm")["main"]
    except Exception as err:  # noqa: BLE001 - reported to the caller as data
        return {"error": _one_line(err), "phase": "build"}
    build_s = time.perf_counter() - t0
    dev = tvm.cpu(0)
    results, run_s = [], 0.0
    try:
        for inputs in trials:
            args = [tvm.runtime.tensor(a, dev) for a in inputs]
            outs = [tvm.runtime.tensor(_poison(shape, dtype), dev) for shape, dtype in out_specs]
            t0 = time.perf_counter()
            func(*args, *outs)
            run_s += time.perf_counter() - t0
            results.append([o.numpy() for o in outs])
    except Exception as err:  # noqa: BLE001
        return {"error": _one_line(err), "phase": "run"}
    return {"outputs": results, "build_s": build_s, "run_s": run_s}


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def _poison(shape, dtype) -> np.ndarray:
    if dtype == "bfloat16":
        import ml_dtypes

        return np.full(shape, np.nan, dtype=ml_dtypes.bfloat16)
    if np.issubdtype(np.dtype(dtype), np.floating):
        return np.full(shape, np.nan, dtype=dtype)
    if dtype == "bool":
        return np.zeros(shape, dtype=bool)
    return np.full(shape, np.iinfo(np.dtype(dtype)).min, dtype=dtype)
