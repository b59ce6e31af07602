"""The ``host`` role of a sandbox child (hawk.sandbox.child): build a kernel and run it.

``prepare`` imports TVM and builds and runs a warm-up kernel (vectorised, parallel, with a
heap workspace and transcendental math), so every library and lazily imported module is
loaded before the child locks itself down; after that it can read no file, open no
socket and start no process. ``handle`` takes the kernel as TVM JSON and the inputs as raw
arrays (no pickle crosses the boundary) and answers with the outputs as raw arrays.

Outputs are pre-filled with poison: NaN or the largest finite value, the integer extremes,
False or True. The first trial runs under both poisons, and an element that differs between
the two runs was never written or was computed from what the output held before; later
trials alternate the poisons, so an element skipped only for some inputs shows one.
After each run the inputs are compared with what was sent: a kernel that writes its
inputs is reported.
"""

from __future__ import annotations

import time

import numpy as np

_WARMUP_N = 1024


def prepare() -> None:
    import ml_dtypes  # noqa: F401 - bfloat16 arrays need it after lock-down
    import tvm
    from tvm.script import tirx as T

    n = _WARMUP_N

    @T.prim_func(s_tir=True)
    def warmup(A: T.Buffer((n, n), "float32"), B: T.Buffer((n, n), "float16")):
        tmp = T.alloc_buffer((n, n), "float32")
        for i in T.parallel(n):
            for j in T.vectorized(n):
                with T.sblock("tmp"):
                    vi, vj = T.axis.remap("SS", [i, j])
                    tmp[vi, vj] = T.exp(A[vi, vj]) + T.log(T.sqrt(A[vi, vj]) + T.float32(1))
        for i, j in T.grid(n, n):
            with T.sblock("B"):
                vi, vj = T.axis.remap("SS", [i, j])
                B[vi, vj] = T.Cast("float16", T.if_then_else(tmp[vi, vj] > 0, tmp[vi, vj], T.tanh(tmp[vi, vj])))

    a = np.ones((n, n), "float32")
    _run(tvm.ir.save_json(tvm.IRModule({"main": warmup})), [[a]], [((n, n), "float16")])


def handle(header: dict, blobs: list[bytes]) -> tuple[dict, list]:
    inputs = header["inputs"]  # per trial: [[shape, dtype], ...]
    arrays, k = [], 0
    for specs in inputs:
        trial = []
        for shape, dtype in specs:
            trial.append(np.frombuffer(blobs[k], dtype=_np_dtype(dtype)).reshape(shape).copy())
            k += 1
        arrays.append(trial)
    outs = [(tuple(shape), dtype) for shape, dtype in header["outputs"]]
    res = _run(header["kernel"], arrays, outs)
    if "error" in res:
        return res, []
    blobs_out = [np.ascontiguousarray(o) for trial in res.pop("outputs") for o in trial]
    return res, blobs_out


def _run(kernel_json: str, trials: list[list[np.ndarray]], out_specs: list[tuple]) -> dict:
    import tvm

    from ..ir.safe_json import load_ir_json

    t0 = time.perf_counter()
    try:
        mod = load_ir_json(kernel_json)
        func = tvm.compile(mod, target="llvm")["main"]
    except Exception as err:  # noqa: BLE001 - reported to the caller as data
        return {"error": _one_line(err), "phase": "build"}
    build_s = time.perf_counter() - t0
    dev = tvm.cpu(0)
    results, run_s = [], 0.0
    unwritten = [0] * len(out_specs)
    inputs_written: set[int] = set()
    try:
        for t, inputs in enumerate(trials):
            # The first trial runs under every prior content (two poisons and plausible
            # numbers, which a kernel keeping "valid-looking" old outputs keeps); later ones
            # rotate them, so an output skipped only for some inputs still shows.
            poisons = FILLS if t == 0 else (FILLS[t % len(FILLS)],)
            runs = []
            for poison in poisons:
                args = [tvm.runtime.tensor(a, dev) for a in inputs]
                outs = [tvm.runtime.tensor(poison(shape, dtype), dev) for shape, dtype in out_specs]
                t0 = time.perf_counter()
                func(*args, *outs)
                run_s += time.perf_counter() - t0
                inputs_written |= {i for i, (a, arg) in enumerate(zip(inputs, args))
                                   if not _same_bits(a, arg.numpy())}
                runs.append([o.numpy() for o in outs])
            if len(runs) > 1:
                unwritten = [int(np.count_nonzero(~np.logical_and.reduce([_same_elements(first, other)
                                                                          for other in others])))
                             for first, *others in zip(*runs)]
            results.append(runs[0])
    except Exception as err:  # noqa: BLE001
        return {"error": _one_line(err), "phase": "run"}
    return {"outputs": results, "build_s": build_s, "run_s": run_s, "unwritten": unwritten,
            "inputs_written": sorted(inputs_written)}


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"


def _np_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def _poison_a(shape, dtype) -> np.ndarray:
    dt = _np_dtype(dtype)
    if dtype == "bool":
        return np.zeros(shape, dtype=bool)
    if dtype == "bfloat16" or np.issubdtype(dt, np.floating):
        return np.full(shape, np.nan, dtype=dt)
    return np.full(shape, np.iinfo(dt).min, dtype=dt)


def _poison_b(shape, dtype) -> np.ndarray:
    dt = _np_dtype(dtype)
    if dtype == "bool":
        return np.ones(shape, dtype=bool)
    if dtype == "bfloat16":
        return np.full(shape, 3.0e38, dtype=dt)
    if np.issubdtype(dt, np.floating):
        return np.full(shape, np.finfo(dt).max, dtype=dt)
    return np.full(shape, np.iinfo(dt).max, dtype=dt)


def _plausible(shape, dtype) -> np.ndarray:
    """Old outputs that look like results: small finite numbers, valid integers."""
    dt, rng = _np_dtype(dtype), np.random.default_rng(0x5EED)
    if dtype == "bool":
        return rng.random(shape) < 0.5
    if dtype == "bfloat16" or np.issubdtype(dt, np.floating):
        return rng.standard_normal(shape).astype(dt)
    info = np.iinfo(dt)
    return rng.integers(max(info.min, -100), min(info.max, 100), size=shape, endpoint=True).astype(dt)


FILLS = (_poison_a, _poison_b, _plausible)


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.tobytes() == b.tobytes()


def _same_elements(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise bit equality (NaN equals NaN), flattened."""
    width = a.dtype.itemsize
    view = {1: np.uint8, 2: np.uint16, 4: np.uint32, 8: np.uint64}[width]
    return a.reshape(-1).view(view) == b.reshape(-1).view(view)
