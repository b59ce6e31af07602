"""Triples as people and prompts read them."""

from __future__ import annotations

from .triple import Triple


def describe(t: Triple) -> str:
    """A triple the way a person reads it (``hawk kb show``)."""
    c, s, e, p, st = t.context, t.semantics, t.executable, t.provenance, t.stats
    trigger = f"fault {c.code}" if c.trigger == "fault" else f"bottleneck on pipe {c.pipe}"
    fields = " ".join(f"{k}={v}" for k, v in sorted(c.fields.items()))
    lines = [
        f"triple {t.id}  [{st.status}, {'verified' if st.verified else 'unverified'}]",
        "",
        f"When:  {trigger}" + (f" ({fields})" if fields else "") + (f" on {_article(c.category)} {c.category} kernel"
                                                                    if c.category else ""),
    ]
    if c.profile:
        busy = ", ".join(f"{pipe} {frac:.0%}" for pipe, frac in sorted(c.profile.items(), key=lambda kv: -kv[1]))
        lines.append(f"       pipes busy: {busy}")
    lines += ["", "Why:   " + s.text]
    if s.observed:
        lines.append("       observed: " + ", ".join(f"{k}={v}" for k, v in sorted(s.observed.items())))
    check = "the fault is gone and the result is still correct" if e.check == "fault_gone" else \
        "fewer cycles and the result is still correct"
    lines += ["", f"Do:    {e.call()}", f"       proven by: {check}"]
    if e.example:
        lines += ["       as it was applied:"] + [f"         {ln}" for ln in e.example.splitlines()]
    ratio = st.cycle_ratio
    evidence = f"applied {st.applications} times, worked {st.successes}"
    if ratio is not None:
        evidence += f", cycles x{ratio:.3g} (geometric mean of {st.cycle_n})"
    lines += ["", f"Evidence: {evidence}"]
    if st.merged_into:
        lines.append(f"Merged into: {st.merged_into}")
    lines.append(f"From:  run {p.run}, workload {p.workload} on {p.target}, iteration {p.iteration}, "
                 f"found by {p.source}" + (f" ({p.proposer})" if p.proposer else "") +
                 (f", {p.created}" if p.created else ""))
    return "\n".join(lines)


def for_prompt(t: Triple) -> str:
    """One knowledge item as a prompt carries it: rationale, then the executable rewrite.

    The ``fix:`` line is the executable part; an author (the offline proposer included)
    may parse it back with ``hawk.knowledge.rewrite.parse_call``."""
    st = t.stats
    tag = f"verified, worked {st.successes}/{st.applications}" if st.verified else "unverified"
    ctx = t.context
    when = ctx.code if ctx.trigger == "fault" else f"bottleneck {ctx.pipe}"
    fields = " ".join(f"{k}={v}" for k, v in sorted(ctx.fields.items()))
    head = f"[{tag}] when {when}" + (f" ({fields})" if fields else "") + f": {t.semantics.text}"
    return f"{head}\n  fix: {t.executable.call()}"


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
