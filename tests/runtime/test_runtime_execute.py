import numpy as np
import pytest
from hawk.bench.reference import reference_kernel
from hawk.ir import from_te, ops, positive_inputs
from hawk.ir.workload import PROFILES
from hawk.runtime import HostWorker, execute
from hawk.runtime.execute import TOLERANCE, profile_trial
from tvm import te, tirx
from tvm.script import tirx as T


@pytest.fixture(scope="module")
def worker():
    w = HostWorker()
    yield w
    w.close()


def _double_workload(reference=None):
    X = te.placeholder((64, 128), "float32", name="X")
    Y = te.compute((64, 128), lambda i, j: X[i, j] * 2.0, name="Y")
    return from_te("double", "elementwise", [X, Y], op="unary", reference=reference or (lambda x: x * 2))


def test_correct_reference_kernel(davinci, worker):
    wl = ops.unary("silu", "silu", 64, 256)
    res = execute(reference_kernel(wl, davinci), wl, worker=worker)
    assert res.correct and res.status == "ok" and res.trials == 5
    assert res.max_abs_error < 1e-4


def test_wrong_result_is_a_mismatch(worker):
    wl = _double_workload(reference=lambda x: x * 3)
    res = execute(wl.func, wl, worker=worker)
    assert res.status == "mismatch" and not res.correct
    assert res.mismatched > 0 and "differ" in res.message


def test_reference_defaults_to_the_unscheduled_function(worker):
    X = te.placeholder((16, 32), "float32", name="X")
    Y = te.compute((16, 32), lambda i, j: X[i, j] + 1.0, name="Y")
    wl = from_te("inc", "elementwise", [X, Y])
    assert execute(wl.func, wl, worker=worker).correct


@T.prim_func(s_tir=True)
def _half_written(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for i, j in T.grid(32, 128):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            Y[vi, vj] = X[vi, vj] * T.float32(2)


def test_unwritten_outputs_stay_nan_and_fail(worker):
    res = execute(_half_written, _double_workload(), worker=worker)
    assert res.status == "mismatch" and "4096 of 8192" in res.message


@T.prim_func(s_tir=True)
def _endless(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for r, i, j in T.grid(2000000000, 64, 128):
        with T.sblock("Y"):
            vr, vi, vj = T.axis.remap("RSS", [r, i, j])
            Y[vi, vj] = X[vi, vj] * T.float32(2) + T.Cast("float32", vr) * T.float32(0)


@T.prim_func(s_tir=True)
def _aborts(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for i in range(64):
        with T.sblock("crash"):
            vi = T.axis.remap("S", [i])
            Y[vi * 100000, 0] = X[vi, 0]  # far outside any mapping: the worker segfaults


def test_hang_becomes_a_timeout_and_the_worker_recovers(worker):
    wl = _double_workload()
    res = execute(_endless, wl, worker=worker, timeout=3, trials=1)
    assert res.status == "timeout" and not res.correct
    assert execute(wl.func, wl, worker=worker).correct


def test_crash_becomes_a_result_and_the_worker_recovers(worker):
    wl = _double_workload()
    res = execute(_aborts, wl, worker=worker, trials=1)
    assert res.status == "crash"
    assert execute(wl.func, wl, worker=worker).correct


def test_signature_mismatch(worker):
    wl = ops.unary("silu", "silu", 64, 256)
    other = ops.unary("silu", "silu", 64, 128)
    res = execute(other.func, wl, worker=worker)
    assert res.status == "signature" and "float32[64, 256]" in res.message


def test_inputs_are_seeded_and_nonzero_mean():
    wl = ops.unary("silu", "silu", 64, 256)
    a, b = wl.make_inputs(3)[0], wl.make_inputs(3)[0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, wl.make_inputs(4)[0])
    assert abs(float(a.mean())) > 0.2


def test_tolerances_per_dtype():
    assert TOLERANCE["float32"] == 1e-4
    assert TOLERANCE["float16"] == TOLERANCE["bfloat16"] == 1e-2
    assert "int32" not in TOLERANCE  # integers compare exactly


@T.prim_func(s_tir=True)
def _writes_input(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for i, j in T.grid(64, 128):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            Y[vi, vj] = X[vi, vj] * T.float32(2)
            X[vi, vj] = T.float32(0)


def test_a_kernel_that_writes_its_input_is_caught(worker):
    res = execute(_writes_input, _double_workload(), worker=worker)
    assert res.status == "mismatch" and "writes its input X" in res.message


def _positive_workload():
    X = te.placeholder((8, 16), "float32", name="X")
    Y = te.compute((8, 16), lambda i, j: X[i, j] > 100.0, name="Y")  # always False on the inputs
    return from_te("big", "elementwise", [X, Y], reference=lambda x: x > 100.0)


@T.prim_func(s_tir=True)
def _bool_mostly_unwritten(X: T.Buffer((8, 16), "float32"), Y: T.Buffer((8, 16), "bool")):
    for i in range(1):
        with T.sblock("corner"):
            Y[0, 0] = T.bool(False)


@T.prim_func(s_tir=True)
def _bool_written_where_positive(X: T.Buffer((8, 16), "float32"), Y: T.Buffer((8, 16), "bool")):
    for i, j in T.grid(8, 16):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            if X[vi, vj] > T.float32(0):  # elsewhere the output keeps what it held
                Y[vi, vj] = T.bool(False)


def test_boolean_outputs_are_poisoned_like_the_others(worker):
    """An all-False answer left unwritten would match a False poison; two poisons catch it."""
    wl = _positive_workload()
    assert execute(wl.func, wl, worker=worker).correct
    for kernel in (_bool_mostly_unwritten, _bool_written_where_positive):
        res = execute(kernel, wl, worker=worker)
        assert res.status == "mismatch" and "depend on what the output held" in res.message, res


def test_a_worker_answering_out_of_turn_is_a_crash_not_data(worker, monkeypatch):
    from hawk.sandbox.process import SandboxProcess

    real = SandboxProcess.request

    def forged(self, header, blobs=(), **kw):
        reply, out = real(self, header, blobs, **kw)
        return reply, out[:-1]  # one output array short

    monkeypatch.setattr(SandboxProcess, "request", forged)
    wl = _double_workload()
    res = execute(wl.func, wl, worker=worker)
    assert res.status == "crash"


@T.prim_func(s_tir=True)
def _registers_a_global(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for i, j in T.grid(64, 128):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            Y[vi, vj] = X[vi, vj] * T.float32(2) + T.Cast("float32", T.call_packed("ffi.FunctionRemoveGlobal", "x"))


def test_a_kernel_with_a_call_the_npu_lacks_never_reaches_the_worker(worker, monkeypatch):
    from hawk.sandbox.process import SandboxProcess

    sent = []
    real = SandboxProcess.request
    monkeypatch.setattr(SandboxProcess, "request", lambda self, *a, **k: sent.append(a) or real(self, *a, **k))
    res = execute(_registers_a_global, _double_workload(), worker=worker)
    assert res.status == "build_error" and "not an instruction of the NPU" in res.message
    assert sent == []


def test_nan_where_the_reference_is_nan_and_nowhere_else():
    import numpy as np
    from hawk.runtime.execute import _errors

    want = np.array([1.0, np.nan, 2.0], dtype="float32")
    assert _errors(np.array([1.0, np.nan, 2.0], dtype="float32"), want, "float32")[2] == 0
    assert _errors(np.array([1.0, 5.0, 2.0], dtype="float32"), want, "float32")[2] == 1  # a number is not NaN
    assert _errors(np.array([np.nan, np.nan, 2.0], dtype="float32"), want, "float32")[2] == 1


def test_an_infinite_reference_wants_the_same_infinity():
    from hawk.runtime.execute import _errors

    want = np.array([np.inf, -np.inf, 1.0], dtype="float16")
    assert _errors(want.copy(), want, "float16")[2] == 0
    assert _errors(np.array([6e4, np.inf, 1.0], dtype="float16"), want, "float16")[2] == 2


@T.prim_func(s_tir=True)
def _sqrt_skips_where_undefined(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for i, j in T.grid(64, 128):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            if X[vi, vj] >= T.float32(0):  # leaves the poison (NaN, or a number) where sqrt is NaN
                Y[vi, vj] = T.sqrt(X[vi, vj])


@T.prim_func(s_tir=True)
def _sqrt_nan_everywhere(X: T.Buffer((64, 128), "float32"), Y: T.Buffer((64, 128), "float32")):
    for i, j in T.grid(64, 128):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            Y[vi, vj] = T.sqrt(X[vi, vj] - T.float32(1e9))


def _sqrt_workload():
    X = te.placeholder((64, 128), "float32", name="X")
    Y = te.compute((64, 128), lambda i, j: te.sqrt(X[i, j]), name="Y")
    return from_te("sqrt", "elementwise", [X, Y])  # the reference is NaN wherever X < 0


def test_a_reference_of_nan_is_no_loophole(worker):
    wl = _sqrt_workload()
    assert execute(wl.func, wl, worker=worker).correct  # NaN where the reference is NaN: right
    skipped = execute(_sqrt_skips_where_undefined, wl, worker=worker)
    assert skipped.status == "mismatch" and "never written" in skipped.message  # the poisons show the skip
    everywhere = execute(_sqrt_nan_everywhere, wl, worker=worker)
    assert everywhere.status == "mismatch" and "differ" in everywhere.message


@T.prim_func(s_tir=True)
def _rowmax_from_zero(X: T.Buffer((16, 64), "float32"), S: T.Buffer((16,), "float32")):
    for i, k in T.grid(16, 64):
        with T.sblock("S"):
            vi, vk = T.axis.remap("SR", [i, k])
            with T.init():
                S[vi] = T.float32(0)  # right only while every row has a positive element
            S[vi] = T.max(S[vi], X[vi, vk])


def test_a_kernel_right_only_for_positive_inputs_fails_the_negative_profile(worker):
    wl = ops.row_reduce("rowmax", "max", 16, 64)
    assert execute(_rowmax_from_zero, wl, worker=worker, trials=1).correct
    res = execute(_rowmax_from_zero, wl, worker=worker)
    assert res.status == "mismatch" and res.message.startswith("trial 1 (profile negative): 16 of 16"), res


def _softmax_unshifted():
    X = te.placeholder((8, 64), "float32", name="X")
    k = te.reduce_axis((0, 64), name="k")
    s = te.compute((8,), lambda i: te.sum(te.exp(X[i, k]), axis=k), name="s")  # no max subtracted
    return te.create_prim_func([X, te.compute((8, 64), lambda i, j: te.exp(X[i, j]) / s[i], name="Y")])


def test_a_softmax_right_only_for_small_inputs_fails_the_large_profile(worker):
    wl = ops.softmax("softmax", 8, 64)
    assert execute(_softmax_unshifted(), wl, worker=worker, trials=2).correct  # normal, negative
    res = execute(_softmax_unshifted(), wl, worker=worker, trials=3)
    assert res.status == "mismatch" and res.message.startswith("trial 2 (profile large, X x2^6)"), res


def _double_f16():
    X = te.placeholder((32, 64), "float16", name="X")
    Y = te.compute((32, 64), lambda i, j: X[i, j] * tirx.const(2, "float16"), name="Y")
    return from_te("double16", "elementwise", [X, Y], reference=lambda x: (x.astype(np.float64) * 2).astype("float16"))


@T.prim_func(s_tir=True)
def _double_via_eight(X: T.Buffer((32, 64), "float16"), Y: T.Buffer((32, 64), "float16")):
    for i, j in T.grid(32, 64):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            Y[vi, vj] = X[vi, vj] * T.float16(8) * T.float16(0.25)  # 8 X overflows before Y does


def test_near_overflow_takes_the_largest_scale_with_a_finite_reference(worker):
    wl = _double_f16()
    for seed in range(3):
        trial = profile_trial(wl, "near_overflow", seed)
        y = trial.expected[0].astype(np.float64)
        assert trial.exponent > 6 and np.isfinite(y).all() and np.abs(y).max() > 65504 / 4
        with np.errstate(over="ignore"):
            over = wl.reference(*wl.make_inputs(seed, "near_overflow", trial.exponent + 1))
        assert not np.isfinite(over).all()
    assert execute(wl.func, wl, worker=worker, trials=len(PROFILES)).correct
    res = execute(_double_via_eight, wl, worker=worker)
    assert res.status == "mismatch" and res.message.startswith("trial 4 (profile near_overflow, X x2^"), res


def test_a_scaled_trial_is_judged_as_its_unscaled_self():
    wl = _double_workload()
    large, small = profile_trial(wl, "large", 0), profile_trial(wl, "small", 0)
    assert large.exponent == 6 and large.floor == [pytest.approx(64.0)]
    assert small.exponent == -8 and small.floor == [1.0]


def test_profiles_keep_indices_valid_and_own_generators_in_their_domain():
    emb = ops.embedding("emb", 50, 8, 32)
    X = te.placeholder((8, 16), "float32", name="X")
    log = from_te("log", "elementwise", [X, te.compute((8, 16), lambda i, j: te.log(X[i, j]), name="Y")],
                  generators=[positive_inputs], reference=np.log)
    assert [p.name for p in log.profiles] == ["normal", "large", "small", "wide"]  # never negated nor zeroed
    assert "near_overflow" not in [p.name for p in emb.profiles]  # no float16 input
    for p in PROFILES:
        _, ids = emb.make_inputs(1, p.name)
        assert ids.dtype == np.int32 and ids.min() >= 0 and ids.max() < 50
        assert (log.make_inputs(1, p.name)[0] > 0).all()


def test_the_first_trial_keeps_the_normal_inputs():
    wl = ops.unary("silu", "silu", 64, 256)
    assert np.array_equal(wl.make_inputs(7), wl.make_inputs(7, "normal"))
    assert not np.array_equal(wl.make_inputs(7), wl.make_inputs(7, "sparse"))


def test_bfloat16_outputs_run(worker):
    wl = ops.binary("add", "add", 16, 32, dtype="bfloat16")
    res = execute(wl.func, wl, worker=worker)
    assert res.correct, res


def _keeps_plausible_old_outputs(limit: float):
    """Relu that keeps whatever the output held where it looks like a result (|y| < limit)."""

    @T.prim_func(s_tir=True)
    def kernel(X: T.Buffer((64, 64), "float32"), Y: T.Buffer((64, 64), "float32")):
        for i, j in T.grid(64, 64):
            with T.sblock("Y"):
                vi, vj = T.axis.remap("SS", [i, j])
                Y[vi, vj] = T.Select(T.fabs(Y[vi, vj]) < T.float32(limit), Y[vi, vj], T.max(X[vi, vj], T.float32(0)))

    return kernel


@pytest.mark.parametrize("limit", [1e30, 4.0], ids=["any-finite", "normal-range"])
def test_old_outputs_that_look_valid_are_not_kept(limit, worker):
    """Both poisons fail ``|y| < limit``, so such a kernel computes under them; the plausible
    prior contents pass it and show what it keeps."""
    res = execute(_keeps_plausible_old_outputs(limit), ops.unary("relu", "relu", 64, 64), worker=worker)
    assert res.status == "mismatch" and "depend on what the output held" in res.message, res
