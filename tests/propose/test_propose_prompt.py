import dataclasses
import re

import pytest

from hawk.bench.suites import find_workload
from hawk.npu import HardwareSpec, load_spec, register_intrinsics
from hawk.propose.offline import OfflineProposer
from hawk.propose.prompt import Feedback, Task, build_messages

from .test_propose_honesty import _feedback_for, hide


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
        hidden = build_messages(Task.for_target(wl, hide(spec)))  # reading a hidden field raises
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


def _sentinel(spec: HardwareSpec) -> HardwareSpec:
    """A copy of ``spec`` whose hidden numbers are values found nowhere else: any of them in
    a prompt came from the spec or from a device log. Capacities are small, so logs do
    report some; the alignment is a power of two no workload uses."""
    numbers = iter(range(10_007, 99_999, 1_009))
    data = spec.to_dict()
    data["name"], data["clock_ghz"] = f"{spec.name}-sentinel", next(numbers) / 1000
    for s in data["scopes"]:
        if s["capacity"] is not None:
            s["capacity"] = next(numbers)
        s["alignment"] = 1 << 19
    for p in data["paths"]:
        p.update(bandwidth=next(numbers) + 0.5, latency=next(numbers), burst=next(numbers))
    for u in data["units"]:
        u.update(throughput=next(numbers) + 0.25, issue_overhead=next(numbers),
                 transcendental_factor=next(numbers) + 0.75)
    return HardwareSpec.from_dict(data)


def _hidden_numbers(spec: HardwareSpec) -> set[str]:
    values = {spec.clock_ghz}
    values |= {v for s in spec.scopes for v in (s.capacity, s.alignment) if v is not None}
    values |= {v for p in spec.paths for v in (p.bandwidth, p.latency, p.burst)}
    values |= {v for u in spec.units for v in (u.throughput, u.issue_overhead, u.transcendental_factor)}
    return {str(v) for v in values} | {hex(v) for v in values if isinstance(v, int)}


def _numbers(text: str) -> set[str]:
    return set(re.findall(r"0x[0-9a-f]+|\d+(?:\.\d+)?", text))


@pytest.mark.parametrize("preset", ["davinci-like", "edge-like"])
def test_a_prompt_holds_a_hidden_number_only_when_the_device_log_reported_it(preset):
    spec = _sentinel(load_spec(preset))
    register_intrinsics(spec)
    hidden = _hidden_numbers(spec)
    reported = 0
    for name in ("matmul_f16", "softmax_f32", "silu_f32", "layernorm_f32", "matmul_resnet_fc", "matvec_llama_decode"):
        wl = find_workload(name)
        plain = "\n".join(m["content"] for m in build_messages(Task.for_target(wl, hide(spec))))
        assert not hidden & _numbers(plain), name
        for seed in range(3):
            text = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0).text
            observed = _feedback_for(text, wl, spec)
            for feedback in (observed, dataclasses.replace(observed, device_log=(), mismatch="timeout: 10 s"),
                             dataclasses.replace(observed, device_log=(), mismatch="wrong results: 7 of 64 differ")):
                messages = build_messages(Task.for_target(wl, hide(spec), feedback))
                assert messages == build_messages(Task.for_target(wl, spec, feedback))
                prompt = "\n".join(m["content"] for m in messages)
                log = _numbers(" ".join(feedback.device_log))
                assert not (hidden & _numbers(prompt)) - log, (name, seed, feedback)
                reported += bool(hidden & log)
    assert reported  # some logs did report a capacity or a burst, and the prompt passed it on
