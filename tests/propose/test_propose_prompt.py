from hawk.bench.suites import find_workload
from hawk.npu import load_spec
from hawk.propose.prompt import Feedback, Task, build_messages

from ..npu.test_npu_target import _Hidden


def test_prompt_holds_the_workload_the_api_and_the_feedback():
    spec = load_spec("davinci-like")
    wl = find_workload("softmax_f32")
    feedback = Feedback(program="b0 = sch.get_sblock(name=\"T_softmax_norm\")\n",
                        device_log=("[NPU] ERROR 0x0A03 UNIT_SCOPE pipe=SCALAR block=T_softmax_norm",))
    messages = build_messages(Task.for_target(wl, spec, feedback, knowledge=["keep rows in the UB"]))
    text = "\n".join(m["content"] for m in messages)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert "T_softmax_norm" in text and "global.npu.ub" in text and "davinci-like.cube.mma_f16_f32" in text
    assert "UNIT_SCOPE" in text and "keep rows in the UB" in text
    assert "sch.tensorize" in text


def test_prompt_never_shows_capacities_paths_alignments_or_costs():
    for name in ("davinci-like", "edge-like"):
        spec = load_spec(name)
        wl = find_workload("matmul_f16")
        hidden = build_messages(Task.for_target(wl, _Hidden(spec)))  # reading a hidden field raises
        assert hidden == build_messages(Task.for_target(wl, spec))
        text = "\n".join(m["content"] for m in hidden)
        for scope in spec.onchip_scopes:
            assert f"{scope.capacity // 1024} KiB" not in text and str(scope.capacity) not in text
        for word in ("MTE", "bandwidth", "latency", "burst", "capacity", "alignment"):
            assert word not in text


def test_feedback_renders_each_outcome():
    assert "refused" in Feedback("x", admission="line 1, column 1: bad").render()
    assert "wrong" in Feedback("x", mismatch="3 of 10 elements differ").render()
    assert "1234 cycles" in Feedback("x", cycles=1234, bottleneck="MTE2").render()
    assert not Feedback("x", cycles=1).failed and Feedback("x", admission="e").failed
