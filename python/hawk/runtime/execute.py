"""execute: build a kernel for the host and check it against the workload's reference.

The build and the runs happen in a separate worker process with a time limit, so a hung
build, an endless loop or a segfault becomes a result and never takes the caller down.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np
import tvm

from ..ir.workload import Workload, WorkloadError, param_specs
from ..sandbox import Limits, SandboxError, SandboxProcess, SandboxTimeout
from .program import ProgramError, as_module, main_func, read_program

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2, "float64": 1e-6}
DEFAULT_TRIALS = 5
DEFAULT_TIMEOUT_S = 60.0
HOST_MEMORY_MB = 4096  # TVM + LLVM map ~0.6 GB; the rest is for kernels and their data
HOST_LIFETIME_CPU_S = 24 * 3600  # each request also gets its own CPU backstop
MAX_REPLY_HEADER = 1 << 20


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
    """A reusable confined child (:mod:`hawk.sandbox`, role ``host``) that builds and runs
    kernels; killed and restarted after a timeout, a crash or a reply out of bounds."""

    def __init__(self, *, memory_mb: int = HOST_MEMORY_MB):
        self._child = SandboxProcess("host", limits=Limits(
            cpu_s=HOST_LIFETIME_CPU_S, memory_mb=memory_mb, nofile=64, fsize_mb=16))
        self._lock = threading.Lock()

    @property
    def confinement(self) -> dict:
        """The OS layers the worker runs under (starts it if needed)."""
        with self._lock:
            if not self._child.alive:
                self._start()
            return self._child.confinement

    def _start(self) -> None:
        try:
            self._child.start()
        except SandboxError as err:
            raise ChildProcessError(str(err)) from None

    def run(self, kernel_json: str, trials: list[list[np.ndarray]], out_specs: list[tuple],
            timeout: float) -> dict:
        """Build and run; ``{"outputs", "build_s", "run_s", "unwritten", "inputs_written"}``
        or ``{"error", "phase"}``. Raises TimeoutError or ChildProcessError."""
        header = {
            "kernel": kernel_json, "cpu_s": math.ceil(timeout) + 1,
            "inputs": [[[list(a.shape), str(a.dtype)] for a in trial] for trial in trials],
            "outputs": [[[int(d) for d in shape], str(dtype)] for shape, dtype in out_specs],
        }  # fmt: skip
        blobs = [np.ascontiguousarray(a) for trial in trials for a in trial]
        sizes = [math.prod(int(d) for d in shape) * _itemsize(dtype) for shape, dtype in out_specs]
        with self._lock:
            if not self._child.alive:
                self._start()
            try:
                reply, out = self._child.request(header, blobs, timeout=timeout,
                                                 max_header=MAX_REPLY_HEADER,
                                                 max_blobs=sum(sizes) * len(trials))
            except SandboxTimeout:
                raise TimeoutError(f"no result within {timeout:g} s") from None
            except SandboxError as err:
                raise ChildProcessError(str(err)) from None
            try:
                return _checked_reply(reply, out, trials, out_specs, sizes)
            except ChildProcessError:
                self._child.close()  # a worker that answers out of turn is not reused
                raise

    def close(self) -> None:
        with self._lock:
            self._child.close()


def _checked_reply(reply: dict, out: list[bytes], trials, out_specs, sizes) -> dict:
    """The child's reply as trusted data, or ChildProcessError if it is not what was asked."""
    if isinstance(reply.get("error"), str):
        return {"error": reply["error"][:2000], "phase": str(reply.get("phase", "run"))[:20]}
    n = len(out_specs)
    unwritten, written = reply.get("unwritten"), reply.get("inputs_written")
    ok = (len(out) == n * len(trials) and all(len(b) == sizes[i % n] for i, b in enumerate(out))
          and isinstance(unwritten, list) and len(unwritten) == n
          and all(isinstance(u, int) and u >= 0 for u in unwritten)
          and isinstance(written, list) and all(isinstance(w, int) for w in written)
          and all(isinstance(reply.get(k), (int, float)) for k in ("build_s", "run_s")))
    if not ok:
        raise ChildProcessError("the worker's reply does not match the request")
    arrays = [np.frombuffer(b, dtype=_np_dtype(dtype)).reshape(shape)
              for b, (shape, dtype) in zip(out, out_specs * len(trials))]
    outputs = [arrays[t * n:(t + 1) * n] for t in range(len(trials))]
    return {"outputs": outputs, "build_s": float(reply["build_s"]), "run_s": float(reply["run_s"]),
            "unwritten": unwritten, "inputs_written": written}


def _np_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes

        return ml_dtypes.bfloat16
    return np.dtype(dtype)


def _itemsize(dtype: str) -> int:
    return _np_dtype(dtype).itemsize


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
        res = (worker or default_worker()).run(
            tvm.ir.save_json(workload.module()), [inputs], specs, timeout)
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


def _unrunnable(kernel) -> str:
    """Why a kernel is not sent to the host worker at all, or ''.

    Verify refuses the same kernels; this is the second line behind it, so that no call the
    NPU does not have (extern, packed, LLVM intrinsics, ...) ever runs in the worker, where
    it could outlast its request (re-registering a global function, say) and fake the
    results of the kernels and references after it.
    """
    try:
        calls = read_program(kernel).foreign_calls
    except ProgramError as err:
        return f"unreadable kernel: {err}"
    return f"calls {', '.join(sorted(calls))}: not an instruction of the NPU, not run" if calls else ""


def execute(kernel, workload: Workload, *, trials: int = DEFAULT_TRIALS, seed: int = 0,
            timeout: float = DEFAULT_TIMEOUT_S, worker: HostWorker | None = None) -> ExecResult:
    """Run ``kernel`` on ``trials`` seeded inputs and compare with the reference."""
    start = time.perf_counter()

    def done(status, message="", **kw):
        return ExecResult(status, message, wall_s=time.perf_counter() - start, **kw)

    problem = check_signature(kernel, workload)
    if problem:
        return done("signature", problem)
    problem = _unrunnable(kernel)
    if problem:
        return done("build_error", problem)
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
        res = worker.run(kernel_json, inputs, specs, timeout)
    except TimeoutError:
        return done("timeout", f"no result within {timeout:g} s")
    except ChildProcessError as err:
        why = (str(err).strip().splitlines() or ["no reason given"])[0].split(": ")[0][:200]
        return done("crash", f"the worker failed while building or running the kernel: {why}")
    if "error" in res:
        return done("build_error" if res["phase"] == "build" else "runtime_error", res["error"])
    return _compare(res, expected, workload, done)


def _compare(res, expected, workload: Workload, done) -> ExecResult:
    times = {"build_s": res["build_s"], "run_s": res["run_s"]}
    if res["inputs_written"]:
        names = ", ".join(workload.inputs[i].name if i < len(workload.inputs) else f"#{i}"
                          for i in res["inputs_written"])
        return done("mismatch", f"the kernel writes its input {names}", **times)
    for spec, unwritten in zip(workload.outputs, res["unwritten"]):
        if unwritten:
            size = math.prod(int(d) for d in spec.shape)
            return done("mismatch", f"{unwritten} of {size} elements of {spec.name} depend on what the "
                                    "output held before the kernel ran (never written, or read before written)",
                        mismatched=unwritten, **times)
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
    # where the reference itself is NaN (an input outside the function's domain: the sqrt of
    # a negative), the kernel must give NaN there too -- and anything else only elsewhere
    ok = np.where(np.isnan(w), np.isnan(g), ok)
    diff = np.where(np.isnan(w) & np.isnan(g), 0.0, diff)
    abs_err = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff), initial=0.0))
    rel = diff / np.maximum(np.abs(w), 1e-30)
    rel_err = float(np.nanmax(np.where(np.isnan(rel), np.inf, rel), initial=0.0))
    return abs_err, rel_err, int(np.count_nonzero(~ok))


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"
