"""execute: build a kernel for the host and check it against the workload's reference.

The build and the runs happen in a separate worker process with a time limit, so a hung
build, an endless loop or a segfault becomes a result and never takes the caller down.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import tvm

from ..ir.workload import Workload, WorkloadError, param_specs
from .program import ProgramError, as_module, main_func
from .worker import run_kernel

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2, "float64": 1e-6}
DEFAULT_TRIALS = 5
DEFAULT_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class ExecResult:
    """Outcome of running a kernel: ``status`` is ok, mismatch, signature, build_error,
    runtime_error, timeout or crash; ``message`` says what happened in one line."""

    status: str
    message: str = ""
    trials: int = 0
    max_abs_error: float = 0.0
    max_rel_error: float = 0.0
    mismatched: int = 0  # elements out of tolerance in the worst trial
    build_s: float = 0.0
    run_s: float = 0.0
    wall_s: float = 0.0

    @property
    def correct(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict:
        return {
            "status": self.status, "correct": self.correct, "message": self.message,
            "trials": self.trials, "max_abs_error": self.max_abs_error,
            "max_rel_error": self.max_rel_error, "mismatched": self.mismatched,
            "build_s": round(self.build_s, 4), "run_s": round(self.run_s, 4),
            "wall_s": round(self.wall_s, 4),
        }


class HostWorker:
    """One reusable worker process; killed and restarted after a timeout or crash."""

    def __init__(self):
        from tvm.support.popen_pool import PopenWorker

        self._worker = PopenWorker()
        self._lock = threading.Lock()

    def call(self, fn, args, timeout: float):
        with self._lock:
            self._worker.send(fn, args, timeout=timeout)
            return self._worker.recv()

    def close(self) -> None:
        self._worker.kill()


_default_worker: HostWorker | None = None


def default_worker() -> HostWorker:
    global _default_worker
    if _default_worker is None:
        _default_worker = HostWorker()
    return _default_worker


def reference_outputs(workload: Workload, inputs: list[np.ndarray], *, worker: HostWorker | None = None,
                      timeout: float = DEFAULT_TIMEOUT_S) -> list[np.ndarray]:
    """The workload's expected outputs for ``inputs``."""
    if workload.reference is not None:
        got = workload.reference(*inputs)
        outs = list(got) if isinstance(got, (list, tuple)) else [got]
    else:
        specs = [(t.shape, t.dtype) for t in workload.outputs]
        res = (worker or default_worker()).call(
            run_kernel, (tvm.ir.save_json(workload.module()), [inputs], specs), timeout)
        if "error" in res:
            raise WorkloadError(res["error"])
        outs = res["outputs"][0]
    if len(outs) != len(workload.outputs):
        raise WorkloadError(f"workload {workload.name}: reference gave {len(outs)} outputs, "
                            f"expected {len(workload.outputs)}")
    return [np.asarray(o) for o in outs]


def check_signature(kernel, workload: Workload) -> str:
    """'' when the kernel's params match the workload's in count, shape and dtype."""
    try:
        got = param_specs(main_func(as_module(kernel)))
    except (ProgramError, WorkloadError) as err:
        return str(err)
    want = workload.params
    if len(got) != len(want):
        return f"kernel takes {len(got)} params, workload {workload.name} has {len(want)}"
    for g, w in zip(got, want):
        if g.shape != w.shape or g.dtype != w.dtype:
            return (f"param {g.name}: kernel has {g.dtype}{list(g.shape)}, "
                    f"workload expects {w.dtype}{list(w.shape)}")
    return ""


def execute(kernel, workload: Workload, *, trials: int = DEFAULT_TRIALS, seed: int = 0,
            timeout: float = DEFAULT_TIMEOUT_S, worker: HostWorker | None = None) -> ExecResult:
    """Run ``kernel`` on ``trials`` seeded inputs and compare with the reference."""
    start = time.perf_counter()

    def done(status, message="", **kw):
        return ExecResult(status, message, wall_s=time.perf_counter() - start, **kw)

    problem = check_signature(kernel, workload)
    if problem:
        return done("signature", problem)
    inputs = [workload.make_inputs(seed + t) for t in range(trials)]
    try:
        expected = [reference_outputs(workload, x, worker=worker, timeout=timeout) for x in inputs]
    except (TimeoutError, ChildProcessError, WorkloadError) as err:
        return done("reference_error", f"the reference of {workload.name} failed: {_one_line(err)}")
    try:
        func = main_func(as_module(kernel)).with_attr("global_symbol", "main")
        kernel_json = tvm.ir.save_json(tvm.IRModule({"main": func}))
    except Exception as err:  # noqa: BLE001 - an unserialisable kernel is a failed candidate
        return done("build_error", f"cannot serialise kernel: {_one_line(err)}")
    specs = [(t.shape, t.dtype) for t in workload.outputs]
    worker = worker or default_worker()
    try:
        res = worker.call(run_kernel, (kernel_json, inputs, specs), timeout)
    except TimeoutError:
        return done("timeout", f"no result within {timeout:g} s")
    except ChildProcessError:
        return done("crash", "the worker process died while building or running the kernel")
    if "error" in res:
        return done("build_error" if res["phase"] == "build" else "runtime_error", res["error"])
    return _compare(res, expected, workload, done)


def _compare(res, expected, workload: Workload, done) -> ExecResult:
    worst = (0.0, 0.0, 0)
    for t, (got_outs, want_outs) in enumerate(zip(res["outputs"], expected)):
        for spec, got, want in zip(workload.outputs, got_outs, want_outs):
            if got.shape != want.shape:
                return done("mismatch", f"trial {t}: {spec.name} has shape {got.shape}, expected {want.shape}",
                            trials=t + 1, build_s=res["build_s"], run_s=res["run_s"])
            abs_err, rel_err, bad = _errors(got, want, spec.dtype)
            worst = max(worst, (abs_err, rel_err, bad), key=lambda w: w[2])
            if bad:
                return done("mismatch",
                            f"trial {t}: {bad} of {got.size} elements of {spec.name} differ "
                            f"(max abs error {abs_err:.3g})",
                            trials=t + 1, max_abs_error=abs_err, max_rel_error=rel_err, mismatched=bad,
                            build_s=res["build_s"], run_s=res["run_s"])
            worst = (max(worst[0], abs_err), max(worst[1], rel_err), 0)
    return done("ok", trials=len(expected), max_abs_error=worst[0], max_rel_error=worst[1],
                build_s=res["build_s"], run_s=res["run_s"])


def _errors(got: np.ndarray, want: np.ndarray, dtype: str) -> tuple[float, float, int]:
    if dtype not in TOLERANCE:
        bad = int(np.count_nonzero(got != want))
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        return float(diff.max(initial=0.0)), 0.0, bad
    tol = TOLERANCE[dtype]
    g, w = got.astype(np.float64), want.astype(np.float64)
    diff = np.abs(g - w)
    ok = diff <= tol + tol * np.abs(w)
    ok &= np.isfinite(g) | (g == w)
    abs_err = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff), initial=0.0))
    rel = diff / np.maximum(np.abs(w), 1e-30)
    rel_err = float(np.nanmax(np.where(np.isnan(rel), np.inf, rel), initial=0.0))
    return abs_err, rel_err, int(np.count_nonzero(~ok))


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"
