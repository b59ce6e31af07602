"""The built-in suites: they load, cover the benchmark categories, and every numpy
reference agrees with the workload's own unscheduled PrimFunc built for the host."""

import pytest

from hawk.bench.suites import load_suite, suite_names
from hawk.runtime import HostWorker, execute

LEVEL1_CATEGORIES = {"matmul", "conv", "elementwise", "broadcast", "reduction", "softmax", "norm",
                     "pooling", "layout", "loss", "gather"}


def _all():
    return [(s, wl) for s in suite_names() for wl in load_suite(s)]


@pytest.fixture(scope="module")
def worker():
    w = HostWorker()
    yield w
    w.close()


def test_every_suite_loads():
    names = suite_names()
    assert {"smoke", "level1", "level2"} <= set(names)
    for s in names:
        assert load_suite(s), s


def test_level1_size_and_coverage():
    wls = load_suite("level1")
    assert len(wls) >= 40
    assert LEVEL1_CATEGORIES <= {w.category for w in wls}
    dtypes = {t.dtype for w in wls for t in w.params}
    assert {"float16", "float32", "int32"} <= dtypes
    ops = {w.op for w in wls}
    assert {"matmul", "batch_matmul", "conv2d", "depthwise_conv2d", "col_reduce", "row_reduce",
            "softmax", "log_softmax", "layernorm", "rmsnorm", "groupnorm", "pool2d", "transpose",
            "embedding"} <= ops
    assert any(w.op == "matmul" and w.params[0].shape[0] > 8 * w.params[1].shape[1] for w in wls), "no tall-skinny GEMM"


def test_level1_gemm_variants_cover_transposed_matvec_and_irregular():
    gemms = [w for w in load_suite("level1") if w.category == "matmul"]
    assert any(w.op == "matmul_nt" for w in gemms), "no A @ B^T"
    assert any(w.op == "matvec" and w.params[0].shape[0] == 1 for w in gemms), "no matrix-vector"
    assert any(any(d % 16 for d in w.params[0].shape) for w in gemms), "no irregular (not 16-multiple) M or K"
    assert any(w.params[1].shape[-1] % 16 for w in gemms), "no irregular N"
    for name in ("matmul_nt_bert_qkv", "matvec_llama_decode", "matmul_resnet_fc", "matmul_bert_seq104"):
        assert name in {w.name for w in gemms}, name


def test_level1_keeps_the_original_entries():
    names = {w.name for w in load_suite("level1")}
    assert {"matmul_bert_ffn", "matmul_llama_proj", "bmm_bert_qk", "conv2d_resnet_3x3", "relu_resnet",
            "gelu_bert", "exp_f16", "mul_llama_gate", "bias_add_bert", "rowmax_f32", "softmax_bert",
            "rmsnorm_llama", "maxpool_resnet", "avgpool_mobilenet", "transpose_bert"} <= names


def test_level2_is_fused():
    wls = load_suite("level2")
    assert len(wls) >= 15
    assert {w.category for w in wls} == {"fused"}


def test_every_workload_has_a_model_and_a_reference():
    for s, wl in _all():
        assert wl.model, f"{s}/{wl.name}"
        assert wl.reference is not None, f"{s}/{wl.name}"


def test_names_are_unique_across_suites():
    names = [wl.name for _, wl in _all()]
    assert len(names) == len(set(names))


def test_index_generators_stay_in_bounds():
    for _, wl in _all():
        for spec, arr in zip(wl.inputs, wl.make_inputs(0)):
            if spec.dtype == "int32":
                assert arr.min() >= 0, wl.name


def _check(wl, worker):
    result = execute(wl.func, wl, trials=1, worker=worker)
    assert result.correct, f"{wl.name}: {result.status}: {result.message}"


# Every workload runs in about 15 s on 2 cores, so it stays in the default run.
@pytest.mark.parametrize("wl", [pytest.param(wl, id=f"{s}-{wl.name}") for s, wl in _all()])
def test_reference_matches_unscheduled_func(wl, worker):
    _check(wl, worker)
