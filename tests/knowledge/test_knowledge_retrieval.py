"""2D retrieval: each axis ranks on its own, RRF fuses, the bottleneck weighs the query."""

import pytest
from hawk.ir.features import cosine, with_bottleneck
from hawk.knowledge import Context, Executable, Provenance, Semantics, Triple
from hawk.knowledge.retrieval import SEMANTIC, SYNTACTIC, RetrievalConfig, retrieve


def triple(n, ctx: Context, verified=True, status="active") -> Triple:
    t = Triple.new(ctx, Semantics(f"rationale {n}"), Executable("retile", {"factor": 2}),
                   Provenance(run="r", workload=f"w{n}", target="t", iteration=n, source="explore"))
    return t.with_stats(verified=verified, status=status)


def fault(code, scope, category="elementwise", tokens=(), **features):
    return Context(trigger="fault", code=code, fields={"scope": scope}, category=category,
                   features=features or {"unit:vector": 1.0}, tokens=tuple(tokens))


def bottleneck(pipe, busy, **features):
    return Context(trigger="bottleneck", pipe=pipe, profile=busy, features=features)


@pytest.fixture
def pool():
    return [
        triple(0, fault("SCOPE_OVERFLOW", "ub", tokens=["split", "cache_read.storage_scope=ub"])),
        triple(1, fault("ILLEGAL_PATH", "l0a", category="matmul", tokens=["tensorize"], **{"unit:intrin": 1.0})),
        triple(2, fault("UNIT_SCOPE", "l1", tokens=["vectorize"])),
        triple(3, bottleneck("MTE2", {"MTE2": 0.9, "VECTOR": 0.2}, **{"unit:copy": 0.5, "unit:vector": 0.5})),
        triple(4, bottleneck("VECTOR", {"MTE2": 0.3, "VECTOR": 0.95}, **{"unit:copy": 0.5, "unit:vector": 0.5})),
    ]


def test_the_matching_fault_comes_first(pool):
    q = fault("ILLEGAL_PATH", "l0a", category="matmul", tokens=["tensorize"], **{"unit:intrin": 1.0})
    hits = retrieve(pool, q)
    assert hits[0].triple is pool[1]
    assert set(hits[0].ranks) == {SYNTACTIC, SEMANTIC} and hits[0].ranks[SYNTACTIC] == 1
    assert len(retrieve(pool, q, RetrievalConfig(top_k=2))) == 2


def test_each_axis_ranks_on_its_own(pool):
    q = fault("SCOPE_OVERFLOW", "ub", tokens=["split"])
    syn = retrieve(pool, q, RetrievalConfig(axes=(SYNTACTIC,)))
    sem = retrieve(pool, q, RetrievalConfig(axes=(SEMANTIC,)))
    assert syn[0].triple is pool[0] and set(syn[0].ranks) == {SYNTACTIC}
    assert sem[0].triple is pool[0] and set(sem[0].ranks) == {SEMANTIC}
    assert retrieve(pool, q, RetrievalConfig(axes=())) == []


def test_the_bottleneck_pipe_weighs_the_query():
    # A looks like the query's kernel but was bound by MTE2; B is another kernel bound by VECTOR
    a = triple(0, bottleneck("MTE2", {"MTE2": 0.92, "VECTOR": 0.9}, **{"unit:copy": 0.8, "unit:vector": 0.2}))
    b = triple(1, bottleneck("VECTOR", {"MTE2": 0.1, "VECTOR": 0.95}, **{"unit:vector": 1.0, "intensity": 3.0}))
    q = bottleneck("VECTOR", {"MTE2": 0.9, "VECTOR": 0.92}, **{"unit:copy": 0.8, "unit:vector": 0.2})
    flat = retrieve([a, b], q, RetrievalConfig(axes=(SEMANTIC,), bottleneck_weighting=False))
    weighted = retrieve([a, b], q, RetrievalConfig(axes=(SEMANTIC,)))
    assert flat[0].triple is a and weighted[0].triple is b


def test_pruned_triples_are_never_retrieved_and_unverified_count_less(pool):
    q = fault("SCOPE_OVERFLOW", "ub", tokens=["split"])
    pruned = [pool[0].with_stats(status="pruned")] + pool[1:]
    assert all(h.triple.id != pool[0].id for h in retrieve(pruned, q))
    verified = retrieve(pool, q)[0].score
    doubtful = retrieve([pool[0].with_stats(verified=False)] + pool[1:], q)
    assert next(h.score for h in doubtful if h.triple.id == pool[0].id) == pytest.approx(verified / 2)


def test_feature_helpers():
    assert cosine({"a": 1.0}, {"a": 2.0}) == pytest.approx(1.0)
    assert cosine({"a": 1.0}, {"b": 1.0}) == 0.0 and cosine({}, {"a": 1.0}) == 0.0
    assert with_bottleneck({"x": 1.0}, "MTE2", {"MTE2": 0.5}) == {"x": 1.0, "bottleneck:MTE2": 1.0,
                                                                   "busy:MTE2": 0.5}
