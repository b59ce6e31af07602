"""The triple: what Hawk learned from one fault or bottleneck the NPU reported.

Three parts and bookkeeping (the paper's triple-part executable knowledge):

- ``Context``: the trigger -- a fault code with the fields the device log gave, or the
  bottleneck pipe with the profile's busy fractions -- plus the operator category and the
  IR features and tokens of the kernel it was seen on (what retrieval matches against);
- ``Semantics``: the hardware rationale in plain language, with the numbers the device
  reported (never a number read from a spec);
- ``Executable``: a rewrite of the schedule program (``hawk.knowledge.rewrite``) with its
  parameters, and the check that proves it worked (the fault is gone, or the cycles
  dropped; in both cases the result is still correct);
- ``Provenance`` (run, workload, target, iteration, who found the fix, the programs before
  and after) and ``Stats`` (applications, successes, cycle effects, status, verified).

Triples are plain data: ``to_dict``/``from_dict`` round-trip through JSON, and
``from_dict`` validates every field (a store or an import file is untrusted input).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field, replace
from typing import Any

FAULT, BOTTLENECK = "fault", "bottleneck"
TRIGGERS = (FAULT, BOTTLENECK)
FAULT_GONE, FASTER = "fault_gone", "faster"
CHECKS = (FAULT_GONE, FASTER)
ACTIVE, PRUNED, MERGED = "active", "pruned", "merged"
STATUSES = (ACTIVE, PRUNED, MERGED)
SOURCES = ("explore", "knowledge", "proposer", "import")
MAX_TEXT = 20_000  # one program, one rationale: real ones are far shorter


class TripleError(ValueError):
    """A triple (from a store, a file or a caller) that does not hold together."""


@dataclass(frozen=True)
class Context:
    """When a triple applies: the trigger as the device reported it, and the kernel's shape."""

    trigger: str
    code: str = ""  # fault code (fault triggers)
    pipe: str = ""  # the faulting pipe, or the bottleneck pipe
    fields: dict[str, str] = field(default_factory=dict)  # the fault's log fields (scope, src, dst, unit, ...)
    profile: dict[str, float] = field(default_factory=dict)  # pipe -> busy fraction (bottlenecks)
    category: str = ""
    features: dict[str, float] = field(default_factory=dict)  # hardware-semantic axis (hawk.ir.features)
    tokens: tuple[str, ...] = ()  # syntactic axis: normalised program and IR tokens
    graph_hash: str = ""  # Weisfeiler-Lehman hash of the loop/dataflow graph

    def key(self) -> str:
        """What makes two contexts the same trigger: code or pipe, and the fault's scope fields."""
        named = ",".join(f"{k}={self.fields[k]}" for k in sorted(self.fields) if k in _KEY_FIELDS)
        return f"{self.trigger}:{self.code or self.pipe}:{named}"


_KEY_FIELDS = ("scope", "src", "dst", "unit")


@dataclass(frozen=True)
class Semantics:
    """The hardware rationale, as a person would explain it, with the observed numbers."""

    text: str
    observed: dict[str, float | int | str] = field(default_factory=dict)


@dataclass(frozen=True)
class Executable:
    """A parameterised rewrite of a schedule program and the check that proves it worked."""

    rewrite: str
    params: dict[str, Any] = field(default_factory=dict)
    check: str = FAULT_GONE
    example: str = ""  # the lines the rewrite changed when it was learned, as a diff

    def call(self) -> str:
        """The rewrite as one line, the form prompts carry and proposers parse back."""
        args = ", ".join(f"{k}={json.dumps(self.params[k])}" for k in sorted(self.params))
        return f"{self.rewrite}({args})"


@dataclass(frozen=True)
class Provenance:
    """Where a triple came from: every triple traces to the run that produced it."""

    run: str
    workload: str
    target: str
    iteration: int
    source: str  # explore | knowledge | proposer | import
    proposer: str = ""
    before: str = ""  # the program that faulted or was slow
    after: str = ""  # the program that fixed it
    created: str = ""  # ISO time


@dataclass(frozen=True)
class Stats:
    """The evidence: how often it was applied, how often it worked, what it did to cycles."""

    applications: int = 0
    successes: int = 0
    cycle_log_sum: float = 0.0  # sum of log(cycles_after / cycles_before) over measured successes
    cycle_n: int = 0
    status: str = ACTIVE
    verified: bool = False  # has worked on the runtime model (not just written or imported)
    merged_into: str = ""
    failed_in_a_row: int = 0  # applications since it last worked (a record can be old; this is now)

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.applications if self.applications else None

    @property
    def cycle_ratio(self) -> float | None:
        """Geometric mean of cycles after / before over its measured applications."""
        return math.exp(self.cycle_log_sum / self.cycle_n) if self.cycle_n else None


@dataclass(frozen=True)
class Triple:
    id: str
    context: Context
    semantics: Semantics
    executable: Executable
    provenance: Provenance
    stats: Stats = field(default_factory=Stats)

    @classmethod
    def new(cls, context: Context, semantics: Semantics, executable: Executable, provenance: Provenance,
            stats: Stats | None = None) -> Triple:
        """A triple with an id derived from what it says and where it came from."""
        body = json.dumps([context.key(), executable.call(), provenance.run, provenance.workload,
                           provenance.iteration], sort_keys=True)
        tid = "t" + hashlib.sha256(body.encode()).hexdigest()[:12]
        return cls(tid, context, semantics, executable, provenance, stats or Stats())

    def with_stats(self, **changes) -> Triple:
        return replace(self, stats=replace(self.stats, **changes))

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "context": {**_plain(self.context), "tokens": list(self.context.tokens)},
            "semantics": _plain(self.semantics),
            "executable": _plain(self.executable),
            "provenance": _plain(self.provenance),
            "stats": _plain(self.stats),
        }

    @classmethod
    def from_dict(cls, d: Any) -> Triple:
        """Validate and build; any problem is a TripleError naming the field."""
        _need(isinstance(d, dict), "triple", "an object")
        tid = d.get("id")
        _need(isinstance(tid, str) and 0 < len(tid) <= 64 and tid.isascii() and tid.isprintable(), "id",
              "a short printable string")
        c = _section(d, "context")
        context = Context(
            trigger=_choice(c, "context.trigger", TRIGGERS),
            code=_text(c, "code", "context"), pipe=_text(c, "pipe", "context"),
            fields=_str_map(c.get("fields", {}), "context.fields"),
            profile=_num_map(c.get("profile", {}), "context.profile"),
            category=_text(c, "category", "context"),
            features=_num_map(c.get("features", {}), "context.features"),
            tokens=tuple(_str_list(c.get("tokens", []), "context.tokens")),
            graph_hash=_text(c, "graph_hash", "context"),
        )
        s = _section(d, "semantics")
        observed = s.get("observed", {})
        _need(isinstance(observed, dict) and all(isinstance(k, str) and isinstance(v, (int, float, str))
                                                 and not isinstance(v, bool) for k, v in observed.items()),
              "semantics.observed", "a map of names to numbers or strings")
        semantics = Semantics(_text(s, "text", "semantics", required=True), dict(observed))
        e = _section(d, "executable")
        params = e.get("params", {})
        _need(isinstance(params, dict) and all(isinstance(k, str) for k in params), "executable.params",
              "an object")
        _need(len(json.dumps(params)) <= MAX_TEXT, "executable.params", f"at most {MAX_TEXT} characters")
        executable = Executable(_text(e, "rewrite", "executable", required=True), dict(params),
                                _choice(e, "executable.check", CHECKS), _text(e, "example", "executable"))
        p = _section(d, "provenance")
        iteration = p.get("iteration")
        _need(isinstance(iteration, int) and not isinstance(iteration, bool) and iteration >= 0,
              "provenance.iteration", "a non-negative integer")
        provenance = Provenance(
            run=_text(p, "run", "provenance", required=True), workload=_text(p, "workload", "provenance"),
            target=_text(p, "target", "provenance"), iteration=iteration,
            source=_choice(p, "provenance.source", SOURCES), proposer=_text(p, "proposer", "provenance"),
            before=_text(p, "before", "provenance"), after=_text(p, "after", "provenance"),
            created=_text(p, "created", "provenance"),
        )
        st = d.get("stats", {})
        _need(isinstance(st, dict), "stats", "an object")
        counts = {k: st.get(k, 0) for k in ("applications", "successes", "cycle_n", "failed_in_a_row")}
        for k, v in counts.items():
            _need(isinstance(v, int) and not isinstance(v, bool) and v >= 0, f"stats.{k}", "a non-negative integer")
        _need(counts["successes"] <= counts["applications"], "stats.successes", "at most stats.applications")
        _need(counts["failed_in_a_row"] <= counts["applications"], "stats.failed_in_a_row",
              "at most stats.applications")
        log_sum = st.get("cycle_log_sum", 0.0)
        _need(isinstance(log_sum, (int, float)) and not isinstance(log_sum, bool) and math.isfinite(log_sum),
              "stats.cycle_log_sum", "a finite number")
        verified = st.get("verified", False)
        _need(isinstance(verified, bool), "stats.verified", "true or false")
        stats = Stats(counts["applications"], counts["successes"], float(log_sum), counts["cycle_n"],
                      _choice(st, "stats.status", STATUSES, default=ACTIVE), verified,
                      _text(st, "merged_into", "stats"), counts["failed_in_a_row"])
        return cls(tid, context, semantics, executable, provenance, stats)


def _plain(obj) -> dict:
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in obj.__dict__.items()}


def _need(ok: bool, where: str, what: str) -> None:
    if not ok:
        raise TripleError(f"{where}: must be {what}")


def _section(d: dict, name: str) -> dict:
    value = d.get(name)
    _need(isinstance(value, dict), name, "an object")
    return value


def _text(d: dict, key: str, section: str, *, required: bool = False) -> str:
    value = d.get(key, "")
    _need(isinstance(value, str) and len(value) <= MAX_TEXT, f"{section}.{key}",
          f"a string of at most {MAX_TEXT} characters")
    _need(bool(value) or not required, f"{section}.{key}", "non-empty")
    return value


def _choice(d: dict, where: str, options: tuple[str, ...], default: str | None = None) -> str:
    value = d.get(where.rsplit(".", 1)[-1], default)
    _need(value in options, where, "one of " + ", ".join(options))
    return value


def _str_map(value: Any, where: str) -> dict[str, str]:
    _need(isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and len(v) <= 256
                                          for k, v in value.items()), where, "a map of names to short strings")
    return dict(value)


def _num_map(value: Any, where: str) -> dict[str, float]:
    _need(isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                          and not isinstance(v, bool) and math.isfinite(v)
                                          for k, v in value.items()), where, "a map of names to finite numbers")
    return {k: float(v) for k, v in value.items()}


def _str_list(value: Any, where: str) -> list[str]:
    _need(isinstance(value, list) and len(value) <= 10_000 and all(isinstance(v, str) and len(v) <= 256
                                                                     for v in value), where, "a list of strings")
    return list(value)
