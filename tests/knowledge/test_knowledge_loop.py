"""The loop with knowledge: cold learning, reuse, honesty, and knowledge switched off."""

import re

import pytest
from hawk.ir import ops
from hawk.knowledge import KnowledgeStore
from hawk.knowledge.base import Knowledge, KnowledgeOptions, same_knowledge
from hawk.knowledge.render import for_prompt
from hawk.knowledge.retrieval import RetrievalConfig
from hawk.knowledge.rewrite import Env, apply_rewrite
from hawk.npu import api_view
from hawk.propose.offline import OfflineProposer
from hawk.propose.prompt import Task, build_messages
from hawk.propose.proposer import Proposal, Proposer
from hawk.runtime import HostWorker
from hawk.search import tune

from .test_knowledge_rewrite import ROWS

ON_L1 = ROWS.format(scope="global.npu.l1")  # the vector unit cannot use l1, nor DMA leave it for global


class Stubborn(Proposer):
    """Writes the same faulting program every time, whatever it is told."""

    name = "stubborn"

    def propose(self, task, *, seed, iteration):
        return Proposal(ON_L1)


@pytest.fixture(scope="module")
def worker():
    w = HostWorker()
    yield w
    w.close()


def test_a_cold_run_learns_triples_that_trace_to_it(tmp_path, davinci, worker):
    wl = ops.unary("relu", "relu", 64, 256)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        assert len(store) == 0
        kb = Knowledge(store, run="run-1")
        result = tune(wl, davinci, Stubborn(), budget=8, worker=worker, knowledge=kb)
        assert result.solved and result.best.origin == "explore"
        assert result.candidates[0].origin == "proposer" and result.best.repairs is not None
        triples = store.triples()
        assert triples and [t.id for t in triples] == kb.learned
        env = Env(wl, api_view(davinci))
        for t in triples:
            p = t.provenance
            assert (p.run, p.workload, p.target, p.source) == ("run-1", "relu", "davinci-like", "explore")
            assert t.stats.verified and t.stats.successes == t.stats.applications == 1
            # the executable part, applied to the program before, is the program after
            assert apply_rewrite(p.before, t.executable.rewrite, t.executable.params, env) == p.after
            assert result.candidates[p.iteration].text == p.after


def test_what_one_workload_taught_repairs_the_next(tmp_path, davinci, worker):
    first, second = ops.unary("relu", "relu", 64, 256), ops.unary("relu", "relu", 128, 512)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        tune(first, davinci, Stubborn(), budget=8, worker=worker, knowledge=Knowledge(store, run="a"))
        learned = store.triples()
        result = tune(second, davinci, Stubborn(), budget=8, worker=worker, knowledge=Knowledge(store, run="b"))
        assert result.solved
        assert any(c.origin == "knowledge" for c in result.candidates)
        used = [a for a in store.applications() if a["run"] == "b"]
        assert used and all(a["workload"] == second.name for a in used) and any(a["fixed"] for a in used)
        # the same fixes again are evidence for the triples there, not new triples
        new = [t for t in store.triples() if t.provenance.run == "b"]
        assert not any(same_knowledge(t, old) for t in new for old in learned)
        assert result.first_solved_at <= 3


def test_knowledge_switched_off_is_the_loop_without_knowledge(tmp_path, davinci, worker):
    wl = ops.unary("relu", "relu", 64, 256)
    plain = tune(wl, davinci, OfflineProposer(), budget=6, worker=worker, seed=3)
    off = KnowledgeOptions(learn=False, explore=False, repair=False, retrieval=RetrievalConfig(top_k=0))
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        quiet = tune(wl, davinci, OfflineProposer(), budget=6, worker=worker, seed=3,
                     knowledge=Knowledge(store, options=off))
        assert len(store) == 0
    assert [c.to_dict() | {"wall_s": 0} for c in plain.candidates] == \
        [c.to_dict() | {"wall_s": 0} for c in quiet.candidates]


def _items_from_prompt(task) -> list[str]:
    user = build_messages(task)[1]["content"]
    section = user.split("What is known about this NPU:\n", 1)[1].split("\n\n", 1)[0]
    return ["".join(part).rstrip("\n") for part in
            re.findall(r"^- (.*\n(?:  .*\n?)*)", section + "\n", flags=re.MULTILINE)]


def test_the_offline_proposer_reads_knowledge_only_as_the_prompt_renders_it(tmp_path, davinci, worker,
                                                                              monkeypatch):
    wl = ops.unary("relu", "relu", 64, 256)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        tune(wl, davinci, Stubborn(), budget=8, worker=worker, knowledge=Knowledge(store, run="a"))
        items = [for_prompt(t) for t in store.triples()]
    assert any("fix: rescope(" in i for i in items)
    task = Task.for_target(ops.unary("relu", "relu", 128, 512), davinci, None, items)
    reparsed = Task.for_target(task.workload, davinci, None, _items_from_prompt(task))
    assert reparsed.knowledge == task.knowledge
    from hawk.knowledge import store as store_mod
    from hawk.knowledge import triple as triple_mod

    def refuse(*a, **k):
        raise AssertionError("the proposer reached past the prompt")

    monkeypatch.setattr(store_mod.KnowledgeStore, "triples", refuse)
    monkeypatch.setattr(triple_mod.Triple, "from_dict", refuse)
    for seed in range(6):
        with_kb = OfflineProposer().propose(task, seed=seed, iteration=0).text
        assert with_kb == OfflineProposer().propose(reparsed, seed=seed, iteration=0).text
        assert "global.npu.l1" not in with_kb.split("\n", 1)[1]  # the fix was followed


def test_knowledge_and_exploration_never_read_hidden_spec_fields(tmp_path, davinci, worker, monkeypatch):
    from tests.hidden_spec import hidden_reads_trapped

    reads = []

    def trapped(fn):
        def run(*a, **k):
            with hidden_reads_trapped() as seen:
                try:
                    return fn(*a, **k)
                finally:
                    reads.extend(seen)
        return run

    for name in ("plan", "prompt_items", "observe"):
        monkeypatch.setattr(Knowledge, name, trapped(getattr(Knowledge, name)))
    monkeypatch.setattr(OfflineProposer, "propose", trapped(OfflineProposer.propose))
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        kb = Knowledge(store)
        tune(ops.unary("relu", "relu", 64, 256), davinci, Stubborn(), budget=8, worker=worker, knowledge=kb)
        tune(ops.unary("relu", "relu", 128, 256), davinci, OfflineProposer(), budget=6, worker=worker, knowledge=kb)
        assert len(store) > 0
    assert reads == []


class Learner(Proposer):
    """Faults first, then writes the fix itself (as an LLM that read the device log would)."""

    name = "learner"

    def propose(self, task, *, seed, iteration):
        return Proposal(ON_L1 if iteration == 0 else ON_L1.replace("global.npu.l1", "global.npu.ub"))


def test_a_proposers_own_fix_is_learned_when_a_rewrite_says_what_it_did(tmp_path, davinci, worker):
    wl = ops.unary("relu", "relu", 64, 256)
    off = KnowledgeOptions(explore=False, repair=False)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        result = tune(wl, davinci, Learner(), budget=2, worker=worker, knowledge=Knowledge(store, options=off))
        assert result.candidates[1].is_result
        (t,) = store.triples()
        assert t.provenance.source == "proposer" and t.provenance.iteration == 1
        assert t.executable.rewrite == "rescope" and t.executable.params["to"] == "global.npu.ub"


class Writer:
    def __init__(self, text, error=""):
        self.text, self.error, self.asked = text, error, []

    def complete(self, messages, seed=None):
        from hawk.propose.llm import LLMReply

        self.asked.append(messages)
        return LLMReply(text=self.text, error=self.error)


@pytest.mark.parametrize("answer, error, kept", [
    ("The vector unit only reads the unified buffer; buffers it computes on must live in global.npu.ub.", "", True),
    ("```python\nimport os\n```", "", False),
    ("x" * 5000, "", False),
    ("", "HTTP 500", False),
])
def test_an_llm_writes_the_semantics_of_what_worked(tmp_path, davinci, worker, answer, error, kept):
    from hawk.knowledge.base import write_semantics

    wl = ops.unary("relu", "relu", 64, 256)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        tune(wl, davinci, Stubborn(), budget=4, worker=worker, knowledge=Knowledge(store))
        t = store.triples()[0]
    writer = Writer(answer, error)
    sem = write_semantics(writer, t)
    assert writer.asked and t.executable.call() in writer.asked[0][1]["content"]
    assert (sem.text == answer) is kept and (sem == t.semantics) is not kept
    assert sem.observed == t.semantics.observed


def test_no_knowledge_ships_with_the_package():
    from pathlib import Path

    import hawk

    root = Path(hawk.__file__).parent
    data = [p for p in root.rglob("*") if p.is_file() and p.suffix not in (".py", ".pyc", ".typed")
            and "presets" not in p.parts and "suites" not in p.parts]
    assert [p for p in data if p.suffix not in (".so", ".json") or "knowledge" in str(p)] == []
    assert not list(root.rglob("*.sqlite*")) and not list(root.rglob("*knowledge*.json"))


def test_bench_cold_and_warm_with_a_knowledge_report(tmp_path, capsys):
    import json

    from hawk.cli import main

    kb, out = tmp_path / "kb.sqlite", tmp_path / "cold"
    args = ["bench", "--suite", "smoke", "--target", "davinci-like", "--baselines", "loop", "--budget", "6",
            "--workload", "rowsum_f32", "--workload", "add_f16", "-q"]
    assert main(args + ["--knowledge", "cold", "--kb", str(kb), "--json", str(tmp_path / "c.json"),
                        "--report", str(out)]) == 0
    result = json.loads((tmp_path / "c.json").read_text())
    runs = [s["loop"]["knowledge"] for w in result["workloads"] for s in w["seeds"]]
    assert all(len(r["solved_by_iteration"]) == 6 for r in runs)
    assert result["provenance"]["knowledge"]["mode"] == "cold"
    report = (out / "report.md").read_text()
    assert "## Knowledge" in report and (out / "accuracy_vs_iterations.png").exists()
    assert main(args + ["--knowledge", "cold", "--kb", str(kb)]) == 2  # cold means empty
    assert "cold run starts from an empty store" in capsys.readouterr().err
    before = kb.read_bytes()
    assert main(args + ["--knowledge", "warm", "--kb", str(kb), "--kb-ablation", "syntactic"]) == 0
    assert kb.read_bytes() == before  # warm is read-only unless --kb-learn
    assert main(args + ["--kb", str(kb)]) == 2  # knowledge off with a store: a mistake, said so


class Overflowing(Proposer):
    """Tiles far too large for any scratchpad, staged in a scope the vector unit cannot use."""

    name = "overflowing"

    def propose(self, task, *, seed, iteration):
        return Proposal(ON_L1.replace("[None, 64]", "[None, 2048]"))


def test_a_number_reaches_a_triple_only_when_the_device_reported_it(tmp_path, davinci, worker):
    wl = ops.unary("relu", "relu", 4096, 1024)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        result = tune(wl, davinci, Overflowing(), budget=10, worker=worker, knowledge=Knowledge(store))
        triples = store.triples()
    assert any(t.executable.rewrite == "fit_tiles" for t in triples)
    for t in triples:
        # parameters the explorer picks itself (vector widths, tile factors) are its habits, not the NPU's
        picked = {"width", "factor"}
        values = [v for k, v in t.executable.params.items() if k not in picked] + list(t.semantics.observed.values())
        numbers = {v for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 1}
        if t.context.trigger == "fault":
            reported = " ".join(c.fault_log[0] for c in result.candidates
                                if c.text == t.provenance.before and c.fault_log)
            assert all(f"={n}" in reported for n in numbers), (t.executable.call(), reported)
        else:  # the cycles the profile measured before and after
            measured = {c.cycles for c in result.candidates}
            assert numbers <= measured


def test_the_offline_proposer_follows_a_speed_fix_when_told_that_bottleneck(davinci):
    from hawk.bench.suites import find_workload
    from hawk.propose.prompt import Feedback

    wl = find_workload("rowsum_f32")
    item = ("[verified, worked 3/3] when bottleneck SCALAR: the kernel was bound by pipe SCALAR, 98% busy; "
            "lane_reduce took it from 2105032 to 39980 cycles.\n  fix: lane_reduce()")
    plain = OfflineProposer().propose(Task.for_target(wl, davinci), seed=1, iteration=0).text
    told = Feedback(plain, cycles=2105032, bottleneck="SCALAR")
    other = Feedback(plain, cycles=2105032, bottleneck="MTE2")
    followed = OfflineProposer().propose(Task.for_target(wl, davinci, told, [item]), seed=1, iteration=1).text
    ignored = OfflineProposer().propose(Task.for_target(wl, davinci, other, [item]), seed=1, iteration=1).text
    assert "vector.reduce_sum" in followed and "vector.reduce_sum" not in ignored


def test_a_failing_knowledge_step_never_ends_the_search(tmp_path, davinci, worker, monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("store on fire")

    wl = ops.unary("relu", "relu", 64, 256)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        kb = Knowledge(store)
        monkeypatch.setattr(kb, "plan", broken)
        result = tune(wl, davinci, Stubborn(), budget=3, worker=worker, knowledge=kb)
    assert result.iterations == 3 and "store on fire" in result.candidates[0].error


class Lost(Proposer):
    """Never writes a program that gets anywhere: every repair of it is a dead end too."""

    name = "lost"

    def propose(self, task, *, seed, iteration):
        return Proposal(ROWS.format(scope="global.npu.l0c"))


def test_repairs_never_starve_the_proposer(tmp_path, davinci, worker):
    from hawk.knowledge.base import REPAIRS_IN_A_ROW

    wl = ops.unary("relu", "relu", 64, 256)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        result = tune(wl, davinci, Lost(), budget=12, worker=worker, knowledge=Knowledge(store))
    origins = [c.origin for c in result.candidates]
    assert "explore" in origins  # there were repairs to try ...
    run = 0
    for origin in origins:  # ... and never more than a few in a row before the proposer's turn
        run = run + 1 if origin != "proposer" else 0
        assert run <= REPAIRS_IN_A_ROW
    # a repair that left its fault in place is not repaired further
    for c in result.candidates:
        if c.origin != "proposer" and c.repairs is not None:
            parent = result.candidates[c.repairs]
            if parent.origin != "proposer":
                assert parent.outcome == "ok" or parent.fault_records != result.candidates[parent.repairs].fault_records


def test_distillation_runs_during_tuning_and_the_effect_model_trains(tmp_path, davinci, worker, monkeypatch):
    from hawk.knowledge import base, effect

    monkeypatch.setattr(base, "DISTILL_EVERY", 2)
    monkeypatch.setattr(effect, "MIN_APPLICATIONS", 4)
    monkeypatch.setattr(effect, "RETRAIN_EVERY", 2)
    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        tune(ops.unary("relu", "relu", 64, 256), davinci, Stubborn(), budget=8, worker=worker,
             knowledge=Knowledge(store, run="a"))
        for n, wl in enumerate([ops.unary("relu", "relu", 128, 512), ops.unary("relu", "relu", 256, 256)]):
            kb = Knowledge(store, run=f"b{n}")
            tune(wl, davinci, Stubborn(), budget=8, worker=worker, knowledge=kb)
        apps = store.applications()
        assert apps and all(a["features"] and "fused" in a["scores"] for a in apps)  # context and scores logged
        assert kb.distillations  # rounds ran during tuning (what they decided depends on the evidence)
        assert store.model(effect.FIX_MODEL) is not None
        assert store.stats()["effect_model"]["applications"] >= 4


def test_unverified_knowledge_is_tried_under_a_budget_and_never_prompted(tmp_path, davinci, worker):
    from dataclasses import replace

    from hawk.knowledge.distill import UNVERIFIED_BUDGET
    from hawk.knowledge.triple import Executable

    with KnowledgeStore(tmp_path / "kb.sqlite") as store:
        tune(ops.unary("relu", "relu", 64, 256), davinci, Stubborn(), budget=8, worker=worker,
             knowledge=Knowledge(store, run="a"))
        real = next(t for t in store.triples() if t.executable.rewrite == "rescope")
        # an import of a plausible fix for the same fault that does harm: it ranks below the real
        # one, yet gets its tries; after its budget of failures it is gone, and no prompt saw it
        bad = replace(real, id="tbad", executable=Executable("rescope", {**real.executable.params,
                                                                           "to": "global.npu.l0c"}, "fault_gone"))
        store.add(bad.with_stats(verified=False, applications=0, successes=0))
        prompts = []
        for n in range(UNVERIFIED_BUDGET + 1):
            kb = Knowledge(store, run=f"b{n}")
            wl = ops.unary("relu", "relu", 64 * (n + 2), 128)
            prompts += kb.prompt_items(kb.query(wl))
            result = tune(wl, davinci, Stubborn(), budget=6, worker=worker, knowledge=kb)
            assert result.solved
        tries = [a for a in store.applications("tbad")]
        assert len(tries) == UNVERIFIED_BUDGET and not any(a["fixed"] for a in tries)
        assert store.get("tbad").stats.status == "pruned"
        assert [h["arbiter"] for h in store.history() if h["triples"] == ["tbad"]] == ["evidence"]
        assert prompts and not any("l0c" in item for item in prompts)
