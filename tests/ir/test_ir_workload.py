import textwrap

import pytest

from hawk.bench.suites import find_workload, load_suite, suite_names
from hawk.ir import WorkloadError, load_workloads, ops

GOOD_PY = """
from tvm import te
from hawk.ir import from_te
A = te.placeholder((32, 64), "float32", name="A")
B = te.compute((32, 64), lambda i, j: A[i, j] * 2, name="B")
WORKLOADS = [from_te("double", "elementwise", [A, B], model="toy", reference=lambda a: a * 2)]
"""

GOOD_TVMSCRIPT = """
# hawk-workload: name=scale category=elementwise model=toy
from tvm.script import tirx as T

@T.prim_func(s_tir=True)
def main(A: T.Buffer((16, 16), "float32"), B: T.Buffer((16, 16), "float32")):
    for i, j in T.grid(16, 16):
        with T.sblock("B"):
            vi, vj = T.axis.remap("SS", [i, j])
            B[vi, vj] = A[vi, vj] * T.float32(3)
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_python_workload_file(tmp_path):
    (wl,) = load_workloads(_write(tmp_path, "w.py", GOOD_PY))
    assert (wl.name, wl.category, wl.model) == ("double", "elementwise", "toy")
    assert [t.shape for t in wl.params] == [(32, 64), (32, 64)]
    assert wl.source.endswith("w.py")


def test_tvmscript_workload_file(tmp_path):
    (wl,) = load_workloads(_write(tmp_path, "w.tvmscript", GOOD_TVMSCRIPT))
    assert (wl.name, wl.category, wl.reference) == ("scale", "elementwise", None)
    assert wl.outputs[0].shape == (16, 16)


@pytest.mark.parametrize("name, text, message", [
    ("a.py", "X = 1\n", "must define WORKLOADS"),
    ("b.py", "WORKLOADS = [1]\n", "WORKLOADS[0] is a int"),
    ("c.py", "def broken(:\n", "failed to load: SyntaxError"),
    ("d.py", GOOD_PY.replace('"elementwise"', '"sorcery"'), "unknown category 'sorcery'"),
    ("e.py", GOOD_PY.replace("WORKLOADS = [from_te(", "WORKLOADS = 2 * [from_te("), "appears twice"),
    ("f.tvmscript", GOOD_TVMSCRIPT.replace("# hawk-workload: name=scale category=elementwise model=toy", ""),
     "missing header"),
    ("g.tvmscript", GOOD_TVMSCRIPT.replace("model=toy", "colour=red"), "bad header item"),
    ("h.tvmscript", GOOD_TVMSCRIPT.replace("T.grid(16, 16)", "T.grid(16, 16"), "not valid TVMScript"),
    ("i.txt", "hello", "a workload file is a .py"),
])
def test_bad_workload_files_give_clear_errors(tmp_path, name, text, message):
    with pytest.raises(WorkloadError) as err:
        load_workloads(_write(tmp_path, name, text))
    assert message in str(err.value) and name in str(err.value), str(err.value)


def test_missing_file():
    with pytest.raises(WorkloadError, match="no such workload file"):
        load_workloads("/nonexistent/w.py")


def test_generator_with_wrong_shape_is_reported():
    from hawk.ir import from_te
    from tvm import te

    A = te.placeholder((4, 4), "float32", name="A")
    B = te.compute((4, 4), lambda i, j: A[i, j], name="B")
    wl = from_te("copy", "layout", [A, B], generators=[lambda rng, shape, dtype: rng.random((2, 2))])
    with pytest.raises(WorkloadError, match="generator for A gave"):
        wl.make_inputs(0)


def test_smoke_suite_covers_the_basic_categories():
    smoke = load_suite("smoke")
    assert len(smoke) <= 8
    assert {w.op for w in smoke} >= {"matmul", "unary", "row_reduce", "softmax", "layernorm"}
    mm = next(w for w in smoke if w.op == "matmul")
    assert mm.inputs[0].dtype == "float16"
    assert all(w.model for w in smoke)


def test_find_workload_by_name_and_file(tmp_path):
    assert "smoke" in suite_names()
    assert find_workload("softmax_f32").op == "softmax"
    assert find_workload(str(_write(tmp_path, "w.py", GOOD_PY))).name == "double"
    with pytest.raises(WorkloadError, match="no workload named"):
        find_workload("nope", "smoke")


def test_ops_references_are_independent_numpy():
    wl = ops.layernorm("ln", 4, 32)
    x, g, b = wl.make_inputs(0)
    (y,) = [wl.reference(x, g, b)]
    assert abs(float(y.mean(axis=1)[0] - b.mean())) < 1.0  # normalised rows


def test_scheduling_a_module_leaves_the_workload_alone(davinci):
    import tvm

    from hawk.bench.reference import reference_kernel

    wl = ops.binary("add", "add", 64, 256)
    before = tvm.ir.save_json(wl.func)
    reference_kernel(wl, davinci)
    assert tvm.ir.save_json(wl.func) == before
    reference_kernel(wl, davinci)  # and it schedules again from scratch
