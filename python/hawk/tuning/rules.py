"""Knowledge exported as MetaSchedule rules: what Hawk learned, usable with no LLM and no loop.

``export_rules(store, path)`` reads the verified triples that were not pruned and keeps the hardware facts
they were learned from, each with the triples that support it:

- ``capacity``: bytes a scope holds (the smallest capacity the device reported in a
  SCOPE_OVERFLOW that a triple fixed);
- ``no_path``: pairs of scopes with no DMA path between them, and the scope a copy is
  staged through instead (ILLEGAL_PATH fixed by ``feed``/``drain``);
- ``unit_scope``: scopes a unit cannot read or write (UNIT_SCOPE);
- ``misaligned``: DMA runs into a scope that were too short to be aligned (DMA_MISALIGN);
- ``speedups``: the rewrites that made kernels faster, by bottleneck pipe, with their
  measured cycle ratio (for a person, or a later rule, to apply).

``load_rules(path)`` gives them back as MetaSchedule pieces: ``postproc()`` is a
``PyPostproc`` that rejects a candidate violating a learned fact before it is built (its
check reads the kernel's TensorIR only; no spec), and ``space(view)`` is the NPU design
space with that postprocessor, for ``ms.tune_tir(space=...)``:

    rules = hawk.tuning.load_rules("rules.json")
    ms.tune_tir(mod, target, work_dir, max_trials_global=64, space=rules.space(api_view(spec)), ...)

A rules file is data (JSON), checked field by field on load; it carries no code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

FORMAT, VERSION = "hawk-rules", 1


class RulesError(ValueError):
    """A rules file that cannot be used; the message says why."""


@dataclass
class Rules:
    capacity: dict[str, int] = field(default_factory=dict)
    no_path: list[dict] = field(default_factory=list)  # {"src", "dst", "via"}
    unit_scope: list[dict] = field(default_factory=list)  # {"unit", "scope", "access"}
    misaligned: dict[str, int] = field(default_factory=dict)  # scope -> longest run in bytes that faulted
    speedups: list[dict] = field(default_factory=list)  # {"pipe", "rewrite", "params", "cycle_ratio", "worked"}
    support: dict[str, list[str]] = field(default_factory=dict)  # fact -> triple ids
    target: str = ""

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": VERSION, "target": self.target, "capacity": self.capacity,
                "no_path": self.no_path, "unit_scope": self.unit_scope, "misaligned": self.misaligned,
                "speedups": self.speedups, "support": self.support}

    # --- what a candidate breaks -----------------------------------------------------------

    def violations(self, kernel) -> list[str]:
        """The learned facts a kernel (IRModule or PrimFunc) breaks, in words (reads TensorIR only)."""
        from ..ir.features import scope_peaks
        from ..runtime.program import ProgramError, read_program

        try:
            program = read_program(kernel)
        except ProgramError as err:
            return [f"unreadable: {err}"]
        out = []
        for scope, used in scope_peaks(program).items():
            cap = self.capacity.get(scope)
            if cap is not None and used > cap:
                out.append(f"{scope} holds {cap} bytes, the kernel needs {used}")
        banned_paths = {(p["src"], p["dst"]) for p in self.no_path}
        banned_units = {(u["unit"], u["scope"], u["access"]) for u in self.unit_scope}
        for instr in program.instrs():
            if instr.kind == "copy" and instr.reads and instr.writes:
                src, dst = instr.reads[0].scope, instr.writes[0].scope
                if (src, dst) in banned_paths:
                    out.append(f"{instr.block}: no DMA path {src} -> {dst}")
                run = (instr.loops[-1].extent if instr.loops else 1) * _bytes(instr.writes[0].dtype)
                if src != dst and run <= self.misaligned.get(dst, 0):
                    out.append(f"{instr.block}: a {run}-byte run into {dst} is misaligned")
            elif instr.kind == "compute":
                unit = "vector" if instr.vectorized else "scalar"
                for acc, access in [(a, "read") for a in instr.reads] + [(a, "write") for a in instr.writes]:
                    if (unit, acc.scope, access) in banned_units:
                        out.append(f"{instr.block}: the {unit} unit cannot {access} {acc.scope}")
        return out

    # --- MetaSchedule pieces ------------------------------------------------------------------

    def postproc(self) -> ms.postproc.Postproc:
        return LearnedFacts(self)

    def space(self, view) -> ms.space_generator.ScheduleFn:
        """The NPU design space of the MetaSchedule baseline, with the learned facts as a
        postprocessor."""
        from .space import NpuSpace, VectorizeInner

        return ms.space_generator.ScheduleFn(NpuSpace(view), sch_rules=[], postprocs=[VectorizeInner(), self.postproc()],
                                             mutator_probs={ms.mutator.MutateTileSize(): 1.0})

    def kernels(self, mod, spec, limit: int = 8) -> list:
        """Sketches of the design space for ``mod`` that break no learned fact (for the
        compile flow's rules step, before any search)."""
        from tvm import s_tir

        from ..npu import api_view
        from .space import NpuSpace

        out = []
        for seed in range(limit):
            sch = s_tir.Schedule(mod, seed=seed)
            for design in NpuSpace(api_view(spec))(sch) or []:
                if not self.violations(design.mod):
                    out.append(design.mod)
        return out


@derived_object
class LearnedFacts(ms.postproc.PyPostproc):
    """Reject a candidate that breaks a learned hardware fact (counts what it rejected)."""

    def __init__(self, rules: Rules):
        super().__init__()
        self.rules = rules
        self.checked = 0
        self.rejected = 0

    def _initialize_with_tune_context(self, context) -> None:
        pass

    def apply(self, sch) -> bool:
        self.checked += 1
        if self.rules.violations(sch.mod):
            self.rejected += 1
            return False
        return True

    def clone(self) -> LearnedFacts:
        return LearnedFacts(self.rules)


def _bytes(dtype: str) -> int:
    import tvm

    return max(1, tvm.runtime.DataType(dtype).bits // 8)


def export_rules(store, path: str | Path | None = None) -> Rules:
    """The facts of a knowledge store's (a ``KnowledgeStore`` or its path) verified triples,
    active or merged into one (written to ``path`` as JSON)."""
    if isinstance(store, (str, Path)):
        from ..knowledge import KnowledgeStore

        with KnowledgeStore(store, readonly=True) as opened:
            return export_rules(opened, path)
    rules = Rules()
    targets = set()

    def support(fact: str, tid: str) -> None:
        rules.support.setdefault(fact, []).append(tid)

    for t in store.triples(status=None):  # merged triples' contexts are facts their keeper stands for
        if not t.stats.verified or t.stats.status == "pruned":
            continue
        c, e = t.context, t.executable
        targets.add(t.provenance.target)
        f = c.fields
        if c.trigger == "bottleneck":
            ratio = t.stats.cycle_ratio
            if ratio is not None and ratio < 1.0:
                rules.speedups.append({"pipe": c.pipe, "rewrite": e.rewrite, "params": dict(e.params),
                                       "cycle_ratio": round(ratio, 4), "worked": t.stats.successes})
                support(f"speedup:{c.pipe}:{e.call()}", t.id)
            continue
        if c.code == "SCOPE_OVERFLOW" and f.get("scope") and str(f.get("capacity", "")).isdigit():
            scope, cap = f["scope"], int(f["capacity"])
            rules.capacity[scope] = min(cap, rules.capacity.get(scope, cap))
            support(f"capacity:{scope}", t.id)
        elif c.code == "ILLEGAL_PATH" and f.get("src") and f.get("dst") and e.rewrite in ("feed", "drain"):
            item = {"src": f["src"], "dst": f["dst"], "via": str(e.params.get("via", ""))}
            if item not in rules.no_path:
                rules.no_path.append(item)
            support(f"no_path:{f['src']}->{f['dst']}", t.id)
        elif c.code == "UNIT_SCOPE" and f.get("unit") and f.get("scope"):
            item = {"unit": f["unit"], "scope": f["scope"], "access": f.get("access", "read")}
            if item not in rules.unit_scope:
                rules.unit_scope.append(item)
            support(f"unit_scope:{f['unit']}:{f['scope']}", t.id)
        elif c.code == "DMA_MISALIGN" and f.get("scope") and str(f.get("burst_bytes", "")).isdigit():
            scope = f["scope"]
            rules.misaligned[scope] = max(int(f["burst_bytes"]), rules.misaligned.get(scope, 0))
            support(f"misaligned:{scope}", t.id)
    rules.speedups.sort(key=lambda s: (s["pipe"], s["cycle_ratio"]))
    rules.target = ",".join(sorted(targets))
    if path is not None:
        Path(path).write_text(json.dumps(rules.to_dict(), indent=1) + "\n")
    return rules


def load_rules(path: str | Path) -> Rules:
    """A rules file, checked (RulesError says what is wrong)."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise RulesError(f"{path}: not a rules file: {err}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise RulesError(f"{path}: not a {FORMAT} file")
    if doc.get("version") != VERSION:
        raise RulesError(f"{path}: version {doc.get('version')!r}; this Hawk reads version {VERSION}")

    def need(ok: bool, what: str) -> None:
        if not ok:
            raise RulesError(f"{path}: {what}")

    cap = doc.get("capacity", {})
    need(isinstance(cap, dict) and all(isinstance(k, str) and isinstance(v, int) and v > 0 for k, v in cap.items()),
         "capacity must map scope names to positive byte counts")
    mis = doc.get("misaligned", {})
    need(isinstance(mis, dict) and all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in mis.items()),
         "misaligned must map scope names to byte counts")
    paths = doc.get("no_path", [])
    need(isinstance(paths, list) and all(isinstance(p, dict) and all(isinstance(p.get(k), str) for k in ("src", "dst"))
                                         for p in paths), "no_path must list {src, dst, via}")
    units = doc.get("unit_scope", [])
    need(isinstance(units, list) and all(isinstance(u, dict) and all(isinstance(u.get(k), str)
                                                                     for k in ("unit", "scope", "access"))
                                         for u in units), "unit_scope must list {unit, scope, access}")
    speed = doc.get("speedups", [])
    need(isinstance(speed, list) and all(isinstance(s, dict) and isinstance(s.get("cycle_ratio"), (int, float))
                                         and math.isfinite(s["cycle_ratio"]) for s in speed),
         "speedups must list {pipe, rewrite, params, cycle_ratio}")
    return Rules(capacity=dict(cap), no_path=list(paths), unit_scope=list(units), misaligned=dict(mis),
                 speedups=list(speed), support=dict(doc.get("support") or {}), target=str(doc.get("target", "")))
