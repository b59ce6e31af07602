"""Distillation: the effect model, pruning, merging, conflicts, history and revert, and the
LLM arbiter checked against the evidence (against a local scripted endpoint)."""

import json

import pytest
from hawk.cli import main
from hawk.knowledge import (
    Application,
    Context,
    Executable,
    KnowledgeStore,
    Provenance,
    Semantics,
    Triple,
    effect,
)
from hawk.knowledge.base import Knowledge
from hawk.knowledge.distill import (
    FAIL_STREAK,
    MERGE,
    PRUNE,
    Decision,
    apply,
    check,
    deterministic,
    distill,
    judge,
    revert,
)

from ..propose.test_propose_llm import client_for, serve  # noqa: F401 - the fixture

UB = "global.npu.ub"


def triple(code="SCOPE_OVERFLOW", rewrite="fit_tiles", params=None, fields=None, n=0, run="r", **stats) -> Triple:
    fields = fields if fields is not None else {"scope": UB, "capacity": "196608"}
    ctx = Context(trigger="fault", code=code, fields=fields, category="elementwise",
                  features={f"fp:{UB}": 17.0, "unit:vector": 0.5}, tokens=("split",))
    exe = Executable(rewrite, params if params is not None else {"scope": UB, "capacity": 196608}, "fault_gone")
    prov = Provenance(run=run, workload=f"w{n}", target="davinci-like", iteration=n, source="explore",
                      proposer="offline", before="a", after="b", created="2026-12-03T00:00:00Z")
    t = Triple.new(ctx, Semantics(f"{UB} holds 196608 bytes.", {"capacity": 196608}), exe, prov)
    return t.with_stats(**{"verified": True, "applications": 1, "successes": 1, **stats})


def log(store, t, fixed, *, features=None, n=1):
    for _ in range(n):
        store.record(Application(t.id, "run", "w", "davinci-like", 0, applied=True, fixed=fixed, correct=fixed,
                                 features=features or {"fp:global.npu.ub": 17.0}, scores={"fused": 0.03}))


def test_the_evidence_prunes_what_fails_and_merges_what_does_the_same(tmp_path):
    good = triple(n=1, applications=10, successes=9)
    bad = triple(code="UNIT_SCOPE", rewrite="rescope", params={"scope": "global.npu.l1", "to": "global.npu.l0a"},
                 fields={"scope": "global.npu.l1"}, n=2, applications=6, successes=1)
    # the same fix learned on another scope's overflow: one more general triple
    other_scope = triple(params={"scope": "global.npu.l0b", "capacity": 65536},
                         fields={"scope": "global.npu.l0b", "capacity": "65536"}, n=3, applications=3, successes=3)
    slower = triple(code="", rewrite="retile", params={"factor": 2}, n=4, applications=4, successes=3,
                    cycle_log_sum=0.8, cycle_n=2)
    slower = Triple(slower.id, Context(trigger="bottleneck", pipe="MTE2", category="elementwise"),
                    slower.semantics, slower.executable, slower.provenance, slower.stats)
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        for t in (good, bad, other_scope, slower):
            kb.add(t)
        dry = distill(kb, dry_run=True)
        assert {(e["action"], tuple(e["triples"])) for e in dry.applied} == {
            (PRUNE, (bad.id,)), (PRUNE, (slower.id,)), (MERGE, (good.id, other_scope.id))}
        assert kb.history() == [] and len(kb.triples()) == 4  # a dry run changes nothing
        report = distill(kb)
        assert len(report.applied) == 3 and not report.rejected
        assert {t.id for t in kb.triples()} == {good.id}
        kept = kb.get(good.id)
        assert (kept.stats.applications, kept.stats.successes) == (13, 12)
        assert "global.npu.l0b" in kept.semantics.text and "65536" in kept.semantics.text  # the fact stays stated
        assert kb.get(other_scope.id).stats.merged_into == good.id
        assert distill(kb).applied == []  # nothing left to decide
        # every change is recorded and reversible
        merge = next(h for h in kb.history() if h["action"] == MERGE)
        revert(kb, merge["seq"])
        assert {t.id for t in kb.triples()} == {good.id, other_scope.id}
        assert kb.get(good.id).stats.applications == 10
        with pytest.raises(ValueError, match="reverted already"):
            revert(kb, merge["seq"])


def test_conflicting_fixes_keep_the_one_that_works():
    a = triple(code="UNIT_SCOPE", rewrite="rescope", params={"scope": "global.npu.l1", "to": UB},
               fields={"scope": "global.npu.l1"}, n=1, applications=8, successes=8)
    b = triple(code="UNIT_SCOPE", rewrite="rescope", params={"scope": "global.npu.l1", "to": "global.npu.l0c"},
               fields={"scope": "global.npu.l1"}, n=2, applications=8, successes=3)
    decisions = deterministic([a, b])
    assert [(d.action, d.triples) for d in decisions] == [(PRUNE, (b.id,))]
    assert "conflicts with" in decisions[0].reason


def test_unverified_knowledge_gets_a_budget_then_goes():
    imported = triple(verified=False, applications=2, successes=0)
    assert deterministic([imported]) == []  # still within its tries
    spent = triple(verified=False, applications=3, successes=0)
    assert [d.action for d in deterministic([spent])] == [PRUNE]


def test_a_record_that_stopped_being_true_goes_after_a_few_failures(tmp_path):
    forged = triple(applications=2, successes=2)  # a record that says it works; it does not
    proven = triple(n=1, applications=12, successes=10)  # a real record survives a bad patch
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(forged), kb.add(proven)
        for n in range(1, FAIL_STREAK + 1):
            assert judge(kb, forged.id) is None  # not yet: a failure or two is not a verdict
            log(kb, forged, False), log(kb, proven, False)
        entry = judge(kb, forged.id)
        assert entry and entry["action"] == PRUNE and entry["arbiter"] == "evidence"
        assert "failed its last 3" in entry["reason"]
        assert judge(kb, proven.id) is None and kb.get(proven.id).stats.failed_in_a_row == FAIL_STREAK
        # a long record is not overturned by a few failures, but a streak it makes unlikely ends it
        for n in range(FAIL_STREAK + 1, 9):
            log(kb, proven, False)
            if judge(kb, proven.id) is not None:
                break
        assert n == 5 and "no longer true" in kb.history()[-1]["reason"]
        revert(kb, kb.history()[-1]["seq"])
        assert [t.id for t in kb.triples()] == [proven.id]
        log(kb, proven, True)
        assert kb.get(proven.id).stats.failed_in_a_row == 0
        revert(kb, entry["seq"])  # an evidence prune is recorded and reversible like any other
        assert kb.get(forged.id).stats.status == "active"


def test_decisions_against_the_evidence_are_rejected(tmp_path):
    good = triple(n=1, applications=10, successes=9)
    other = triple(code="UNIT_SCOPE", rewrite="rescope", params={"scope": "global.npu.l1", "to": UB},
                   fields={"scope": "global.npu.l1"}, n=2, applications=5, successes=5)
    by_id = {good.id: good, other.id: other}
    assert "does not support" in check(Decision(PRUNE, (good.id,), "I dislike it"), by_id)
    assert "different things" in check(Decision(MERGE, (good.id, other.id), "same"), by_id)
    assert "does not have" in check(Decision(PRUNE, ("tnope",), "gone"), by_id)
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(good), kb.add(other)
        report = apply(kb, [Decision(PRUNE, (good.id,), "wrong")], arbiter="llm")
        assert report.applied == [] and report.rejected and len(kb.triples()) == 2



@pytest.mark.parametrize("kind", ["right", "wrong", "malformed", "contradicting", "dead"])
def test_the_llm_arbiter_is_checked_against_the_evidence(tmp_path, serve, kind):  # noqa: F811
    good = triple(n=1, applications=10, successes=9)
    same = triple(params={"scope": "global.npu.l0b", "capacity": 65536},
                  fields={"scope": "global.npu.l0b", "capacity": "65536"}, n=2, applications=3, successes=3)
    failing = triple(code="UNIT_SCOPE", rewrite="rescope", params={"scope": "global.npu.l1", "to": "global.npu.l0a"},
                     fields={"scope": "global.npu.l1"}, n=3, applications=6, successes=0)
    answers = {
        "right": {"decisions": [
            {"action": "merge", "keep": good.id, "absorb": [same.id],
             "semantics": f"{UB} holds 196608 bytes and global.npu.l0b 65536: fit tiles to what the device reports."},
            {"action": "prune", "id": failing.id, "reason": "never works"}]},
        # wrong: prune the triple that works, merge triples that do different things, invent a number
        "wrong": {"decisions": [
            {"action": "prune", "id": good.id, "reason": "looks odd"},
            {"action": "merge", "keep": good.id, "absorb": [failing.id], "semantics": "UB holds 999999 bytes."}]},
        "malformed": "Sure! I would merge them. {not json",
        "contradicting": {"decisions": [
            {"action": "merge", "keep": same.id, "absorb": [good.id]},  # keeps the worse record
            {"action": "prune", "id": same.id}, {"action": "teleport", "id": good.id}]},
        "dead": 500,
    }
    answer = answers[kind]
    endpoint = serve(json.dumps(answer) if isinstance(answer, dict) else answer)
    llm = client_for(endpoint, retries=0)
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        for t in (good, same, failing):
            kb.add(t)
        report = distill(kb, llm=llm)
        active = {t.id for t in kb.triples()}
        if kind == "right":
            assert active == {good.id}
            assert "65536" in kb.get(good.id).semantics.text and not report.rejected
            assert {h["arbiter"] for h in kb.history()} == {"llm"}
        else:  # nothing the evidence does not support took effect
            assert good.id in active and report.rejected
            assert all(h["action"] != PRUNE or h["triples"] != [good.id] for h in kb.history())
            if kind == "wrong":
                assert any("never reported" in r["rejected"] or "different things" in r["rejected"]
                           for r in report.rejected)
    assert endpoint.requests  # the arbiter was asked


def test_the_effect_model_learns_ranks_and_is_stored_as_xgboost_json(tmp_path):
    good = triple(n=1)
    bad = triple(params={"scope": UB, "capacity": 1}, n=2)
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(good), kb.add(bad)
        for i in range(30):  # the good one works on ub overflows, the bad one does not
            log(kb, good, fixed=i % 10 != 0, features={f"fp:{UB}": 17.0 + i % 3, "code:SCOPE_OVERFLOW": 1.0})
            log(kb, bad, fixed=i % 10 == 0, features={f"fp:{UB}": 17.0 + i % 3, "code:SCOPE_OVERFLOW": 1.0})
        kn = Knowledge(kb)
        model = kn.retrain(force=True)
        assert model is not None and model.ready
        quality = model.meta["quality"]
        assert quality["held_back"] == 12 and quality["accuracy"] >= quality["majority_accuracy"]
        raw, meta = kb.model(effect.FIX_MODEL)
        assert json.loads(raw)["learner"] and meta["format"] == "xgboost-json"  # XGBoost's JSON, no pickle
        p, _ = effect.load(kb).predict([effect.row(good, {f"fp:{UB}": 17.0}, {}, (27, 30)),
                                        effect.row(bad, {f"fp:{UB}": 17.0}, {}, (3, 30))])
        assert p[0] > 0.7 and p[1] < 0.3
        assert kb.stats()["effect_model"]["quality"]["held_back"] == 12


def test_ranking_with_the_effect_model_is_measured_against_the_fusion_alone(tmp_path):
    fit = triple(n=1)
    deeper = triple(rewrite="tile_deeper", n=2)
    with KnowledgeStore(tmp_path / "kb.sqlite") as kb:
        kb.add(fit), kb.add(deeper)
        for i in range(60):  # the fusion always ranks fit first; which one works depends on the context
            features = {f"fp:{UB}": 17.0 + i % 2, "work": float(i)}
            for t, fused in ((fit, 0.03), (deeper, 0.02)):
                works = (t is fit) == (i % 2 == 0)
                kb.record(Application(t.id, "run", "w", "davinci-like", i, applied=True, fixed=works, correct=works,
                                      features=features, scores={"fused": fused}))
        quality = Knowledge(kb).retrain(force=True).meta["quality"]
        # each held-back context had one fix and one failure: the fusion's first fixed half of them
        assert quality["contexts"] == 12 and quality["top_fixed_fused"] == 6
        assert quality["top_fixed_model"] >= 10


def test_kb_cli_distill_history_revert(tmp_path, capsys):
    path = tmp_path / "kb.sqlite"
    with KnowledgeStore(path) as kb:
        kb.add(triple(n=1, applications=10, successes=9))
        kb.add(triple(code="UNIT_SCOPE", rewrite="rescope", params={"scope": "global.npu.l1", "to": "x"},
                      fields={"scope": "global.npu.l1"}, n=2, applications=5, successes=0))
    assert main(["kb", "distill", "--kb", str(path), "--dry-run"]) == 0
    assert "would apply 1 decision" in capsys.readouterr().out
    assert main(["kb", "distill", "--kb", str(path)]) == 0
    assert "#1 prune" in capsys.readouterr().out
    assert main(["kb", "history", "--kb", str(path)]) == 0
    assert "fixed its trigger 0 of 5 times" in capsys.readouterr().out
    assert main(["kb", "revert", "1", "--kb", str(path)]) == 0
    with KnowledgeStore(path) as kb:
        assert len(kb.triples()) == 2
    assert main(["kb", "revert", "7", "--kb", str(path)]) == 2


def test_two_fixes_that_both_work_are_alternatives_not_a_conflict():
    fit = triple(n=1, applications=90, successes=86)
    columns = triple(rewrite="tile_columns", params={"factor": 64}, n=2, applications=13, successes=7)
    assert deterministic([fit, columns]) == []
