"""Bottleneck-aware 2D retrieval: a syntactic and a hardware-semantic axis, fused by RRF.

- syntactic: BM25 (bm25s) over each triple's context tokens -- the trigger (fault code and
  fields, or bottleneck pipe), operator category, normalised program tokens and the WL
  subgraph hashes of the kernel's loop/dataflow graph;
- hardware-semantic: cosine similarity of IR feature vectors (``hawk.ir.features``) with
  the trigger and the profile's busy pipes as dimensions; when the query comes from a
  profile, the bottleneck pipe's dimensions weigh more (bottleneck-aware).

Each axis ranks on its own; reciprocal rank fusion (1 / (60 + rank)) merges them and the
top K (6) are returned, each weighted by its evidence: the smoothed success rate of its
applications, halved for a triple that has not worked here yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir.features import cosine
from .triple import ACTIVE, Context, Triple

TOP_K = 6
RRF_K = 60
SYNTACTIC, SEMANTIC = "syntactic", "semantic"
BOTTLENECK_WEIGHT = 3.0
TRIGGER_WEIGHT = 3.0
UNVERIFIED_WEIGHT = 0.5


@dataclass(frozen=True)
class RetrievalConfig:
    axes: tuple[str, ...] = (SYNTACTIC, SEMANTIC)
    bottleneck_weighting: bool = True
    top_k: int = TOP_K


@dataclass(frozen=True)
class Hit:
    triple: Triple
    score: float
    ranks: dict[str, int] = field(default_factory=dict)  # axis -> 1-based rank (absent: unranked)
    fused: float = 0.0  # the 2D fusion's score weighted by the record, before any effect model


def context_tokens(ctx: Context) -> list[str]:
    """The BM25 document of a context (or query)."""
    out = [f"trigger={ctx.trigger}"]
    if ctx.code:
        out += [f"code={ctx.code}"] * 3  # the trigger matters most
    if ctx.pipe:
        out.append(f"pipe={ctx.pipe}")
    out += [f"{k}={v}" for k, v in sorted(ctx.fields.items()) if not v.isdigit()]
    if ctx.category:
        out.append(f"category={ctx.category}")
    if ctx.graph_hash:
        out.append(f"graph={ctx.graph_hash}")
    return out + list(ctx.tokens)


def semantic_vector(ctx: Context) -> dict[str, float]:
    vec = dict(ctx.features)
    if ctx.code:
        vec[f"code:{ctx.code}"] = 1.0
    if ctx.trigger == "bottleneck" and ctx.pipe:
        vec[f"bottleneck:{ctx.pipe}"] = 1.0
    for pipe, frac in ctx.profile.items():
        vec[f"busy:{pipe}"] = frac
    if ctx.category:
        vec[f"category:{ctx.category}"] = 1.0
    return vec


def _weights(query: Context, config: RetrievalConfig) -> dict[str, float]:
    w = {f"code:{query.code}": TRIGGER_WEIGHT} if query.code else {}
    if config.bottleneck_weighting and query.trigger == "bottleneck" and query.pipe:
        w[f"bottleneck:{query.pipe}"] = BOTTLENECK_WEIGHT
        w[f"busy:{query.pipe}"] = BOTTLENECK_WEIGHT
    return w


def retrieve(triples: list[Triple], query: Context, config: RetrievalConfig = RetrievalConfig()) -> list[Hit]:
    """The top K active triples for ``query``, best first."""
    pool = [t for t in triples if t.stats.status == ACTIVE]
    if not pool or not config.axes or config.top_k <= 0:
        return []
    rankings: dict[str, list[int]] = {}
    if SYNTACTIC in config.axes:
        rankings[SYNTACTIC] = _rank_bm25(pool, query)
    if SEMANTIC in config.axes:
        qv, w = semantic_vector(query), _weights(query, config)
        scores = [cosine(qv, semantic_vector(t.context), w) for t in pool]
        rankings[SEMANTIC] = [i for i in sorted(range(len(pool)), key=lambda i: -scores[i]) if scores[i] > 0]
    fused: dict[int, float] = {}
    ranks: dict[int, dict[str, int]] = {}
    for axis, order in rankings.items():
        for rank, i in enumerate(order, start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
            ranks.setdefault(i, {})[axis] = rank
    hits = [Hit(pool[i], s * evidence_weight(pool[i]), ranks[i], s * evidence_weight(pool[i]))
            for i, s in fused.items()]
    hits.sort(key=lambda h: (-h.score, h.triple.id))
    return hits[: config.top_k]


def evidence_weight(t: Triple) -> float:
    """How much a triple's record lets it count: its smoothed success rate (a triple that
    keeps failing sinks), halved while it has never worked here."""
    st = t.stats
    rate = (st.successes + 1) / (st.applications + 2)
    return rate * (1.0 if st.verified else UNVERIFIED_WEIGHT)


def _rank_bm25(pool: list[Triple], query: Context) -> list[int]:
    import bm25s

    docs = [context_tokens(t.context) for t in pool]
    vocabulary = set().union(*docs)
    q = [tok for tok in context_tokens(query) if tok in vocabulary]
    if not q:
        return []
    index = bm25s.BM25()
    index.index(docs, show_progress=False)
    scores = index.get_scores(q)
    return [i for i in sorted(range(len(pool)), key=lambda i: -float(scores[i])) if scores[i] > 0]
