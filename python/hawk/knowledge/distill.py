"""Distillation: keep what works, judged by its measured effects.

Three kinds of decision, each checked against the evidence before it takes effect:

- **prune** a triple whose applications say it fails (at most a quarter of at least
  ``MIN_EVIDENCE`` applications fixed their trigger) or slows kernels down (its measured
  cycle ratio above 1) or fails now (``FAIL_STREAK`` or more applications in a row, while
  working less often than not, or a streak its record makes less likely than ``UNLIKELY``:
  a record that stopped being true, a forged one, a fix whose parameters were changed
  under it); an unverified
  triple (imported, or written and never run) gets ``UNVERIFIED_BUDGET`` tries to work
  once, and is pruned if it never does. These rules also run on one triple right after each
  of its applications (``judge``), so a bad triple goes as soon as its evidence says so;
- **merge** triples with the same executable effect over overlapping contexts -- the same
  trigger and the same rewrite with the same parameters once the fault's own fields (which
  are bound at application time) are left out -- into the one with the best record, whose
  stats absorb theirs: one more general triple;
- **resolve** conflicts: triples for the same trigger with different fixes, where one fails
  more often than not and its record is clearly worse than the other's (``CONFLICT_MARGIN``
  lower success rate over at least ``MIN_EVIDENCE`` applications each): the worse one is
  pruned. Two fixes that both work are alternatives (one fits where the other cannot), not
  a conflict.

The arbiter that proposes decisions is deterministic by default (the rules above, from the
evidence alone). With an LLM endpoint, the LLM arbitrates: it sees the candidate groups and
their records and answers which to merge, which of two conflicting triples is right, and a
rewrite of a merged triple's semantics; every answer is checked against the evidence (a
merge only of triples with the same effect, a prune only of a triple the evidence does not
support, a rewrite only in plain words with the numbers the device reported), and what
fails the check is rejected, not applied. Every applied decision is recorded in the store's
history with the triples before and after, so ``revert`` puts them back.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field, replace

from .explore import BOUND_BY_FAULT
from .triple import ACTIVE, BOTTLENECK, MERGED, PRUNED, Semantics, Triple

MIN_EVIDENCE = 3
FAIL_RATE = 0.25
UNVERIFIED_BUDGET = 3
FAIL_STREAK = 3
UNLIKELY = 1e-3  # chance of a failure streak under a triple's record below which the record is stale
CONFLICT_MARGIN = 0.4
MAX_SEMANTICS = 600
PRUNE, MERGE, REWRITE, REVERT = "prune", "merge", "rewrite", "revert"


@dataclass
class Decision:
    action: str  # prune | merge | rewrite
    triples: tuple[str, ...]  # prune: (id,); merge: (keeper, *absorbed); rewrite: (id,)
    reason: str
    semantics: str = ""  # rewrite: the new text


@dataclass
class Report:
    applied: list[dict] = field(default_factory=list)  # history entries written
    rejected: list[dict] = field(default_factory=list)  # decisions the evidence check refused
    dry_run: bool = False

    def to_dict(self) -> dict:
        return {"applied": self.applied, "rejected": self.rejected, "dry_run": self.dry_run}


# --- the evidence -------------------------------------------------------------------------------


def merge_key(t: Triple) -> tuple:
    """What a triple does, apart from the fields a fault binds when it is applied."""
    bound = {name for (rewrite, name) in BOUND_BY_FAULT if rewrite == t.executable.rewrite}
    params = tuple(sorted((k, json.dumps(v)) for k, v in t.executable.params.items() if k not in bound))
    trigger = t.context.code if t.context.trigger != BOTTLENECK else f"bottleneck:{t.context.pipe}"
    return (t.context.trigger, trigger, t.executable.rewrite, params)


def conflict_key(t: Triple) -> tuple:
    """The situation a triple answers: its trigger and the fault's identity."""
    if t.context.trigger == BOTTLENECK:
        return (BOTTLENECK, t.context.pipe)
    f = t.context.fields
    return (t.context.trigger, t.context.code, f.get("scope", ""), f.get("src", ""), f.get("dst", ""),
            f.get("unit", ""))


def failing(t: Triple) -> str | None:
    """Why the evidence says this triple does harm, or None."""
    st = t.stats
    if not st.verified and st.applications >= UNVERIFIED_BUDGET and st.successes == 0:
        return f"unverified and failed all {st.applications} tries"
    if st.applications >= MIN_EVIDENCE and st.successes <= FAIL_RATE * st.applications:
        return f"fixed its trigger {st.successes} of {st.applications} times"
    streak = st.failed_in_a_row
    if streak >= FAIL_STREAK:
        before = (st.successes + 1) / (st.applications - streak + 2)  # its record before the streak
        if st.successes < st.applications / 2:
            return f"failed its last {streak} applications and worked {st.successes} of {st.applications} times"
        if (1 - before) ** streak < UNLIKELY:
            return (f"failed its last {streak} applications in a row, which its record before them "
                    f"({st.successes} of {st.applications - streak}) makes unlikely: it is no longer true")
    if st.cycle_n >= 2 and st.cycle_ratio is not None and st.cycle_ratio > 1.0:
        return f"made kernels slower: cycles x{st.cycle_ratio:.2f} over {st.cycle_n} measured applications"
    return None


def _rate(t: Triple) -> float:
    return (t.stats.successes + 1) / (t.stats.applications + 2)


def _better(a: Triple, b: Triple) -> bool:
    return (_rate(a), a.stats.successes, -a.stats.applications) > (_rate(b), b.stats.successes, -b.stats.applications)


# --- the deterministic arbiter ------------------------------------------------------------------


def deterministic(triples: list[Triple]) -> list[Decision]:
    """Decisions from the evidence alone."""
    active = [t for t in triples if t.stats.status == ACTIVE]
    out: list[Decision] = []
    pruned: set[str] = set()
    for t in active:
        why = failing(t)
        if why:
            out.append(Decision(PRUNE, (t.id,), why))
            pruned.add(t.id)
    live = [t for t in active if t.id not in pruned]
    for group in _groups(live, merge_key).values():
        if len(group) > 1:
            keeper = max(group, key=lambda t: (_rate(t), t.stats.successes))  # ties: the oldest (store order)
            rest = tuple(t.id for t in group if t.id != keeper.id)
            out.append(Decision(MERGE, (keeper.id, *rest),
                                f"same fix ({keeper.executable.rewrite}) for the same trigger in {len(group)} contexts"))
    merged = {i for d in out if d.action == MERGE for i in d.triples[1:]}
    live = [t for t in live if t.id not in merged]
    for group in _groups(live, conflict_key).values():
        judged = [t for t in group if t.stats.applications >= MIN_EVIDENCE]
        if len(judged) < 2:
            continue
        best = max(judged, key=_rate)
        for t in judged:  # two fixes that both work are alternatives, not a conflict
            if t is not best and _rate(best) - _rate(t) >= CONFLICT_MARGIN and t.stats.successes < t.stats.applications / 2:
                out.append(Decision(PRUNE, (t.id,), f"conflicts with {best.id}, which works more often "
                                                    f"({best.stats.successes}/{best.stats.applications} against "
                                                    f"{t.stats.successes}/{t.stats.applications})"))
    return out


def _groups(triples: list[Triple], key) -> dict:
    out: dict = {}
    for t in triples:
        out.setdefault(key(t), []).append(t)
    return out


# --- checking a decision against the evidence -----------------------------------------------------


def check(decision: Decision, by_id: dict[str, Triple]) -> str | None:
    """None when the evidence supports the decision, else why it does not."""
    ids = decision.triples
    if not ids or any(i not in by_id for i in ids):
        return "names a triple the store does not have"
    if any(by_id[i].stats.status != ACTIVE for i in ids):
        return "names a triple that is no longer active"
    if decision.action == PRUNE:
        if len(ids) != 1:
            return "a prune names one triple"
        t = by_id[ids[0]]
        if failing(t) is not None:
            return None
        rival = [o for o in by_id.values() if o.id != t.id and o.stats.status == ACTIVE
                 and conflict_key(o) == conflict_key(t) and o.stats.applications >= MIN_EVIDENCE]
        if t.stats.applications >= MIN_EVIDENCE and t.stats.successes < t.stats.applications / 2 \
                and any(_rate(o) - _rate(t) >= CONFLICT_MARGIN for o in rival):
            return None
        return (f"the evidence does not support it: {t.stats.successes} of {t.stats.applications} applications "
                "worked and no rival does clearly better")
    if decision.action == MERGE:
        if len(ids) < 2 or len(set(ids)) != len(ids):
            return "a merge names a keeper and at least one other triple"
        keys = {merge_key(by_id[i]) for i in ids}
        if len(keys) != 1:
            return "the triples do different things (different trigger, rewrite or parameters)"
        if not all(by_id[i].stats.verified for i in ids):
            return "only triples that have worked are merged"
        keeper = by_id[ids[0]]
        if any(_better(by_id[i], keeper) and by_id[i].stats.applications >= MIN_EVIDENCE for i in ids[1:]):
            return "the keeper's record is worse than one it would absorb"
        return None
    if decision.action == REWRITE:
        if len(ids) != 1:
            return "a rewrite names one triple"
        return _plain_semantics(decision.semantics, by_id[ids[0]])
    return f"unknown action {decision.action!r}"


def _plain_semantics(text: str, t: Triple) -> str | None:
    if not text or len(text) > MAX_SEMANTICS or not text.isprintable() or "```" in text:
        return "not plain, short text"
    known = {str(v) for v in t.semantics.observed.values()} | set(re.findall(r"\d+", t.semantics.text))
    known |= {str(v) for v in t.context.fields.values()}
    made_up = [n for n in re.findall(r"\d+", text) if n not in known and not any(n in k for k in known)]
    if made_up:
        return f"states numbers the device never reported ({', '.join(made_up[:3])})"
    return None


# --- applying -----------------------------------------------------------------------------------


def apply(store, decisions: list[Decision], *, arbiter: str, dry_run: bool = False) -> Report:
    """Check each decision against the evidence as it stands and apply the ones that pass,
    each recorded in the history (nothing is written on a dry run)."""
    report = Report(dry_run=dry_run)
    by_id = {t.id: t for t in store.triples(status=None)}
    for d in decisions:
        why = check(d, by_id)
        entry = {"action": d.action, "triples": list(d.triples), "reason": d.reason, "arbiter": arbiter}
        if why is not None:
            report.rejected.append({**entry, "rejected": why})
            continue
        before = [by_id[i] for i in d.triples]
        after = _after(d, before)
        if not dry_run:
            entry["seq"] = store.record_history(d.action, before, after, d.reason, arbiter)
        report.applied.append(entry)
        by_id.update({t.id: t for t in after})
    return report


def _after(d: Decision, before: list[Triple]) -> list[Triple]:
    if d.action == PRUNE:
        return [before[0].with_stats(status=PRUNED)]
    if d.action == REWRITE:
        t = before[0]
        return [replace(t, semantics=Semantics(d.semantics, dict(t.semantics.observed)))]
    keeper, rest = before[0], before[1:]
    st = keeper.stats
    # the facts the absorbed triples carried (another scope's capacity, ...) stay stated
    seen = [" ".join(f"{k}={v}" for k, v in sorted(t.context.fields.items())) for t in rest if t.context.fields]
    also = "; ".join(dict.fromkeys(f for f in seen if f not in keeper.semantics.text))
    if also:
        text = f"{keeper.semantics.text} The same fix worked for: {also}."[:MAX_SEMANTICS]
        keeper = replace(keeper, semantics=Semantics(text, dict(keeper.semantics.observed)))
    folded = keeper.with_stats(
        applications=st.applications + sum(t.stats.applications for t in rest),
        successes=st.successes + sum(t.stats.successes for t in rest),
        cycle_log_sum=st.cycle_log_sum + sum(t.stats.cycle_log_sum for t in rest),
        cycle_n=st.cycle_n + sum(t.stats.cycle_n for t in rest))
    return [folded] + [t.with_stats(status=MERGED, merged_into=keeper.id) for t in rest]


def judge(store, triple: Triple | str) -> dict | None:
    """Prune one triple (or the triple of an id) now if its record fails (the evidence rules
    alone, as after each of its applications); returns the history entry written, or None."""
    t = store.get(triple) if isinstance(triple, str) else triple
    why = failing(t) if t is not None and t.stats.status == ACTIVE else None
    if why is None:
        return None
    report = apply(store, [Decision(PRUNE, (t.id,), why)], arbiter="evidence")
    return report.applied[0] if report.applied else None


def distill(store, *, llm=None, dry_run: bool = False) -> Report:
    """One round: the deterministic arbiter's decisions, or the LLM's (checked) when given."""
    triples = store.triples(status=None)
    if llm is None:
        return apply(store, deterministic(triples), arbiter="deterministic", dry_run=dry_run)
    decisions, problems = llm_decisions(llm, triples)
    report = apply(store, decisions, arbiter="llm", dry_run=dry_run)
    report.rejected += problems
    return report


def revert(store, seq: int) -> int:
    """Put back the triples of history entry ``seq`` as they were before it; returns the new
    history entry (a revert is itself recorded, and can be reverted)."""
    entry = store.history_entry(seq)
    if entry is None:
        raise ValueError(f"no history entry {seq}")
    if entry["reverted"]:
        raise ValueError(f"history entry {seq} was reverted already")
    before = [Triple.from_dict(d) for d in entry["before"]]
    after = [Triple.from_dict(d) for d in entry["after"]]
    return store.record_history(REVERT, after, before, f"revert of #{seq} ({entry['action']})", "user",
                                reverts=seq)


# --- the LLM arbiter ------------------------------------------------------------------------------

ARBITER_PROMPT = """You curate a knowledge base of fixes for NPU kernels. Each entry has a trigger
(a device fault or a bottleneck), a fix (a rewrite with parameters), a rationale and a record
(how often it was applied and worked). Decide which entries to merge (they do the same thing),
which to prune (they fail or are contradicted by a better entry), and rewrite the rationale of
merged entries in plain words with the numbers the device reported. Answer with JSON only:
{"decisions": [{"action": "merge", "keep": ID, "absorb": [ID, ...], "semantics": TEXT},
{"action": "prune", "id": ID, "reason": TEXT}]}"""
MAX_GROUPS = 12


def llm_decisions(llm, triples: list[Triple]) -> tuple[list[Decision], list[dict]]:
    """The LLM's decisions for the groups worth arbitrating (same fix or same trigger), and
    what in its answer was not a decision at all."""
    active = [t for t in triples if t.stats.status == ACTIVE]
    groups = [g for g in _groups(active, merge_key).values() if len(g) > 1]
    groups += [g for g in _groups(active, conflict_key).values() if len({merge_key(t) for t in g}) > 1]
    lonely_failing = [t for t in active if failing(t) and not any(t in g for g in groups)]
    groups += [[t] for t in lonely_failing]
    if not groups:
        return [], []
    lines = []
    for n, g in enumerate(groups[:MAX_GROUPS]):
        lines.append(f"group {n}:")
        for t in g:
            trigger = t.context.code or f"bottleneck {t.context.pipe}"
            lines.append(f"  {t.id}: when {trigger}; fix {t.executable.call()}; worked {t.stats.successes}/"
                         f"{t.stats.applications}; {t.semantics.text}")
    reply = llm.complete([{"role": "system", "content": ARBITER_PROMPT}, {"role": "user", "content": "\n".join(lines)}])
    if reply.error or not reply.text:
        return [], [{"action": "answer", "rejected": f"no answer from the arbiter: {reply.error or 'empty'}"}]
    return parse_decisions(reply.text)


def parse_decisions(text: str) -> tuple[list[Decision], list[dict]]:
    """Decisions from the arbiter's JSON; malformed items are reported, never applied."""
    m = re.search(r"\{.*\}", text, flags=re.DOTALL)
    try:
        doc = json.loads(m.group(0)) if m else None
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or not isinstance(doc.get("decisions"), list):
        return [], [{"action": "answer", "rejected": "not the JSON asked for"}]
    out, bad = [], []
    for item in doc["decisions"][:64]:
        if not isinstance(item, dict):
            bad.append({"action": "?", "rejected": "not an object"})
            continue
        action = item.get("action")
        reason = str(item.get("reason", ""))[:300]
        if action == PRUNE and isinstance(item.get("id"), str):
            out.append(Decision(PRUNE, (item["id"],), reason or "the arbiter judged it wrong"))
        elif action == MERGE and isinstance(item.get("keep"), str) and isinstance(item.get("absorb"), list) \
                and all(isinstance(i, str) for i in item["absorb"]):
            out.append(Decision(MERGE, (item["keep"], *item["absorb"]), reason or "the arbiter judged them the same"))
            semantics = item.get("semantics")
            if isinstance(semantics, str) and semantics.strip():
                out.append(Decision(REWRITE, (item["keep"],), "the arbiter's wording of the merged triple",
                                    " ".join(semantics.split())))
        else:
            bad.append({"action": str(action)[:20], "rejected": "malformed decision"})
    return out, bad


def history_time(entry: dict) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(entry["created"]))
