import pytest
import tvm_ffi
from hawk.bench import reference
from hawk.bench.suites import load_suite
from hawk.ir import ops
from hawk.npu import intrinsics
from hawk.propose.program import apply_program, parse_program, program_from_trace
from hawk.runtime import verify
from tvm import s_tir

from ..cases import reference_cases


def _pads_off_the_fractal(spec, wl) -> bool:
    """A GEMM that is not whole matrix-unit fractals: its reference pads it, and the zero
    fill is split off with decompose_padding, which TVM 0.27 cannot print (as conv2d's)."""
    if wl.op not in ("matmul", "batch_matmul"):
        return False
    a, out = wl.params[0].shape, wl.params[-1].shape
    mma = next(i for i in intrinsics(spec) if i.op == "mma" and i.shape.in_dtype == wl.params[0].dtype)
    return bool(a[-2] % mma.shape.m or out[-1] % mma.shape.n or a[-1] % mma.shape.k)


@pytest.mark.parametrize("preset, wl", reference_cases(skip_ops=("conv2d",), skip=_pads_off_the_fractal))
def test_reference_schedules_round_trip_through_program_text(preset, wl, davinci, edge):
    spec = davinci if preset == "davinci-like" else edge
    reference._load()
    sch = s_tir.Schedule(wl.module())
    reference._LIBRARY[(spec.name, wl.op)](sch, wl, spec)
    text = program_from_trace(sch.trace)
    applied = apply_program(text, wl.module())
    assert applied.ok, applied.error.render()
    assert tvm_ffi.structural_equal(applied.module, sch.mod)
    assert program_from_trace(applied.trace) == text  # and back to the same program
    assert verify(applied.module, spec) == []


def test_a_trace_tvm_cannot_print_is_a_clear_error(davinci):
    wl = next(w for w in load_suite("level1") if w.op == "conv2d")
    reference._load()
    sch = s_tir.Schedule(wl.module())
    reference._LIBRARY[(davinci.name, "conv2d")](sch, wl, davinci)
    with pytest.raises(ValueError, match="cannot be written as a program"):
        program_from_trace(sch.trace)


@pytest.mark.parametrize("preset, wl", reference_cases(skip=lambda spec, wl: not _pads_off_the_fractal(spec, wl)))
def test_padded_gemm_references_say_they_cannot_be_printed(preset, wl, davinci, edge):
    spec = davinci if preset == "davinci-like" else edge
    reference._load()
    sch = s_tir.Schedule(wl.module())
    reference._LIBRARY[(spec.name, wl.op)](sch, wl, spec)
    assert "DecomposePadding" in {inst.kind.name for inst in sch.trace.insts}
    with pytest.raises(ValueError, match="cannot be written as a program"):
        program_from_trace(sch.trace)


ELEMENTWISE = """\
b0 = sch.get_sblock(name="Y", func_name="main")
l1, l2 = sch.get_loops(block=b0)
l3, l4 = sch.split(loop=l2, factors=[None, 64])
b5 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=b5, loop=l3)
b6 = sch.cache_write(block=b0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=b6, loop=l3)
sch.vectorize(loop=l4)
sch.annotate(block_or_loop=b5, ann_key="double_buffer_scope", ann_val=0)
"""


def test_a_handwritten_program_runs_and_is_legal(davinci):
    wl = ops.unary("relu", "relu", 64, 256)
    applied = apply_program(ELEMENTWISE, wl.module())
    assert applied.ok, applied.error.render()
    assert verify(applied.module, davinci) == []
    assert "double_buffer_scope" in applied.module.script()


def test_transform_layout_takes_an_index_arithmetic_lambda():
    wl = ops.unary("relu", "relu", 64, 256)
    text = ('b0 = sch.get_sblock(name="Y", func_name="main")\n'
            'b1 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.ub")\n'
            'sch.transform_layout(block=b1, buffer=("write", 0), index_map=lambda i, j: (j // 16, i, j % 16))\n')
    applied = apply_program(text, wl.module())
    assert applied.ok, applied.error.render()
    assert "X_global_npu_ub[v_j // 16, v_i, v_j % 16]" in applied.module.script()


@pytest.mark.parametrize("text, line, col, words", [
    ("import os\n", 1, 1, "only `name = sch.primitive"),
    ('b0 = sch.get_sblock(name="Y")\nexec("print(1)")\n', 2, 1, "only sch.<primitive>"),
    ('b0 = sch.get_sblock(name=__import__("os").system("touch x"))\n', 1, 26, "argument must be"),
    ('b0 = os.system("touch x")\n', 1, 6, "only sch.<primitive>"),
    ("x = sch.state\n", 1, 5, "each line calls"),
    ("sch.mod.script()\n", 1, 1, "only sch.<primitive>"),
    ('b0 = sch.get_sblock(name="Y")\nsch.get(b0)\n', 2, 1, "not an allowed schedule primitive"),
    ('b0 = sch.get_sblock(name="Y")\nl1 = sch.get_loops(block=b0)\nsch.vectorize(loop=l9)\n', 3, 20, "not bound"),
    ('b0 = sch.get_sblock(name="Y")\nl1, l2, l3 = sch.get_loops(block=b0)\n', 2, 1, "returned 2 values"),
    ('b0 = sch.get_sblock(name="Y")\nsch.annotate(block_or_loop=b0, ann_key="hawk.intrin", ann_val="x")\n', 2, 1,
     "annotation 'hawk.intrin'"),
    ('b0 = sch.get_sblock(name="Y")\nl1, l2 = sch.get_loops(block=b0)\nsch.tensorize(l2, "no.such.intrin")\n', 3, 1,
     "unknown tensor intrinsic"),
    ('b0 = sch.get_sblock(name="Y")\nl1, l2 = sch.get_loops(block=b0)\nl3, l4 = sch.split(loop=l2, factors=[7, 7])\n',
     3, 1, "TVM rejected the call"),
    ('b0 = sch.get_sblock(name="Nope")\n', 1, 1, "TVM rejected the call"),
    ("b0 = sch.get_sblock(name='Y'\n", 1, 20, "syntax error"),
    ("while True:\n    pass\n", 1, 1, "not While"),
    ('b0 = sch.get_sblock(name=f"{1}")\n', 1, 26, "not JoinedStr"),
    ('b0 = sch.get_sblock(name="Y")\nsch.split(loop=lambda: 0, factors=[1])\n', 2, 16, "not Lambda"),
    ('__x = sch.get_sblock(name="Y")\n', 1, 1, "reserved"),
    ('b0 = sch.get_sblock(name="Y")\nsch.transform_layout(block=b0, buffer=("write", 0), index_map=lambda i, j: (print(i), j))\n',
     2, 77, "index map is arithmetic"),
])
def test_bad_programs_are_refused_with_a_position(text, line, col, words):
    wl = ops.unary("relu", "relu", 64, 256)
    applied = apply_program(text, wl.module())
    assert not applied.ok and applied.module is None
    err = applied.error
    assert words in err.message, err.render()
    assert (err.line, err.col) == (line, col), err.render()
    rendered = err.render()
    assert rendered.startswith(f"line {line}, column {col}:") and rendered.rstrip().endswith("^")


def test_limits_on_program_size():
    _, err = parse_program("x = 1\n" * 100_000)
    assert "limit" in err.message
    _, err = parse_program('b0 = sch.get_sblock(name="Y")\n' * 401)
    assert "401 statements" in err.message


def test_applying_never_touches_the_workload():
    import tvm

    wl = ops.unary("relu", "relu", 64, 256)
    module = wl.module()
    before = tvm.ir.save_json(module)
    assert apply_program(ELEMENTWISE, module).ok
    assert tvm.ir.save_json(module) == before
