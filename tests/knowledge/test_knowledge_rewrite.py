"""Rewrites (the executable part of knowledge) and the explorer, on hand-written programs."""

import pytest
import tvm_ffi
from hawk.bench.suites import find_workload
from hawk.ir import ops
from hawk.ir.features import scope_peaks
from hawk.knowledge.explore import bind, explore_bottleneck, explore_fault
from hawk.knowledge.rewrite import Env, apply_rewrite, parse_call, parse_script
from hawk.npu import api_view, register_intrinsics
from hawk.propose.program import apply_program
from hawk.runtime.program import read_program
from hawk.runtime.verify import verify

ROWS = """\
# plan: a comment the rewrites keep
b0 = sch.get_sblock(name="Y")
l1, l2 = sch.get_loops(block=b0)
l3, l4 = sch.split(loop=l1, factors=[None, 64])
b5 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="{scope}")
sch.compute_at(block=b5, loop=l3)
b6 = sch.cache_write(block=b0, write_buffer_index=0, storage_scope="{scope}")
sch.reverse_compute_at(block=b6, loop=l3)
"""

GEMM = """\
b0 = sch.get_sblock(name="C")
l1, l2, l3 = sch.get_loops(block=b0)
l4, l5 = sch.split(loop=l1, factors=[None, 64])
l6, l7 = sch.split(loop=l2, factors=[None, 64])
l8, l9 = sch.split(loop=l3, factors=[None, 64])
l10, l11 = sch.split(loop=l5, factors=[None, 16])
l12, l13 = sch.split(loop=l7, factors=[None, 16])
l14, l15 = sch.split(loop=l9, factors=[None, 16])
sch.reorder(l4, l6, l8, l10, l12, l14, l11, l13, l15)
sch.set_scope(block=b0, buffer_index=0, storage_scope="global.npu.l0c")
b16 = sch.get_sblock(name="D")
sch.reverse_compute_at(block=b16, loop=l6)
b17 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.l0a")
sch.compute_at(block=b17, loop=l8)
b18 = sch.cache_read(block=b0, read_buffer_index=1, storage_scope="global.npu.l0b")
sch.compute_at(block=b18, loop=l8)
b19 = sch.decompose_reduction(block=b0, loop=l8)
sch.tensorize(block_or_loop=l11, tensor_intrin="davinci-like.cube.mma_f16_f32")
l20 = sch.get_loops(block=b19)
sch.tensorize(block_or_loop=l20[-2], tensor_intrin="davinci-like.cube.fill_f32")
"""


@pytest.fixture
def relu():
    return ops.unary("relu", "relu", 1024, 256)


def faults(text, wl, spec):
    applied = apply_program(text, wl.module())
    assert applied.ok, applied.error.render()
    return verify(applied.module, spec)


def test_parse_and_render_keep_the_program(relu):
    text = ROWS.format(scope="global.npu.ub")
    script = parse_script(text)
    again = script.render()
    assert again.startswith("# plan: a comment the rewrites keep\n")
    a, b = apply_program(text, relu.module()), apply_program(again, relu.module())
    assert tvm_ffi.structural_equal(a.module, b.module)
    assert parse_script("import os\n") is None and parse_script("sch.split(loop=l1, oops=3)\n") is None


def test_rescope_moves_vector_work_out_of_a_scope_the_unit_cannot_use(relu, davinci):
    text = ROWS.format(scope="global.npu.l1")
    before = [f for f in faults(text, relu, davinci) if f.code == "UNIT_SCOPE"]
    assert before
    options = explore_fault(before[0].to_dict(), api_view(davinci))
    assert options[0] == ("rescope", {"scope": "global.npu.l1", "to": "global.npu.ub"})  # the vector unit's scope
    fixed = apply_rewrite(text, *options[0], Env(relu, api_view(davinci)))
    assert fixed is not None and faults(fixed, relu, davinci) == []


def test_feed_stages_matrix_operands_through_another_scope(davinci):
    register_intrinsics(davinci)
    wl = find_workload("matmul_f16")
    env = Env(wl, api_view(davinci))
    before = faults(GEMM, wl, davinci)
    assert [(f.code, f.get("dst")) for f in before] == [("ILLEGAL_PATH", "global.npu.l0a"),
                                                        ("ILLEGAL_PATH", "global.npu.l0b")]
    options = explore_fault(before[0].to_dict(), api_view(davinci))
    assert options[0] == ("feed", {"dst": "global.npu.l0a", "via": "global.npu.l1"})  # not an operand scope
    once = apply_rewrite(GEMM, *options[0], env)
    assert [f.get("dst") for f in faults(once, wl, davinci)] == ["global.npu.l0b"]
    # the same knowledge, bound to the next fault's fields, fixes the other operand
    params = bind("feed", options[0][1], faults(once, wl, davinci)[0].to_dict())
    assert params == {"dst": "global.npu.l0b", "via": "global.npu.l1"}
    assert faults(apply_rewrite(once, "feed", params, env), wl, davinci) == []


def test_fit_tiles_shrinks_what_lives_in_the_overflowing_scope(davinci):
    wl = ops.unary("relu", "relu", 4096, 4096)
    text = ROWS.format(scope="global.npu.ub").replace("[None, 64]", "[None, 32]")
    before = faults(text, wl, davinci)
    assert before[0].code == "SCOPE_OVERFLOW"
    capacity = before[0].get("capacity")
    fixed = apply_rewrite(text, *explore_fault(before[0].to_dict(), api_view(davinci))[0], Env(wl, api_view(davinci)))
    assert fixed is not None and "SCOPE_OVERFLOW" not in {f.code for f in faults(fixed, wl, davinci)}
    peak = scope_peaks(read_program(apply_program(fixed, wl.module()).module))["global.npu.ub"]
    assert peak <= capacity
    # nothing to do when it already fits
    assert apply_rewrite(fixed, "fit_tiles", {"scope": "global.npu.ub", "capacity": capacity},
                         Env(wl, api_view(davinci))) is None


def test_performance_rewrites(relu, davinci):
    env = Env(relu, api_view(davinci))
    text = ROWS.format(scope="global.npu.ub")
    options = explore_bottleneck(text, api_view(davinci))
    assert ("double_buffer", {"scope": "global.npu.ub"}) in options and ("vectorize", {"width": 64}) in options
    doubled = apply_rewrite(text, "double_buffer", {"scope": "global.npu.ub"}, env)
    assert 'ann_key="double_buffer_scope"' in doubled
    assert apply_rewrite(doubled, "double_buffer", {"scope": "global.npu.ub"}, env) is None  # already
    vectorized = apply_rewrite(text, "vectorize", {"width": 64}, env)
    assert "T.vectorized(64)" in apply_program(vectorized, relu.module()).module.script()
    assert faults(vectorized, relu, davinci) == []
    bigger = apply_rewrite(text, "retile", {"factor": 2}, env)
    assert "factors=[None, 128]" in bigger


@pytest.mark.parametrize("bad", [
    ("nope", {}), ("feed", {"dst": "global.npu.l0a"}), ("feed", {"dst": 1, "via": []}),
    ("rescope", {"scope": "global.npu.ub", "to": "global.npu.ub"}),
])
def test_rewrites_that_do_not_fit_are_none(relu, davinci, bad):
    assert apply_rewrite(ROWS.format(scope="global.npu.ub"), *bad, Env(relu, api_view(davinci))) is None


def test_hostile_text_is_never_a_rewrite(relu, davinci):
    env = Env(relu, api_view(davinci))
    assert apply_rewrite("__import__('os').system('id')\n", "retile", {"factor": 2}, env) is None
    assert parse_call('feed(dst="a", via="b")') == ("feed", {"dst": "a", "via": "b"})
    for line in ['feed(dst=__import__("os"), via="b")', 'feed(**x)', 'feed("a", "b")', 'system(cmd="id")',
                 'feed(dst="a")', 'feed(dst="a", via="b") or 1', 'fit_tiles(scope="a", capacity=True)',
                 'feed(dst="a", via="b"' + ")" * 5000]:
        assert parse_call(line) is None, line


ROWSUM = """\
v0 = sch.get_sblock(name="S")
v1, v2 = sch.get_loops(block=v0)
v3, v4 = sch.split(loop=v1, factors=[None, 8])
v7 = sch.cache_write(block=v0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=v7, loop=v3)
v8 = sch.cache_read(block=v0, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=v8, loop=v3)
"""


@pytest.mark.parametrize("name, program", [("rowsum_f32", ROWSUM), ("softmax_f32", None)])
def test_lane_reduce_puts_row_reductions_on_the_reduce_intrinsic(davinci, name, program):
    from hawk.propose.offline import OfflineProposer
    from hawk.propose.prompt import Task
    from hawk.runtime import execute
    from hawk.runtime.timing import time_kernel

    register_intrinsics(davinci)
    wl = find_workload(name)
    if program is None:  # as the offline proposer stages it
        program = next(t for t in (OfflineProposer().propose(Task.for_target(wl, davinci), seed=s, iteration=0).text
                                   for s in range(20)) if not faults(t, wl, davinci))
    env = Env(wl, api_view(davinci))
    fast = apply_rewrite(program, "lane_reduce", {}, env)
    assert fast is not None and "vector.reduce_" in fast and "rfactor" in fast
    before, after = env.module(program), env.module(fast)
    assert verify(after, davinci) == []
    assert execute(after, wl, trials=2).correct
    assert time_kernel(after, davinci, wl).cycles * 5 < time_kernel(before, davinci, wl).cycles
    assert apply_rewrite(fast, "lane_reduce", {}, env) is None  # nothing left to reduce that way


def test_retile_leaves_the_instruction_tiles_alone(davinci):
    register_intrinsics(davinci)
    wl = find_workload("matmul_f16")
    env = Env(wl, api_view(davinci))
    staged = apply_rewrite(apply_rewrite(GEMM, "feed", {"dst": "global.npu.l0a", "via": "global.npu.l1"}, env),
                           "feed", {"dst": "global.npu.l0b", "via": "global.npu.l1"}, env)
    bigger = apply_rewrite(staged, "retile", {"factor": 2}, env)
    assert bigger.count("factors=[None, 128]") == 3 and bigger.count("factors=[None, 16]") == 3


COLSUM = """\
v0 = sch.get_sblock(name="S")
v1, v2 = sch.get_loops(block=v0)
v3, v4 = sch.split(loop=v1, factors=[None, 64])
sch.reorder(v3, v2, v4)
v5 = sch.cache_write(block=v0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=v5, loop=v3)
v6 = sch.cache_read(block=v0, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=v6, loop=v3)
"""


def test_vectorize_reduce_runs_column_reductions_across_the_columns(davinci):
    from hawk.runtime import execute
    from hawk.runtime.timing import time_kernel

    wl = find_workload("colsum_bert_bias_grad")
    env = Env(wl, api_view(davinci))
    assert faults(COLSUM, wl, davinci) == []
    fast = apply_rewrite(COLSUM, "vectorize_reduce", {"width": 64}, env)
    assert fast is not None and "decompose_reduction" in fast and "vectorize" in fast
    after = env.module(fast)
    assert verify(after, davinci) == [] and execute(after, wl, trials=2).correct
    assert time_kernel(after, davinci, wl).cycles * 3 < time_kernel(env.module(COLSUM), davinci, wl).cycles


def test_tile_columns_shrinks_what_a_fused_gemm_stages_per_tile(davinci):
    register_intrinsics(davinci)
    wl = find_workload("gemm_bias_gelu_bert", "level2")
    staged = """\
v0 = sch.get_sblock(name="D")
v1, v2 = sch.get_loops(block=v0)
v3, v4 = sch.split(loop=v1, factors=[None, 4])
v5 = sch.cache_write(block=v0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=v5, loop=v3)
v6 = sch.get_sblock(name="C")
sch.compute_at(block=v6, loop=v3)
sch.set_scope(block=v6, buffer_index=0, storage_scope="global.npu.ub")
v7 = sch.cache_read(block=v6, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=v7, loop=v3)
v8 = sch.cache_read(block=v6, read_buffer_index=1, storage_scope="global.npu.ub")
sch.compute_at(block=v8, loop=v3)
"""
    before = faults(staged, wl, davinci)
    assert before[0].code == "SCOPE_OVERFLOW"
    options = explore_fault(before[0].to_dict(), api_view(davinci))
    assert ("tile_columns", {"factor": 64}) in options
    env = Env(wl, api_view(davinci))
    tiled = apply_rewrite(staged, "tile_columns", {"factor": 64}, env)
    assert tiled is not None and "SCOPE_OVERFLOW" not in {f.code for f in faults(tiled, wl, davinci)}
    assert apply_rewrite(tiled, "tile_columns", {"factor": 64}, env) is None  # tiled already


NT_GEMM = GEMM.replace(  # both operands staged in l1; B's copy into l0b transposes it
    'b17 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.l0a")\n'
    'sch.compute_at(block=b17, loop=l8)\n'
    'b18 = sch.cache_read(block=b0, read_buffer_index=1, storage_scope="global.npu.l0b")\n'
    'sch.compute_at(block=b18, loop=l8)\n',
    'b22 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.l1")\n'
    'b17 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.l0a")\n'
    'sch.compute_at(block=b17, loop=l8)\n'
    'sch.compute_at(block=b22, loop=l8)\n'
    'b21 = sch.cache_read(block=b0, read_buffer_index=1, storage_scope="global.npu.l1")\n'
    'b18 = sch.cache_read(block=b0, read_buffer_index=1, storage_scope="global.npu.l0b")\n'
    'sch.transform_layout(block=b18, buffer=("write", 0), index_map=lambda i0, i1: (i1, i0))\n'
    'sch.compute_at(block=b18, loop=l8)\n'
    'sch.compute_at(block=b21, loop=l8)\n')


def test_relayout_moves_a_transposing_copy_off_the_dma(davinci):
    # C = A @ B^T: the copy into l0b that transposes B is a strided DMA; the device says so
    wl = ops.matmul_nt("nt", 128, 128, 256)
    before = faults(NT_GEMM, wl, davinci)
    assert [f.code for f in before] == ["DMA_DISCONTIG"]
    options = explore_fault(before[0].to_dict(), api_view(davinci))
    assert options[0] == ("relayout", {"scope": "global.npu.l0b", "via": "global.npu.ub"})
    env = Env(wl, api_view(davinci))
    moved = apply_rewrite(NT_GEMM, *options[0], env)
    assert moved is not None and faults(moved, wl, davinci) == []
    prog = read_program(env.module(moved))
    copies = {(i.reads[0].scope, i.writes[0].scope) for i in prog.instrs() if i.kind == "copy"}
    assert ("global.npu.ub", "global.npu.ub") in copies  # the transposition, done by a unit
    # and that copy is what vectorize puts on the vector unit (not the move out of l0c)
    fast = apply_rewrite(moved, "vectorize", {"width": 64}, env)
    assert fast is not None and faults(fast, wl, davinci) == []
    inplace = [i for i in read_program(env.module(fast)).instrs()
               if i.kind == "copy" and i.reads[0].scope == i.writes[0].scope]
    assert inplace and all(i.vectorized for i in inplace)
    assert apply_rewrite(GEMM, *options[0], env) is None  # no layout change, nothing to move


BATCH_OF_ONE = """\
v0 = sch.get_sblock(name="D")
v1, v2, v3, v4 = sch.get_loops(block=v0)
v5, v6 = sch.split(loop=v1, factors=[None, 1])
v7 = sch.cache_write(block=v0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=v7, loop=v5)
v8 = sch.get_sblock(name="C")
sch.compute_at(block=v8, loop=v5)
sch.set_scope(block=v8, buffer_index=0, storage_scope="global.npu.ub")
v9 = sch.cache_read(block=v8, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=v9, loop=v5)
v10 = sch.cache_read(block=v8, read_buffer_index=1, storage_scope="global.npu.ub")
sch.compute_at(block=v10, loop=v5)
"""


def test_tile_deeper_tiles_the_next_loop_when_the_row_tile_cannot_shrink(davinci):
    # a depthwise conv with batch 1: the "row" tile is the whole image and fit_tiles has
    # nothing to halve; tiling the image rows makes it fit what the device reported
    wl = find_workload("dwconv_mobilenet")
    before = faults(BATCH_OF_ONE, wl, davinci)
    assert [f.code for f in before] == ["SCOPE_OVERFLOW"]
    options = explore_fault(before[0].to_dict(), api_view(davinci))
    fit = dict(options[0][1])
    assert options[:2] == [("fit_tiles", fit), ("tile_deeper", fit)]
    env = Env(wl, api_view(davinci))
    assert apply_rewrite(BATCH_OF_ONE, "fit_tiles", fit, env) is None
    deeper = apply_rewrite(BATCH_OF_ONE, "tile_deeper", fit, env)
    assert deeper is not None and faults(deeper, wl, davinci) == []
    peak = scope_peaks(read_program(env.module(deeper)))["global.npu.ub"]
    assert peak <= fit["capacity"] < 2 * peak  # the largest tile that fits, not any tile
    assert apply_rewrite(deeper, "tile_deeper", fit, env) is None  # fits already


@pytest.mark.parametrize("name", ["feed", "drain", "rescope", "fit_tiles", "tile_columns", "double_buffer",
                                  "vectorize", "vectorize_reduce", "retile", "relayout", "tile_deeper", "to_matrix"])
def test_hostile_parameters_from_an_imported_triple_never_crash_a_rewrite(relu, davinci, name):
    # an import file is untrusted: any JSON scalar may sit in a parameter
    from hawk.knowledge.rewrite import PARAMS

    env = Env(relu, api_view(davinci))
    text = ROWS.format(scope="global.npu.ub")
    for value in (0, -1, 2**62, 1e308, -1e308, "x" * 10_000, "global\x00npu", "__import__('os')", "", 0.5):
        out = apply_rewrite(text, name, dict.fromkeys(PARAMS[name], value), env)
        assert out is None or apply_program(out, relu.module()).ok  # a program admission accepts, or nothing


def test_to_matrix_puts_a_convolution_on_the_matrix_unit(davinci, edge):
    from hawk.runtime.timing import time_kernel

    wl = find_workload("conv2d_resnet_3x3")  # 14x14 outputs: rows padded to whole fractals
    for spec, stage in ((davinci, "global.npu.l1"), (edge, "global.npu.spm")):
        register_intrinsics(spec)
        env = Env(wl, api_view(spec))
        on_vector = BATCH_OF_ONE  # the output tiled by rows, everything staged for the vector unit
        assert ("to_matrix", {"stage": stage, "n_tile": 8, "k_tile": 4}) in explore_bottleneck(on_vector, api_view(spec))
        cube = apply_rewrite(on_vector, "to_matrix", {"stage": stage, "n_tile": 8, "k_tile": 4}, env)
        assert cube is not None and ".mma_" in cube and "reindex" in cube
        problems = faults(cube, wl, spec)
        if spec is edge:  # no path from the accumulator to global memory: drain it through the stage
            assert [f.code for f in problems] == ["ILLEGAL_PATH"]
            cube = apply_rewrite(cube, "drain", {"src": "global.npu.acc", "via": stage}, env)
            problems = faults(cube, wl, spec)
        assert problems == []
        assert time_kernel(env.module(cube), spec, wl).cycles < 100_000  # the vector unit's take: millions
        assert apply_rewrite(cube, "to_matrix", {"stage": stage, "n_tile": 8, "k_tile": 4}, env) is None
    # no multiply-accumulate with a shared reduction: a depthwise conv has nothing to put there
    dw = Env(find_workload("dwconv_mobilenet"), api_view(davinci))
    assert apply_rewrite(BATCH_OF_ONE, "to_matrix", {"stage": "global.npu.l1", "n_tile": 8, "k_tile": 4}, dw) is None


def test_a_refused_output_block_gets_a_loop_nest_of_its_own(davinci):
    # residual + RMSNorm returns the residual sum H too: TVM refuses to place H under the
    # norm's row tile (an output block), an admission error, not a device fault
    from hawk.knowledge.explore import refusal

    wl = find_workload("residual_rmsnorm_llama")
    program = """\
v0 = sch.get_sblock(name="Y")
v1, v2 = sch.get_loops(block=v0)
v3, v4 = sch.split(loop=v1, factors=[None, 4])
v5 = sch.cache_write(block=v0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=v5, loop=v3)
v6 = sch.get_sblock(name="sq_sum")
sch.compute_at(block=v6, loop=v3)
sch.set_scope(block=v6, buffer_index=0, storage_scope="global.npu.ub")
v7 = sch.get_sblock(name="H")
sch.compute_at(block=v7, loop=v3)
sch.set_scope(block=v7, buffer_index=0, storage_scope="global.npu.ub")
v8 = sch.cache_read(block=v7, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=v8, loop=v3)
"""
    refused = apply_program(program, wl.module())
    assert not refused.ok and "is an output block" in refused.error.render()
    fault = refusal(refused.error.render())
    assert fault == {"code": "REFUSED", "observed": {"reason": "output_block"}}
    assert explore_fault(fault, api_view(davinci)) == [("stage_outputs", {})]
    env = Env(wl, api_view(davinci))
    staged = apply_rewrite(program, "stage_outputs", {}, env)
    assert staged is not None and apply_program(staged, wl.module()).ok
    assert 'cache_write(block=v7, write_buffer_index=0, storage_scope="global.npu.ub")' in staged
    assert refusal("line 3: TVM rejected the call: some other complaint") is None
