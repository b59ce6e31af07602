"""execute: build a kernel for the host and check it against the workload's reference.

The build and the runs happen in a separate worker process with a time limit, so a hung
build, an endless loop or a segfault becomes a result and never takes the caller down.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import ml_dtypes
import numpy as np
import tvm

from ..ir.workload import (
    PROFILE,
    Workload,
    WorkloadError,
    is_float,
    np_dtype,
    param_specs,
)
from ..sandbox import Limits, SandboxError, SandboxProcess, SandboxTimeout
from .program import ProgramError, as_module, main_func, read_program

TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2, "float64": 1e-6}
DEFAULT_TRIALS = 5
DEFAULT_TIMEOUT_S = 60.0
HOST_MEMORY_MB = 4096  # TVM + LLVM map ~0.6 GB; the rest is for kernels and their data
HOST_LIFETIME_CPU_S = 24 * 3600  # each request also gets its own CPU backstop
MAX_REPLY_HEADER = 1 << 20
HEADROOM = 15 / 16  # a scaled profile keeps float outputs this far below their dtype's largest value
NEAR = 1 / 16  # near_overflow: outputs at least this fraction of their dtype's largest value


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
        sizes = [math.prod(int(d) for d in shape) * np_dtype(dtype).itemsize for shape, dtype in out_specs]
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
    arrays = [np.frombuffer(b, dtype=np_dtype(dtype)).reshape(shape)
              for b, (shape, dtype) in zip(out, out_specs * len(trials))]
    outputs = [arrays[t * n:(t + 1) * n] for t in range(len(trials))]
    return {"outputs": outputs, "build_s": float(reply["build_s"]), "run_s": float(reply["run_s"]),
            "unwritten": unwritten, "inputs_written": written}


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


@dataclass(frozen=True)
class Trial:
    """One trial: its inputs under a value profile (input ``target`` scaled by 2**exponent),
    the reference's outputs, and per output the factor on the absolute part of the
    tolerance (``floor``)."""

    profile: str
    exponent: int
    target: str
    inputs: list
    expected: list
    floor: list

    @property
    def label(self) -> str:
        return f"profile {self.profile}" + (f", {self.target} x2^{self.exponent}" if self.exponent else "")


def profile_trial(workload: Workload, profile: str, seed: int, *, worker: HostWorker | None = None,
                  timeout: float = DEFAULT_TIMEOUT_S) -> Trial:
    """The inputs of one trial under ``profile`` with their expected outputs.

    A scaled profile takes the largest power of two in its range at which the reference's
    float outputs stay finite, HEADROOM below their largest value, and NaN only where they
    are NaN at the smallest scale (outside the function's domain, as a sqrt of a negative):
    no kernel fails for an overflow that is the reference's as much as its own, nor for
    rounding a value at the edge the other way. A profile with several candidate targets
    (near_overflow) takes the first that brings an output near overflow, NEAR of its
    largest value (V of an attention, not Q: a softmax bounds what Q does).

    Scaled up, a trial is judged as its unscaled self: the absolute part of the tolerance
    grows with the outputs' RMS, since a correct kernel's rounding does (a GEMM that
    cancels to ~0 is off by eps times its terms, which grew).
    """
    prof = PROFILE[profile]
    lo, hi = prof.exponents
    targets = prof.targets([t.dtype for t in workload.inputs]) or [None]
    seen: dict[tuple, tuple[list, list]] = {}

    def at(i, e: int) -> tuple[list, list]:
        """Inputs with target i scaled by 2**e, and the reference's outputs for them."""
        if (i, e) not in seen:
            inputs = workload.make_inputs(seed, profile, e, i)
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is what the search looks for
                seen[i, e] = inputs, reference_outputs(workload, inputs, worker=worker, timeout=timeout)
        return seen[i, e]

    def trial(i, e: int) -> Trial:
        inputs, outs = at(i, e)
        floor = [_rms_growth(o, base) for o, base in zip(outs, at(i, 0)[1])] if e > 0 else [1.0] * len(outs)
        return Trial(profile, e, workload.inputs[i].name if i is not None else "", inputs, outs, floor)

    if lo == hi:
        return trial(targets[0], hi)
    for i in targets:
        top = min(hi, _input_room(at(i, 0)[0][i]))  # the target itself stays finite
        outs = at(i, top)[1]
        if not _in_range(workload, outs):
            return trial(i, _fit(workload, lambda e, i=i: at(i, e)[1], lo, top))
        if not prof.fp16_only or _near_overflow(workload, outs):
            return trial(i, top)
    return trial(targets[0], 0)  # no input brings an output near overflow (Q of an attention)


def _fit(workload: Workload, outputs_at, lo: int, hi: int) -> int:
    """The largest exponent in [lo, hi) whose outputs are in range (lo if none is)."""
    base = outputs_at(lo)
    nan = [np.isnan(o.astype(np.float64)) if is_float(t.dtype) else None for t, o in zip(workload.outputs, base)]
    if not _in_range(workload, base, nan):
        return lo
    fits, over = lo, hi  # over: the smallest exponent known not to fit
    while over - fits > 1:
        mid = (fits + over) // 2
        fits, over = (mid, over) if _in_range(workload, outputs_at(mid), nan) else (fits, mid)
    return fits


def _largest(dtype) -> float:
    return float(ml_dtypes.finfo(np_dtype(str(dtype))).max)


def _in_range(workload: Workload, outs: list[np.ndarray], nan: list | None = None) -> bool:
    """Float outputs finite, below HEADROOM of their largest value, NaN only where ``nan``
    (nowhere when None)."""
    for spec, out, where in zip(workload.outputs, outs, nan or [None] * len(outs)):
        if not is_float(spec.dtype):
            continue
        x = out.astype(np.float64)
        isnan = np.isnan(x)
        if not np.array_equal(isnan, where if where is not None else np.zeros_like(isnan)):
            return False
        if np.abs(x[~isnan]).max(initial=0.0) > HEADROOM * _largest(spec.dtype):
            return False  # also every infinity
    return True


def _near_overflow(workload: Workload, outs: list[np.ndarray]) -> bool:
    """Some float output reaches NEAR of its dtype's largest value."""
    for spec, out in zip(workload.outputs, outs):
        x = np.abs(out.astype(np.float64))
        if is_float(spec.dtype) and x[np.isfinite(x)].max(initial=0.0) >= NEAR * _largest(spec.dtype):
            return True
    return False


def _input_room(x: np.ndarray) -> int:
    """The largest e at which 2**e x stays HEADROOM below its dtype's largest value."""
    top = float(np.abs(x.astype(np.float64)).max(initial=0.0))
    return math.floor(math.log2(HEADROOM * _largest(x.dtype) / top)) if top > 0 else 1 << 10


def _rms_growth(out: np.ndarray, base: np.ndarray) -> float:
    """How many times larger the RMS of ``out`` is than that of ``base`` (finite elements), at least 1."""
    def rms(x):
        x = x.astype(np.float64)
        x = x[np.isfinite(x)]
        return float(np.sqrt(np.mean(x * x))) if x.size else 0.0

    top, bottom = rms(out), rms(base)
    return max(1.0, top / bottom) if bottom > 0 else 1.0


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


_last_trials: tuple = (None, None, [])  # (workload, (trials, seed), runs): the loop asks again and again


def _trials(workload: Workload, trials: int, seed: int, worker, timeout: float) -> list[Trial]:
    """Trial t under profile t mod P (the default five cover five profiles); the last
    workload's are kept, since every candidate of a search is judged on the same ones."""
    global _last_trials
    held, key, runs = _last_trials
    if held is workload and key == (trials, seed):
        return runs
    profiles = workload.profiles
    runs = [profile_trial(workload, profiles[t % len(profiles)].name, seed + t, worker=worker, timeout=timeout)
            for t in range(trials)]
    for run in runs:  # shared by every later call: nobody may change them
        for array in (*run.inputs, *run.expected):
            array.setflags(write=False)
    _last_trials = (workload, (trials, seed), runs)
    return runs


def kernel_json(kernel) -> str:
    """The kernel as the TVM JSON the host worker builds (its main function as ``main``)."""
    func = main_func(as_module(kernel)).with_attr("global_symbol", "main")
    return tvm.ir.save_json(tvm.IRModule({"main": func}))


def execute(kernel, workload: Workload, *, trials: int = DEFAULT_TRIALS, seed: int = 0,
            timeout: float = DEFAULT_TIMEOUT_S, worker: HostWorker | None = None) -> ExecResult:
    """Run ``kernel`` on ``trials`` seeded inputs, trial t under value profile t mod P of
    the workload's P (``Workload.profiles``), and compare with the reference."""
    start = time.perf_counter()

    def done(status, message="", **kw):
        return ExecResult(status, message, wall_s=time.perf_counter() - start, **kw)

    problem = check_signature(kernel, workload)
    if problem:
        return done("signature", problem)
    problem = _unrunnable(kernel)
    if problem:
        return done("build_error", problem)
    try:
        runs = _trials(workload, trials, seed, worker, timeout)
    except (TimeoutError, ChildProcessError, WorkloadError) as err:
        return done("reference_error", f"the reference of {workload.name} failed: {_one_line(err)}")
    try:
        as_json = kernel_json(kernel)
    except Exception as err:  # noqa: BLE001 - an unserialisable kernel is a failed candidate
        return done("build_error", f"cannot serialise kernel: {_one_line(err)}")
    specs = [(t.shape, t.dtype) for t in workload.outputs]
    worker = worker or default_worker()
    try:
        res = worker.run(as_json, [r.inputs for r in runs], specs, timeout)
    except TimeoutError:
        return done("timeout", f"no result within {timeout:g} s")
    except ChildProcessError as err:
        why = (str(err).strip().splitlines() or ["no reason given"])[0].split(": ")[0][:200]
        return done("crash", f"the worker failed while building or running the kernel: {why}")
    if "error" in res:
        return done("build_error" if res["phase"] == "build" else "runtime_error", res["error"])
    return _compare(res, runs, workload, done)


def _compare(res, runs: list[Trial], workload: Workload, done) -> ExecResult:
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
    for t, (got_outs, run) in enumerate(zip(res["outputs"], runs)):
        for spec, got, want, floor in zip(workload.outputs, got_outs, run.expected, run.floor):
            if got.shape != want.shape:
                return done("mismatch", f"trial {t} ({run.label}): {spec.name} has shape {got.shape}, "
                                        f"expected {want.shape}",
                            trials=t + 1, build_s=res["build_s"], run_s=res["run_s"])
            abs_err, rel_err, bad = _errors(got, want, spec.dtype, floor)
            worst = max(worst, (abs_err, rel_err, bad), key=lambda w: w[2])
            if bad:
                return done("mismatch",
                            f"trial {t} ({run.label}): {bad} of {got.size} elements of {spec.name} differ "
                            f"(max abs error {abs_err:.3g})",
                            trials=t + 1, max_abs_error=abs_err, max_rel_error=rel_err, mismatched=bad,
                            build_s=res["build_s"], run_s=res["run_s"])
            worst = (max(worst[0], abs_err), max(worst[1], rel_err), 0)
    return done("ok", trials=len(runs), max_abs_error=worst[0], max_rel_error=worst[1],
                build_s=res["build_s"], run_s=res["run_s"])


def element_tolerance(got: np.ndarray, want: np.ndarray, floor: float = 1.0) -> np.ndarray:
    """Per element, the smallest tolerance t at which it passes: |got - want| <= t floor + t |want|
    (``floor`` is 1 but in a trial scaled up, see ``profile_trial``).

    Where the reference is not finite (NaN for an input outside the function's domain, the
    sqrt of a negative; an infinity) the kernel must give the same, and a non-finite
    result is wrong anywhere else: t is 0 or inf there."""
    g, w = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(invalid="ignore"):
        t = np.where(np.isfinite(g), np.abs(g - w) / (floor + np.abs(w)), np.inf)
    return np.where(np.isfinite(w), t, np.where(_same_non_finite(g, w), 0.0, np.inf))


def _same_non_finite(g: np.ndarray, w: np.ndarray) -> np.ndarray:
    return ~np.isfinite(w) & ((g == w) | (np.isnan(g) & np.isnan(w)))


def _errors(got: np.ndarray, want: np.ndarray, dtype: str, floor: float = 1.0) -> tuple[float, float, int]:
    if dtype not in TOLERANCE:
        bad = int(np.count_nonzero(got != want))
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        return float(diff.max(initial=0.0)), 0.0, bad
    g, w = got.astype(np.float64), want.astype(np.float64)
    with np.errstate(invalid="ignore"):
        diff = np.where(_same_non_finite(g, w), 0.0, np.abs(g - w))
        rel = diff / np.maximum(np.abs(w), 1e-30)
    abs_err = float(np.nanmax(np.where(np.isnan(diff), np.inf, diff), initial=0.0))
    rel_err = float(np.nanmax(np.where(np.isnan(rel), np.inf, rel), initial=0.0))
    return abs_err, rel_err, int(np.count_nonzero(element_tolerance(got, want, floor) > TOLERANCE[dtype]))


def _one_line(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"
