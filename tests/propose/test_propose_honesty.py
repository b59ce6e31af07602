"""What a proposer may know (DESIGN 3): scope names and the instruction API, never the
capacities, paths, alignments or costs of the spec.

Two guards, shared with the prompt and offline-proposer tests: ``hide(spec)``, a proxy on
which every hidden field, and every route to one, raises; and ``hidden_reads_trapped()``,
which makes any read of a hidden field of any spec object in the process raise while a
proposer works (so a proposer that loaded a preset by the target's name would be caught too).
"""

from __future__ import annotations

import copy
import dataclasses
import importlib.util
import pickle
from pathlib import Path

import pytest

from hawk.bench.suites import load_suite
from hawk.npu import HardwareSpec, MatrixShape, Scope, Unit, api_view, load_spec
from hawk.npu import register_intrinsics
from hawk.propose.offline import OfflineProposer, read_plan
from hawk.propose.program import apply_program
from hawk.propose.prompt import Feedback, Task, build_messages
from hawk.runtime import verify
from tests.hidden_spec import VISIBLE, HiddenFieldRead, hidden_fields, hidden_reads_trapped, hide

# --- the proxy covers every path -----------------------------------------------------------

PRESETS = ("davinci-like", "edge-like")


@pytest.mark.parametrize("preset", PRESETS)
def test_every_hidden_field_raises_on_the_proxy(preset):
    spec = load_spec(preset)
    proxy = hide(spec)
    objects = [(HardwareSpec, proxy)] + [(Scope, s) for s in proxy.scopes] + [(Unit, u) for u in proxy.units]
    objects += [(MatrixShape, sh) for u in proxy.units for sh in u.shapes]
    for cls, obj in objects:
        for name in hidden_fields(cls):
            with pytest.raises(HiddenFieldRead):
                getattr(obj, name)
    # the only ways to a path, a fractal or a fault entry are hidden fields
    assert {"paths", "faults"} <= set(hidden_fields(HardwareSpec)) and "fractal" in hidden_fields(Scope)
    for name in ("capacity", "alignment", "clock_ghz", "description", "throughput", "issue_overhead",
                 "transcendental_factor", "pipe"):
        assert any(name in hidden_fields(cls) for cls in VISIBLE)


@pytest.mark.parametrize("preset", PRESETS)
def test_every_route_to_a_hidden_field_raises_on_the_proxy(preset, tmp_path):
    spec = load_spec(preset)
    p = hide(spec)
    onchip = spec.onchip_scopes[0].name
    route = spec.paths[0]
    unit = spec.units[0].name
    routes = {
        "scope().capacity": lambda: p.scope(onchip).capacity,
        "scope().alignment": lambda: p.scope(onchip).alignment,
        "scope().fractal_for()": lambda: p.scope(onchip).fractal_for("float16"),
        "path()": lambda: p.path(route.src, route.dst),
        "path().bandwidth": lambda: p.path(route.src, route.dst).bandwidth,
        "unit().throughput": lambda: p.unit(unit).throughput,
        "unit().pipe": lambda: p.unit(unit).pipe,
        "unit_of_kind().issue_overhead": lambda: p.unit_of_kind("vector").issue_overhead,
        "fault()": lambda: p.fault("SCOPE_OVERFLOW"),
        "to_dict()": lambda: p.to_dict(),
        "to_json()": lambda: p.to_json(),
        "fingerprint()": lambda: p.fingerprint(),
        "save()": lambda: p.save(tmp_path / "spec.json"),
        "iterate scopes": lambda: [s.capacity for s in p.scopes],
        "iterate onchip_scopes": lambda: [s.alignment for s in p.onchip_scopes],
        "iterate units": lambda: [u.transcendental_factor for u in p.units],
        "iterate paths": lambda: [x.latency for x in p.paths],
        "__dict__": lambda: p.__dict__,
        "vars()": lambda: vars(p),
        "scope __dict__": lambda: p.scopes[1].__dict__,
        "repr()": lambda: repr(p),
        "str()": lambda: str(p),
        "format()": lambda: f"{p}",
        "repr(scope)": lambda: repr(p.scopes[1]),
        "str(unit)": lambda: str(p.units[0]),
        "copy.copy()": lambda: copy.copy(p),
        "copy.deepcopy()": lambda: copy.deepcopy(p.scopes[1]),
        "pickle": lambda: pickle.dumps(p),
    }
    for what, read in routes.items():
        with pytest.raises(HiddenFieldRead):
            read()
            pytest.fail(f"{what} did not raise")
    # the dataclass helpers do not take the proxy for a dataclass
    for helper in (dataclasses.asdict, dataclasses.astuple, dataclasses.fields, dataclasses.replace):
        for obj in (p, p.scopes[1], p.units[0]):
            with pytest.raises((TypeError, HiddenFieldRead)):
                helper(obj)
    # what the api view needs still works through the proxy
    assert p.scope(onchip).name == onchip and [s.name for s in p.onchip_scopes] == [s.name for s in spec.onchip_scopes]
    assert p.unit(unit).reads == spec.units[0].reads and p.unit_of_kind("matrix").kind == "matrix"
    assert api_view(p) == api_view(spec)


def test_the_trap_catches_a_read_through_the_spec_itself():
    spec = load_spec("davinci-like")
    reads = [
        lambda: spec.scopes[1].capacity, lambda: spec.path(spec.paths[0].src, spec.paths[0].dst),
        lambda: spec.to_dict(), lambda: spec.fingerprint(), lambda: dataclasses.asdict(spec.units[0]),
        lambda: vars(spec.scopes[1]), lambda: repr(spec), lambda: copy.deepcopy(spec.scopes[1]),
        lambda: load_spec("davinci-like").clock_ghz,
    ]
    for read in reads:
        with hidden_reads_trapped() as seen, pytest.raises(HiddenFieldRead):
            read()
        assert seen
    with hidden_reads_trapped() as seen:
        assert api_view(spec) is not None
    assert not seen and spec.scopes[1].capacity  # the trap is gone after the block


# --- the offline proposer never reads a hidden field ----------------------------------------

WORKLOADS = load_suite("smoke") + load_suite("level1")


def _feedback_for(text: str, wl, spec) -> Feedback:
    """What the loop would feed back for ``text``, short of running it on the host."""
    applied = apply_program(text, wl.module())
    if not applied.ok:
        return Feedback(text, admission=applied.error.render())
    faults = verify(applied.module, spec)
    if faults:
        return Feedback(text, device_log=tuple(f.log for f in faults))
    return Feedback(text, cycles=12345, bottleneck="VECTOR")


def _synthetic(text: str, spec) -> list[Feedback]:
    """Feedback of every other kind, with observed numbers in it."""
    ub = spec.onchip_scopes[-1].name
    return [
        Feedback(text, device_log=(f"[NPU] ERROR 0x0A01 SCOPE_OVERFLOW pipe=- block=root buffer=X scope={ub} "
                                   "bytes=1048576 capacity=196608",)),
        Feedback(text, device_log=(f"[NPU] ERROR 0x0A04 DMA_MISALIGN pipe=MTE2 block=X_{ub} buffer=X "
                                   f"scope={ub} addr=[0x10,0x30) burst_bytes=32",)),
        Feedback(text, mismatch="wrong results: 37 of 4096 elements differ (max abs error 3.5)"),
        Feedback(text, mismatch="timeout: no answer after 10 s"),
        Feedback(text, device_log=("[NPU] the program could not be run: simulator refused the loop tree",)),
        Feedback("b0 = sch.get_sblock(name=\"C\")\n", device_log=("[NPU] ERROR 0x0A09 UNKNOWN_INSTR pipe=-",)),
    ]


@pytest.mark.parametrize("preset", PRESETS)
def test_offline_proposer_reads_no_hidden_field_over_seeds_iterations_and_feedback(preset, davinci, edge):
    spec = davinci if preset == "davinci-like" else edge  # fixtures register the intrinsics
    proposer = OfflineProposer()
    proposals = overflows = 0
    for n, wl in enumerate(WORKLOADS):  # every workload, seeds 0-4 in turn, a loop's feedback
        seed, feedback = n % 5, None
        for iteration in range(3):
            with hidden_reads_trapped() as seen:
                text = proposer.propose(Task.for_target(wl, spec, feedback), seed=seed, iteration=iteration).text
                build_messages(Task.for_target(wl, spec, feedback))
            assert not seen, (wl.name, seed, iteration, seen)
            proposals += 1
            feedback = _feedback_for(text, wl, spec)
            overflows += "capacity=" in " ".join(feedback.device_log)
        if n % 4 == 0:
            for fb in _synthetic(text, spec):
                with hidden_reads_trapped() as seen:
                    proposer.propose(Task.for_target(wl, spec, fb), seed=seed, iteration=3)
                    build_messages(Task.for_target(wl, spec, fb))
                assert not seen
                proposals += 1
    assert proposals > 200 and overflows  # real device logs with observed numbers were fed back


# --- determinism: a function of (seed, iteration, workload, api view, feedback) ---------------


def test_offline_text_depends_on_the_task_and_seed_only_not_on_call_history(davinci):
    a, b = (next(w for w in WORKLOADS if w.name == name) for name in ("matmul_f16", "softmax_f32"))
    chain = []  # (workload, seed, iteration, feedback) as a loop would produce them
    for wl in (a, b):
        for seed in (0, 3):
            feedback = None
            for iteration in range(4):
                text = OfflineProposer().propose(Task.for_target(wl, davinci, feedback), seed=seed,
                                                 iteration=iteration).text
                chain.append((wl, seed, iteration, feedback, text))
                feedback = _feedback_for(text, wl, davinci)
    shared = OfflineProposer()
    for wl, seed, iteration, feedback, text in reversed(chain):  # B before A, late iterations first
        assert shared.propose(Task.for_target(wl, davinci, feedback), seed=seed, iteration=iteration).text == text
    # the feedback is part of it: the plan of the program it quotes is read back; a program
    # without one (another author's) gets the draw of no feedback
    reacted = 0
    for wl, seed, iteration, feedback, text in chain:
        if feedback is None:
            continue
        assert read_plan(feedback.program, api_view(davinci).scopes) is not None
        fresh = shared.propose(Task.for_target(wl, davinci), seed=seed, iteration=iteration).text
        foreign = dataclasses.replace(feedback, program="b0 = sch.get_sblock(name=\"C\")\n")
        assert shared.propose(Task.for_target(wl, davinci, foreign), seed=seed, iteration=iteration).text == fresh
        reacted += text != fresh
    assert reacted


# --- scope names: the prior is the names, and only the names ---------------------------------


def _neutral_names():
    path = Path(__file__).resolve().parents[2] / "bench" / "neutral_names.py"
    spec = importlib.util.spec_from_file_location("bench_neutral_names", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("preset", PRESETS)
def test_a_neutral_copy_judges_a_kernel_as_the_named_preset_does(preset, davinci, edge):
    spec = davinci if preset == "davinci-like" else edge
    names = _neutral_names()
    neutral = names.neutral_copy(spec)
    register_intrinsics(neutral)
    assert api_view(neutral).scopes == ("global",) + tuple(f"global.npu.m{i}" for i in range(len(spec.scopes) - 1))
    renamed = names.renaming(spec, neutral)
    seen_codes, legal = set(), 0
    for wl in WORKLOADS[::4]:
        for seed in range(2):
            text = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0).text
            neutral_text = text
            for old in renamed:
                neutral_text = neutral_text.replace(f'"{old}"', f'"{renamed[old]}"')
            a, b = apply_program(text, wl.module()), apply_program(neutral_text, wl.module())
            assert a.ok == b.ok, (wl.name, seed)
            if a.ok:
                codes = [f.code for f in verify(a.module, spec)]
                assert codes == [f.code for f in verify(b.module, neutral)], (wl.name, seed)
                seen_codes.update(codes)
                legal += not codes
            with hidden_reads_trapped() as seen:
                OfflineProposer().propose(Task.for_target(wl, neutral), seed=seed, iteration=0)
            assert not seen
    assert legal and len(seen_codes) > 2 and "MALFORMED_IR" not in seen_codes
