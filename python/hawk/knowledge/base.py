"""What the loop asks of knowledge: what to tell the proposer, which repairs to try, and
what to learn from how they went.

- ``prompt_items(query)``: the top-K verified triples for the situation, rendered as the
  prompt carries them (the only form a proposer ever sees);
- ``plan(candidate, ...)``: repairs for a faulting or slow candidate -- retrieved triples
  whose trigger matches, their parameters bound to the new fault's fields, then the
  explorer's rewrites -- each a complete program the loop runs like any other;
- ``observe(repair, result)``: whether the repair removed the trigger (the fault is gone,
  or the kernel is faster) with a correct result; a retrieved triple gets the application
  logged, an explored rewrite that worked becomes a new triple (or evidence for the same
  one found before).

Run-time synthesis is offline by default: the semantics are written from the fault's or
profile's own numbers. Every triple records the run, workload, target, iteration and the
programs before and after.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass, field, replace

from ..ir.features import kernel_features
from ..ir.graph import kernel_fingerprint, program_tokens
from . import effect
from .distill import UNVERIFIED_BUDGET, Report, judge
from .effect import EffectModel
from .explore import (
    REFUSED,
    bind,
    explore_bottleneck,
    explore_fault,
    fault_fields,
    refusal,
)
from .render import for_prompt
from .retrieval import Hit, RetrievalConfig, retrieve, semantic_vector
from .rewrite import Env, apply_rewrite
from .store import Application, KnowledgeStore
from .triple import (
    BOTTLENECK,
    FASTER,
    FAULT,
    FAULT_GONE,
    Context,
    Executable,
    Provenance,
    Semantics,
    Triple,
)

MAX_DEPTH = 4  # a repair of a repair of ...: one fault after another on the way to a legal kernel
MAX_FROM_KNOWLEDGE = 2
MAX_EXPLORE = 3  # rewrites tried per fault or per new best kernel
DISTILL_EVERY = 20  # applications between rounds of distillation during tuning
REPAIRS_IN_A_ROW = 2  # then the proposer's turn: repairs must not starve the search they serve
IDENTITY_FIELDS = ("scope", "src", "dst", "unit")


def fault_identity(fault: dict) -> tuple:
    f = fault_fields(fault)
    return (fault.get("code"),) + tuple(f.get(k, "") for k in IDENTITY_FIELDS)


@dataclass
class Repair:
    """A rewritten program to run, and why."""

    text: str
    rewrite: str
    params: dict
    origin: str  # "knowledge" or "explore"
    before: object  # the Candidate it repairs
    fault: dict | None  # the fault it addresses (None: the bottleneck)
    depth: int
    triple_id: str = ""
    features: dict = field(default_factory=dict)  # the query's semantic vector when it was retrieved
    scores: dict = field(default_factory=dict)  # its retrieval scores then
    trial: bool = False  # an unverified triple's try: followed further only if it works


@dataclass
class KnowledgeOptions:
    learn: bool = True  # store new triples and evidence
    explore: bool = True  # try the explorer's rewrites where knowledge has none
    repair: bool = True  # apply executables directly as repairs
    executable: bool = True  # prompts carry the executable part (False: free-text knowledge only)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    effect_model: bool = True  # rank retrieval with the effect model (once trained) and keep it trained
    distill: bool = True  # judge by the evidence: unverified knowledge on trial, prune/merge/resolve


class Knowledge:
    """Knowledge as one tuning run uses it (``store`` is shared with other runs)."""

    def __init__(self, store: KnowledgeStore, *, run: str | None = None, options: KnowledgeOptions | None = None,
                 writer=None, arbiter=None):
        """``writer`` (an ``hawk.propose.llm.LLMClient``) writes the semantics of new triples;
        without one, or when it fails, they are written from the device's own numbers.
        ``arbiter`` (an LLM client) arbitrates distillation; without one the evidence alone
        decides. Either way every decision is checked against the evidence."""
        self.store = store
        self.arbiter = arbiter
        self.distilled_at = 0  # applications in the store at the last distillation
        self.distillations: list = []
        self.run = run or uuid.uuid4().hex[:12]
        self.options = options or KnowledgeOptions()
        self.writer = writer
        self.retrievals = 0
        self.learned: list[str] = []
        self._triples: list[Triple] | None = None
        self._effect: EffectModel | None = None
        self._effect_loaded = False

    # --- retrieval ----------------------------------------------------------------------------

    def triples(self) -> list[Triple]:
        if self._triples is None:
            self._triples = self.store.triples()
        return self._triples

    def query(self, workload, candidate=None) -> Context:
        """The context of now: the candidate's first fault or its bottleneck, or the workload."""
        module = getattr(candidate, "module", None)
        if module is None:
            module = workload.module()
        text = getattr(candidate, "text", None) or ""
        tokens, graph = kernel_fingerprint(module)
        base = {"category": workload.category, "features": kernel_features(module),
                    "tokens": tuple(program_tokens(text)) + tuple(tokens), "graph_hash": graph}
        f = first_fault(candidate) if candidate is not None else None
        if f is not None:
            return Context(trigger=FAULT, code=f.get("code", ""), pipe=f.get("pipe", ""),
                           fields=fault_fields(f), **base)
        if candidate is not None and getattr(candidate, "bottleneck", ""):
            return Context(trigger=BOTTLENECK, pipe=candidate.bottleneck, profile=dict(candidate.busy), **base)
        return Context(trigger="start", **base)

    def hits(self, query: Context) -> list[Hit]:
        """The top K for ``query``: the 2D fusion's candidates (three times K), reranked by the
        effect model's chance that each fixes this context, once there is a model that has
        shown it predicts (``EffectModel.trusted``)."""
        self.retrievals += 1
        config = self.options.retrieval
        model = self.effect() if self.options.effect_model else None
        if model is None or not model.trusted:
            return retrieve(self.triples(), query, config)
        pool = retrieve(self.triples(), query, replace(config, top_k=config.top_k * 3))
        vector = semantic_vector(query)
        rows = [effect.row(h.triple, vector, _scores(h), (h.triple.stats.successes, h.triple.stats.applications))
                for h in pool]
        chance, _ = model.predict(rows)
        ranked = [replace(h, score=effect.reranked(h.fused, p)) for h, p in zip(pool, chance, strict=True)]
        ranked.sort(key=lambda h: (-h.score, h.triple.id))
        return ranked[: config.top_k]

    def maybe_distill(self, *, applied: int | None = None):
        """A round of distillation once ``DISTILL_EVERY`` applications arrived since the last
        (``applied``: the store's count of applications, when the caller has it)."""
        from .distill import distill

        n = self.store.application_count() if applied is None else applied
        if n - self.distilled_at < DISTILL_EVERY:
            return None
        self.distilled_at = n
        report = distill(self.store, llm=self.arbiter)
        self.distillations.append(report)
        self._triples = None
        return report

    def effect(self) -> EffectModel | None:
        if not self._effect_loaded:
            self._effect, self._effect_loaded = effect.load(self.store), True
        return self._effect

    def retrain(self, *, force: bool = False, applied: int | None = None) -> EffectModel | None:
        """Train the effect model further when enough new evidence arrived (``force``: now;
        ``applied``: the store's count of applications, when the caller has it)."""
        n = self.store.application_count() if applied is None else applied
        current = self.effect()
        last = (current.meta.get("applications", 0) if current is not None else 0)
        if n < effect.MIN_APPLICATIONS or (not force and n - last < effect.RETRAIN_EVERY):
            return current
        model = effect.train(self.store.applications(), {t.id: t for t in self.store.triples(status=None)}, current)
        if model is not None:
            effect.save(self.store, model)
            self._effect = model
        return self._effect

    def retrieve(self, query: Context) -> list[Triple]:
        return [h.triple for h in self.hits(query)]

    def prompt_items(self, query: Context) -> list[str]:
        """Only knowledge that has worked here reaches a prompt: what a proposer does with an
        item leaves no record to judge it by, so unverified triples are tried as repairs
        (whose effects are logged) until they earn their place."""
        items = []
        for t in self.retrieve(query):
            if not t.stats.verified and self.options.distill:
                continue
            text = for_prompt(t)
            if not self.options.executable:  # the ablation: the rationale alone
                text = text.split("\n  fix:")[0]
            items.append(text)
        return items

    # --- repairs -------------------------------------------------------------------------------

    def plan(self, candidate, workload, view, *, depth: int, tried: set) -> list[Repair]:
        """Repairs for a candidate that faulted (its first fault) or is correct (its bottleneck).

        ``tried`` (kept by the caller for one workload) also remembers the programs run and
        the faults explored: no program runs twice, the same fault is explored once, knowledge
        is tried every time."""
        if depth >= MAX_DEPTH or not candidate.text or candidate.kind != "program":
            return []
        env = Env(workload, view)
        fault = first_fault(candidate)
        if fault is None and not candidate.is_result:
            return []
        out: list[Repair] = []

        def add(rewrite, params, origin, triple_id="", scores=None):
            key = (candidate.text, rewrite, tuple(sorted(params.items())))
            if key in tried:
                return False
            tried.add(key)
            text = apply_rewrite(candidate.text, rewrite, params, env)
            if text is None or ("text", text) in tried:  # a program already run tells nothing new
                return False
            out.append(Repair(text, rewrite, params, origin, candidate, fault, depth + 1, triple_id,
                              features=features, scores=scores or {}))
            return True

        query = self.query(workload, candidate)
        features = semantic_vector(query)
        if self.options.repair:
            def matches(t: Triple) -> bool:
                if t.context.trigger == FAULT:
                    return fault is not None and t.context.code == fault.get("code")
                return t.context.trigger == BOTTLENECK and fault is None and t.context.pipe == candidate.bottleneck

            def apply(hit: Hit) -> bool:
                t = hit.triple
                return add(t.executable.rewrite, bind(t.executable.rewrite, t.executable.params, fault), "knowledge",
                           t.id, _scores(hit))

            used, judged = 0, self.options.distill
            for hit in self.hits(query):
                proven = hit.triple.stats.verified or not judged
                if used < MAX_FROM_KNOWLEDGE and proven and matches(hit.triple) and apply(hit):
                    used += 1
            # unverified knowledge ranks below what has worked, so it gets a trial of its own:
            # one per plan, first (once a proven fix has worked the alternatives are moot), a
            # few per triple ever; then it is promoted or pruned by what it did
            on_trial = [t for t in self.triples() if not t.stats.verified and
                        t.stats.applications < UNVERIFIED_BUDGET and matches(t)] if judged else []
            for hit in retrieve(on_trial, query, self.options.retrieval):
                if apply(hit):
                    out[-1].trial = True
                    out.insert(0, out.pop())
                    break
        # a fault is explored once per depth of a repair chain (a chain may meet it again, smaller)
        identity = ("explored", depth) + (fault_identity(fault) if fault is not None else ("bottleneck", candidate.text))
        if self.options.explore and identity not in tried:
            tried.add(identity)
            options = explore_fault(fault, view) if fault is not None else explore_bottleneck(candidate.text, view)
            explored = 0
            for rewrite, params in options:
                if explored >= MAX_EXPLORE:
                    break
                explored += add(rewrite, params, "explore")
        return out

    def explain(self, before, after, workload, view) -> Repair | None:
        """The rewrite that turns ``before`` (a faulting candidate) into the same kernel as
        ``after`` (the proposer's next program, which no longer has the fault), if one does:
        an author's fix, learned as knowledge in the rewrite language."""
        from ..ir.safe_json import ir_key

        records = getattr(before, "fault_records", ())
        if not records or after.module is None or not before.text or before.kind != "program":
            return None
        env = Env(workload, view)
        target = ir_key(after.module)
        for rewrite, params in explore_fault(records[0], view):
            text = apply_rewrite(before.text, rewrite, params, env)
            if text is not None and ir_key(env.module(text)) == target:
                return Repair(after.text, rewrite, params, "proposer", before, records[0], 1)
        return None

    def observe(self, repair: Repair, result, *, workload, target: str, proposer: str) -> Triple | None:
        """Judge a repair by its result; log the evidence, learn a triple from a new fix."""
        fixed = worked(repair, result)
        before = repair.before
        cycles_before = getattr(before, "cycles", None)
        cycles_after = result.cycles if result.is_result else None
        if repair.origin == "knowledge" and self.options.learn:
            source = self.store.record(Application(
                repair.triple_id, self.run, workload.name, target, result.iteration, applied=True, fixed=fixed,
                correct=result.correct, cycles_before=cycles_before if repair.fault is None else None,
                cycles_after=cycles_after if repair.fault is None else None,
                new_faults=tuple(result.faults), detail=result.message[:500], features=repair.features,
                scores=repair.scores))
            self._triples = None
            applied = self.store.application_count()
            if self.options.effect_model:
                self.retrain(applied=applied)
            if self.options.distill and source is not None:
                judged = judge(self.store, source)
                if judged is not None:
                    self.distillations.append(Report(applied=[judged]))
            if self.options.distill:
                self.maybe_distill(applied=applied)
            if source is None or not fixed or source.executable.params == repair.params:
                return None
            # it worked bound to new fields (another scope, another capacity): that is a fact
            # of its own, worth stating in prompts as such
        if not fixed or not self.options.learn:
            return None
        triple = synthesize(repair, result, run=self.run, workload=workload, target=target, proposer=proposer)
        if self.writer is not None:
            triple = replace(triple, semantics=write_semantics(self.writer, triple))
        same = next((t for t in self.triples() if same_knowledge(t, triple)), None)
        if same is not None:  # found again: evidence for the triple we have
            self.store.record(Application(same.id, self.run, workload.name, target, result.iteration, applied=True,
                                          fixed=True, correct=True,
                                          cycles_before=cycles_before if repair.fault is None else None,
                                          cycles_after=cycles_after if repair.fault is None else None))
            self._triples = None
            return None
        if self.store.add(triple):
            self.learned.append(triple.id)
        self._triples = None
        return triple


def _scores(hit: Hit) -> dict[str, float]:
    return {"fused": hit.fused, **{f"rank:{axis}": float(r) for axis, r in hit.ranks.items()}}


def first_fault(candidate) -> dict | None:
    """What a repair of this candidate addresses: its first device fault, or the TVM refusal
    that stopped it, when a rewrite can answer that refusal."""
    records = getattr(candidate, "fault_records", ())
    if records:
        return records[0]
    if getattr(candidate, "outcome", "") == "admission":
        return refusal(getattr(candidate, "admission", "") or "")
    return None


def worked(repair: Repair, result) -> bool:
    """The trigger is gone and the kernel got closer to a result: for a fault, that fault is
    no longer reported and either the kernel now runs correctly or fewer faults remain (one
    fault traded for another is not a fix); for a bottleneck, a correct kernel with fewer
    cycles."""
    if repair.fault is None:
        before = getattr(repair.before, "cycles", None)
        return bool(result.is_result and before and result.cycles is not None and result.cycles < before)
    if repair.fault.get("code") == REFUSED:  # TVM takes the program now: what the device says is the next step
        return result.outcome not in ("admission", "signature", "no_proposal") and result.module is not None
    if result.outcome == "fault":
        ident = fault_identity(repair.fault)
        gone = all(fault_identity(f) != ident for f in result.fault_records)
        return gone and len(result.fault_records) < len(repair.before.fault_records)
    return result.is_result


def progressed(repair: Repair, result) -> bool:
    """Worth repairing further: a result; a faster kernel's rewrite that now faults (it
    changed what the kernel needs: the fault says what to fix); or the addressed fault is
    gone or moved (the same fault with other numbers: a burst that grew, a buffer that shrank)
    and no more faults remain than before (one fault traded for another is a step a chain
    may take; a fault left exactly in place, or more of them, is a dead end)."""
    if result.is_result or repair.fault is None:
        return result.is_result or bool(result.fault_records)
    if repair.fault.get("code") == REFUSED:
        return worked(repair, result)
    same = (fault_identity(repair.fault), repair.fault.get("observed"))
    return bool(result.fault_records) and all((fault_identity(f), f.get("observed")) != same
                                               for f in result.fault_records) \
        and len(result.fault_records) <= len(repair.before.fault_records)


def same_knowledge(a: Triple, b: Triple) -> bool:
    return (a.context.trigger, a.context.code, a.context.pipe if a.context.trigger == BOTTLENECK else "",
            a.executable.call()) == \
        (b.context.trigger, b.context.code, b.context.pipe if b.context.trigger == BOTTLENECK else "",
         b.executable.call())


def synthesize(repair: Repair, result, *, run: str, workload, target: str, proposer: str) -> Triple:
    before = repair.before
    ctx_features = kernel_features(before.module) if before.module is not None else {}
    tokens, graph = kernel_fingerprint(before.module) if before.module is not None else ([], "")
    base = {"category": workload.category, "features": ctx_features,
                "tokens": tuple(program_tokens(before.text or "")) + tuple(tokens), "graph_hash": graph}
    if repair.fault is not None:
        f = repair.fault
        fields = fault_fields(f)
        context = Context(trigger=FAULT, code=f.get("code", ""), pipe=f.get("pipe", ""), fields=fields, **base)
        raw = f.get("observed") or {}
        observed = {k: v for k, v in raw.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        semantics = Semantics(_fault_rationale(f, repair), observed)
        check = FAULT_GONE
    else:
        busy = dict(getattr(before, "busy", {}) or {})
        context = Context(trigger=BOTTLENECK, pipe=before.bottleneck, profile=busy, **base)
        observed = {"cycles_before": before.cycles, "cycles_after": result.cycles}
        semantics = Semantics(_bottleneck_rationale(before, result, repair), observed)
        check = FASTER
    executable = Executable(repair.rewrite, dict(repair.params), check, _diff(before.text or "", repair.text))
    provenance = Provenance(run=run, workload=workload.name, target=target, iteration=result.iteration,
                            source=repair.origin, proposer=proposer, before=before.text or "", after=repair.text,
                            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    triple = Triple.new(context, semantics, executable, provenance)
    cycles = {}
    if repair.fault is None and before.cycles and result.cycles:
        cycles = {"cycle_log_sum": math.log(result.cycles / before.cycles), "cycle_n": 1}
    return triple.with_stats(applications=1, successes=1, verified=True, **cycles)


def _fault_rationale(f: dict, repair: Repair) -> str:
    fields = fault_fields(f)
    code, p = f.get("code", ""), repair.params
    if repair.rewrite == "fit_tiles":
        return (f"{fields.get('scope')} holds {fields.get('capacity')} bytes (the kernel asked for "
                f"{fields.get('bytes')}); the tiles whose buffers live there must shrink until they fit.")
    if repair.rewrite == "feed":
        return (f"no DMA path from {fields.get('src')} to {fields.get('dst')}; data for {p['dst']} is staged in "
                f"{p['via']} on the way.")
    if repair.rewrite == "drain":
        return (f"no DMA path from {fields.get('src')} to {fields.get('dst')}; results in {p['src']} leave "
                f"through {p['via']}.")
    if repair.rewrite == "rescope":
        unit = fields.get("unit", f.get("pipe", "the unit"))
        return f"{code}: {unit} cannot work on buffers in {p['scope']}; they belong in {p['to']}."
    if repair.rewrite == "stage_outputs":
        return ("TVM refuses to place a block that writes a function output under another block's loop, or to "
                "move its buffer to another scope; it gets a loop nest of its own and writes through a cache.")
    detail = " ".join(f"{k}={v}" for k, v in sorted(fields.items()))
    return f"{code} ({detail}) went away with {repair.rewrite}."


def _bottleneck_rationale(before, result, repair: Repair) -> str:
    busy = getattr(before, "busy", {}) or {}
    frac = busy.get(before.bottleneck)
    share = f", {frac:.0%} busy" if frac is not None else ""
    return (f"the kernel was bound by pipe {before.bottleneck}{share}; {repair.rewrite} took it from "
            f"{before.cycles} to {result.cycles} cycles with the result still correct.")


def _diff(before: str, after: str) -> str:
    import difflib

    lines = [ln for ln in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0)
             if not ln.startswith(("---", "+++", "@@"))]
    return "\n".join(lines[:40])


ABLATIONS = ("none", "free-text", "syntactic", "semantic", "no-bottleneck", "no-distill", "no-effect-model")


def ablation_options(ablation: str = "none", *, learn: bool = True) -> KnowledgeOptions:
    """Knowledge as Hawk uses it, or with one part taken away (the ablations).

    ``free-text``: prompts carry the rationale only and no executable is applied as a repair
    (exploration still runs and still learns); ``syntactic``/``semantic``: retrieval on one
    axis; ``no-bottleneck``: the bottleneck pipe does not weigh the query; ``no-distill``: no
    distillation and no effect model (the store keeps everything, retrieval ranks by the 2D
    fusion and the raw record alone, unverified knowledge reaches prompts like any other and
    gets no trials); ``no-effect-model``: distillation, but retrieval ranked
    without the effect model."""
    from .retrieval import SEMANTIC, SYNTACTIC

    if ablation not in ABLATIONS:
        raise ValueError(f"unknown ablation {ablation!r}; choose from {', '.join(ABLATIONS)}")
    retrieval = RetrievalConfig(
        axes=(SYNTACTIC,) if ablation == "syntactic" else (SEMANTIC,) if ablation == "semantic"
        else (SYNTACTIC, SEMANTIC),
        bottleneck_weighting=ablation != "no-bottleneck")
    free, keep_all = ablation == "free-text", ablation == "no-distill"
    return KnowledgeOptions(learn=learn, repair=not free, executable=not free, retrieval=retrieval,
                            effect_model=not keep_all and ablation != "no-effect-model", distill=not keep_all)


SEMANTICS_PROMPT = """You explain NPU hardware behaviour to kernel programmers. In one or two sentences,
state the hardware rule that this fix reveals, with the numbers the device reported. No code."""
MAX_SEMANTICS = 600


def write_semantics(writer, triple: Triple) -> Semantics:
    """The rationale in an LLM's words, kept only if it is plain, short text; the template's
    otherwise. It carries no authority: the triple is verified by having worked, not by this."""
    c, e = triple.context, triple.executable
    trigger = f"fault {c.code} ({' '.join(f'{k}={v}' for k, v in sorted(c.fields.items()))})" \
        if c.trigger == FAULT else f"bottleneck pipe {c.pipe}"
    user = (f"Trigger: {trigger}\nFix that worked: {e.call()}\nLines it changed:\n{e.example}\n"
            f"Draft explanation: {triple.semantics.text}")
    reply = writer.complete([{"role": "system", "content": SEMANTICS_PROMPT}, {"role": "user", "content": user}])
    text = " ".join((reply.text or "").split()) if not reply.error else ""
    if not text or len(text) > MAX_SEMANTICS or not text.isprintable() or "```" in text:
        return triple.semantics
    return Semantics(text, dict(triple.semantics.observed))
