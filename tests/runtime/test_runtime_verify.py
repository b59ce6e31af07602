import pytest
import tvm
from tvm.script import tirx as T

from hawk.bench.reference import reference_kernel
from hawk.ir import ops
from hawk.npu import CODES, load_spec, with_capacity
from hawk.runtime import read_program, verify

from .broken_kernels import BROKEN


def _make(code, spec):
    made = BROKEN[code](spec)
    return made[1], (made[2] if len(made) > 2 else spec)


@pytest.mark.parametrize("code", CODES)
def test_each_broken_kernel_triggers_exactly_its_code(code, davinci):
    kernel, spec = _make(code, davinci)
    faults = verify(kernel, spec)
    assert faults, f"{code}: no fault"
    assert {f.code for f in faults} == {code}, [f.log for f in faults]


def test_every_code_has_a_broken_kernel():
    assert set(BROKEN) == set(CODES)


@pytest.mark.parametrize("code", CODES)
def test_faults_are_device_style_without_fixes(code, davinci):
    kernel, spec = _make(code, davinci)
    for f in verify(kernel, spec):
        assert f.id == spec.fault(code).id
        assert f.pipe and f.block
        assert f.log.startswith(f"[NPU] ERROR {f.id} {code}")
        lowered = f.log.lower() + spec.fault(code).text.lower()
        for advice in ("should", "try ", "instead", "consider", "reduce", "increase", "use "):
            assert advice not in lowered, f.log
        if code not in ("MALFORMED_IR", "UNKNOWN_INSTR", "UNIT_DTYPE"):
            assert f.buffer and f.scope


def test_overflow_reports_the_numbers(davinci):
    kernel, _ = _make("SCOPE_OVERFLOW", davinci)
    (fault,) = verify(kernel, davinci)
    assert fault.scope == "global.npu.ub"
    assert fault.get("capacity") == 192 * 1024
    assert fault.get("bytes") == 2 * 256 * 1024 * 4  # X and Y tiles of 256x1024 fp32
    assert fault.address == (0, fault.get("bytes"))


def test_smaller_capacity_turns_a_legal_kernel_into_an_overflow(davinci):
    wl = ops.unary("silu", "silu", 256, 1024)
    kernel = reference_kernel(wl, davinci)
    assert verify(kernel, davinci) == []
    tiny = with_capacity(davinci, "global.npu.ub", 16 * 1024)
    faults = verify(kernel, tiny)
    assert {f.code for f in faults} == {"SCOPE_OVERFLOW"}
    assert faults[0].get("capacity") == 16 * 1024


def test_double_buffers_count_twice(davinci):
    wl = ops.unary("silu", "silu", 256, 1024)
    kernel = reference_kernel(wl, davinci)
    allocs = {a.buffer.name: a for r in read_program(kernel).regions() for a in r.allocs}
    x, y = allocs["X_global.npu.ub"], allocs["Y_global.npu.ub"]
    assert x.double and y.double  # input and output tiles ping-pong
    (fault,) = verify(kernel, with_capacity(davinci, "global.npu.ub", 1024))
    assert fault.get("bytes") == 2 * x.bytes + 2 * y.bytes


def test_verify_is_pure(davinci):
    kernel, _ = _make("DMA_MISALIGN", davinci)
    before = tvm.ir.save_json(kernel)
    first = verify(kernel, davinci)
    assert verify(kernel, davinci) == first
    assert tvm.ir.save_json(kernel) == before


def test_unscheduled_workload_computes_on_global(davinci):
    wl = ops.softmax("sm", 64, 64)
    faults = verify(wl.func, davinci)
    assert {f.code for f in faults} == {"UNIT_SCOPE"}
    assert {f.scope for f in faults} == {"global"}


def test_edge_like_rejects_davinci_scopes(edge):
    wl = ops.unary("silu", "silu", 64, 256)
    kernel = reference_kernel(wl, load_spec("davinci-like"))
    codes = {f.code for f in verify(kernel, edge)}
    assert "ILLEGAL_PATH" in codes or "UNIT_SCOPE" in codes


@T.prim_func(s_tir=True)
def _strips_at_odd_offsets(X: T.Buffer((64, 32), "float32"), W: T.Buffer((64, 32), "float32"),
                           Y: T.Buffer((64, 32), "float32")):
    for i in range(64):
        with T.sblock("row"):
            X_ub = T.sblock_alloc_buffer((32,), scope="global.npu.ub")
            W_ub = T.sblock_alloc_buffer((32,), scope="global.npu.ub")
            for s in range(4):  # 32-byte strips that start every 24 bytes
                for c in range(8):
                    with T.sblock("X_ub"):
                        X_ub[s * 6 + c] = X[i, s * 6 + c]
                for c in range(8):
                    with T.sblock("W_ub"):
                        W_ub[s * 6 + c] = W[i, s * 6 + c]
            for c in T.vectorized(32):
                with T.sblock("add"):
                    X_ub[c] = X_ub[c] + W_ub[c]
            for c in range(32):
                with T.sblock("Y"):
                    Y[i, c] = X_ub[c]


@T.prim_func(s_tir=True)
def _calls_the_host(X: T.Buffer((64, 64), "float32"), Y: T.Buffer((64, 64), "float32")):
    for i in range(64):
        with T.sblock("tile"):
            X_ub = T.sblock_alloc_buffer((64,), scope="global.npu.ub")
            for j in range(64):
                with T.sblock("X_ub"):
                    X_ub[j] = X[i, j]
            for j in range(64):
                with T.sblock("print"):
                    X_ub[j] = X_ub[j] + T.Cast("float32", T.call_extern("int32", "rand"))
            for j in range(64):
                with T.sblock("Y"):
                    Y[i, j] = X_ub[j]


def test_misaligned_start_from_an_outer_loop_is_found(davinci):
    faults = [f for f in verify(_strips_at_odd_offsets, davinci) if f.code == "DMA_MISALIGN"]
    assert [(f.block, f.address) for f in faults] == [("X_ub", (24, 56)), ("W_ub", (24, 56))]


def test_extern_calls_are_not_npu_instructions(davinci):
    faults = verify(_calls_the_host, davinci)
    assert [(f.code, f.get("call")) for f in faults] == [("UNKNOWN_INSTR", "tirx.call_extern")]



def test_a_failing_analysis_pass_is_a_malformed_fault(davinci, monkeypatch):
    from hawk.runtime import program

    def broken_pass():
        def fail(mod, ctx):
            raise RuntimeError("InternalError: Check failed: something TVM did not like")
        return tvm.transform.module_pass(fail, opt_level=0, name="Broken")

    monkeypatch.setattr(program, "ANALYSIS_PASSES", (broken_pass,))
    wl = ops.unary("silu", "silu", 64, 64)
    (fault,) = verify(wl.func, davinci)
    assert fault.code == "MALFORMED_IR" and "did not like" in fault.get("reason")
