import pytest
from hawk.bench.reference import (
    NoReference,
    has_reference,
    reference_kernel,
    reference_ops,
)
from hawk.ir import ops
from hawk.npu import load_spec
from hawk.runtime import HostWorker, execute, verify

from ..cases import reference_cases

DAVINCI_OPS = {"matmul", "batch_matmul", "conv2d", "unary", "binary", "bias_add", "row_reduce",
               "softmax", "layernorm", "rmsnorm", "pool2d", "transpose"}


@pytest.fixture(scope="module")
def worker():
    w = HostWorker()
    yield w
    w.close()


def test_davinci_library_is_complete():
    assert DAVINCI_OPS <= set(reference_ops(load_spec("davinci-like")))


def test_edge_library_covers_a_gemm_an_elementwise_op_and_a_reduction():
    have = set(reference_ops(load_spec("edge-like")))
    assert "matmul" in have and have & {"unary", "binary", "bias_add"} and "row_reduce" in have


@pytest.mark.parametrize("preset, wl", reference_cases())
def test_reference_kernel_is_legal_and_correct(preset, wl, worker):
    spec = load_spec(preset)
    kernel = reference_kernel(wl, spec)
    faults = verify(kernel, spec)
    assert faults == [], [f.log for f in faults]
    result = execute(kernel, wl, worker=worker)
    assert result.correct, result.message


def test_missing_reference_is_said_not_invented():
    edge = load_spec("edge-like")
    wl = ops.pool2d("pool", "max", 1, 8, 8, 16, 2, 2)
    assert not has_reference(wl, edge)
    with pytest.raises(NoReference, match="pool2d"):
        reference_kernel(wl, edge)


def test_int8_gemm_uses_the_int8_cube_form(worker):
    spec = load_spec("davinci-like")
    wl = ops.matmul("mm_s8", 64, 96, 128, dtype="int8", out_dtype="int32")
    kernel = reference_kernel(wl, spec)
    assert "davinci-like.cube.mma_s8_s32" in kernel.script()
    assert verify(kernel, spec) == []
    assert execute(kernel, wl, worker=worker).correct


def test_bf16_gemm_runs_on_the_host(worker):
    spec = load_spec("davinci-like")
    wl = ops.matmul("mm_bf16", 64, 64, 128, dtype="bfloat16", out_dtype="float32")
    kernel = reference_kernel(wl, spec)
    assert "davinci-like.cube.mma_bf16_f32" in kernel.script()
    assert verify(kernel, spec) == []
    assert execute(kernel, wl, worker=worker).correct
