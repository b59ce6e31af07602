import pytest
from hawk.bench.suites import load_suite
from hawk.npu import load_spec
from hawk.propose.offline import OfflineProposer, read_plan
from hawk.propose.program import apply_program
from hawk.propose.prompt import Feedback, Task
from hawk.propose.proposer import Proposal, Proposer
from hawk.runtime import verify

from tests.hidden_spec import hide

WORKLOADS = load_suite("smoke") + load_suite("level1")


def test_deterministic_per_seed_and_writes_its_plan():
    spec = load_spec("davinci-like")
    for wl in WORKLOADS[:6]:
        task = Task.for_target(wl, spec)
        a = OfflineProposer().propose(task, seed=3, iteration=0).text
        assert a == OfflineProposer().propose(task, seed=3, iteration=0).text
        assert a.startswith("# plan: stage=") and read_plan(a, task.view.scopes) is not None
    texts = {OfflineProposer().propose(Task.for_target(WORKLOADS[1], spec), seed=s, iteration=0).text
             for s in range(8)}
    assert len(texts) > 3


def test_never_reads_hidden_spec_fields():
    for name in ("davinci-like", "edge-like"):
        spec = load_spec(name)
        for wl in WORKLOADS:
            hidden = OfflineProposer().propose(Task.for_target(wl, hide(spec)), seed=1, iteration=0)
            assert hidden == OfflineProposer().propose(Task.for_target(wl, spec), seed=1, iteration=0)


@pytest.mark.parametrize("preset", ["davinci-like", "edge-like"])
def test_covers_every_category_and_breaks_constraints_at_a_realistic_rate(preset, davinci, edge):
    spec = davinci if preset == "davinci-like" else edge  # fixtures register the intrinsics
    legal, admitted, codes = 0, 0, set()
    for wl in WORKLOADS:
        admitted_here = 0
        for seed in range(4):
            proposal = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0)
            applied = apply_program(proposal.text, wl.module())
            if applied.ok:
                admitted_here += 1
                faults = verify(applied.module, spec)
                codes |= {f.code for f in faults}
                legal += not faults
        assert admitted_here, f"no program for {wl.name} ({wl.category}) was even admitted"
        admitted += admitted_here
    total = 4 * len(WORKLOADS)
    assert 0.1 < legal / total < 0.7  # neither hopeless nor hardware-aware
    assert {"SCOPE_OVERFLOW", "ILLEGAL_PATH", "UNIT_SCOPE"} <= codes


GEMM_VARIANTS = ("matmul_nt_bert_qkv", "matvec_llama_decode", "matmul_resnet_fc", "matmul_bert_seq104")


@pytest.mark.parametrize("preset", ["davinci-like", "edge-like"])
def test_pads_gemms_off_the_fractal_and_transposes_a_b_stored_n_by_k(preset, davinci, edge):
    spec = davinci if preset == "davinci-like" else edge
    fractal = 16 if preset == "davinci-like" else 8  # what the mma signature in the api view says
    by_name = {w.name: w for w in WORKLOADS}
    for name in GEMM_VARIANTS + ("matmul_bert_ffn",):
        wl = by_name[name]
        m, n, k = wl.params[0].shape[0], wl.params[-1].shape[-1], wl.params[0].shape[-1]
        for seed in range(4):
            text = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0).text
            assert ("sch.pad_einsum(" in text) == bool(m % fractal or n % fractal or k % fractal), (name, text)
            assert ("sch.transform_layout(" in text) == (wl.op == "matmul_nt"), (name, text)
            assert apply_program(text, wl.module()).ok, (name, seed)


@pytest.mark.parametrize("preset", ["davinci-like", "edge-like"])
def test_padded_transposed_gemm_computes_the_right_thing(preset, davinci, edge):
    from hawk.ir import ops
    from hawk.runtime import HostWorker, execute

    spec = davinci if preset == "davinci-like" else edge
    wl = ops.matmul_nt("nt_odd", 20, 40, 28)  # no extent a whole 16-fractal, M and K not 8-fractals
    admitted = []
    for seed in range(4):
        text = OfflineProposer().propose(Task.for_target(wl, spec), seed=seed, iteration=0).text
        assert "sch.pad_einsum(" in text and "sch.transform_layout(" in text
        applied = apply_program(text, wl.module())
        if applied.ok:
            admitted.append(applied.module)
    assert admitted
    worker = HostWorker()
    try:
        result = execute(admitted[0], wl, trials=1, worker=worker)
    finally:
        worker.close()
    assert result.correct, result.message


def test_reacts_to_an_overflow_with_a_smaller_tile():
    spec = load_spec("davinci-like")
    wl = next(w for w in WORKLOADS if w.name == "silu_f32")
    scopes = Task.for_target(wl, spec).view.scopes
    first = OfflineProposer().propose(Task.for_target(wl, spec), seed=0, iteration=0)
    log = ("[NPU] ERROR 0x0A01 SCOPE_OVERFLOW pipe=- block=root buffer=X scope=global.npu.ub bytes=9 capacity=1",)
    second = OfflineProposer().propose(Task.for_target(wl, spec, Feedback(first.text, device_log=log)), seed=0,
                                       iteration=1)
    before, after = read_plan(first.text, scopes), read_plan(second.text, scopes)
    assert after.rows * after.cols < before.rows * before.cols or after.rows == 1


def test_reacts_to_a_scope_fault_by_leaving_that_scope():
    spec = load_spec("davinci-like")
    wl = next(w for w in WORKLOADS if w.name == "silu_f32")
    scopes = Task.for_target(wl, spec).view.scopes
    first = OfflineProposer().propose(Task.for_target(wl, spec), seed=0, iteration=0)
    stage = read_plan(first.text, scopes).stage
    log = (f"[NPU] ERROR 0x0A03 UNIT_SCOPE pipe=VECTOR block=Y buffer=X scope={stage} unit=vector access=read",)
    second = OfflineProposer().propose(Task.for_target(wl, spec, Feedback(first.text, device_log=log)), seed=0,
                                       iteration=1)
    assert read_plan(second.text, scopes).stage != stage


def test_llm_proposer_turns_replies_into_proposals():
    from hawk.propose.llm import LLMClient, LLMReply
    from hawk.propose.llm_proposer import LLMProposer

    class Scripted(LLMClient):
        def __init__(self, replies):
            super().__init__()
            self.replies = list(replies)

        def complete(self, messages, *, seed=None):
            return self.replies.pop(0)

    spec = load_spec("davinci-like")
    task = Task.for_target(WORKLOADS[1], spec)
    proposer = LLMProposer(Scripted([
        LLMReply(text='Sure!\n```python\nb0 = sch.get_sblock(name="Y")\n```\nDone.'),
        LLMReply(text="I cannot help with that."),
        LLMReply(error="HTTP 500 after 3 retries"),
    ]))
    assert isinstance(proposer, Proposer)
    assert proposer.propose(task, seed=0, iteration=0) == Proposal('b0 = sch.get_sblock(name="Y")', "program", 1)
    assert proposer.propose(task, seed=0, iteration=1).error == "the answer holds no program"
    assert "HTTP 500" in proposer.propose(task, seed=0, iteration=2).error


def test_a_plan_it_cannot_use_is_no_plan():
    scopes = ("global", "global.npu.ub", "global.npu.l1")
    good = ("# plan: stage=global.npu.ub operand_stage=global.npu.l1 rows=8 cols=64 k=32 vector=0 "
            "double=False via_stage=True decompose=True\n")
    assert read_plan(good, scopes).via_stage is True
    for bad in (good.replace("global.npu.ub", "global.npu.spm"), good.replace("rows=8", "rows=\u0668"),
                good.replace("rows=8 ", ""), good.replace("double=False", "double=0"), "b0 = 1\n", "# plan:\n"):
        assert read_plan(bad, scopes) is None, bad


def test_a_one_dimensional_kernel_gets_its_loop_unpacked(davinci):
    import tvm
    from hawk.propose.offline import OfflineProposer
    from hawk.propose.program import apply_program
    from hawk.propose.prompt import Task
    from hawk.tuning.tasks import workload_of
    from tvm import te

    a = te.placeholder((64,), "float32", name="A")
    b = te.compute((64,), lambda i: a[i] * tvm.tirx.const(2.0, "float32"), name="B")
    wl = workload_of("vec", te.create_prim_func([a, b]))
    text = OfflineProposer().propose(Task.for_target(wl, davinci, None, []), seed=0, iteration=0).text
    assert "v1, = sch.get_loops" in text and apply_program(text, wl.module()).ok
