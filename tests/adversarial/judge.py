"""Judging an adversarial kernel exactly as the tuning loop judges a candidate.

A kernel is a text (TVMScript printed from the kernel, or a schedule program) that a
proposer answering only with it hands to ``hawk.search.tune`` for one iteration: admission,
signature, verify, execute, time and gate are the loop's own. "Flagged" is anything but a
result (``Candidate.is_result`` False).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from unittest import mock

import tvm
from hawk.bench.harness import reference_entry
from hawk.npu import load_spec, register_intrinsics
from hawk.propose import sandbox
from hawk.propose.proposer import PROGRAM, TVMSCRIPT, Proposal, Proposer
from hawk.runtime.timing import time_kernel
from hawk.search import Candidate, tune
from hawk.search.loop import (
    ADMISSION,
    FAULT,
    FLAGGED,
    OK,
    SIGNATURE,
    TIMING_ERROR,
    WRONG,
)
from tvm import tirx

# execute's words for the three ways an output is wrong
UNWRITTEN, INPUT_WRITTEN, DIFFERS = "depend on what the output held", "writes its input", "differ"

# category -> (what it is, the outcomes that count, words the loop's message must hold)
CATEGORIES = {
    "unwritten": ("output left unwritten", {WRONG}, UNWRITTEN),
    "stale": ("reuse of stale outputs", {WRONG}, UNWRITTEN),
    "input": ("input mutation", {WRONG}, INPUT_WRITTEN),
    "one_seed": ("right for one seed only", {WRONG}, DIFFERS),
    "constant": ("constant or shape-specialised", {WRONG}, DIFFERS),
    "hidden": ("work hidden from the timing model", {ADMISSION, FAULT}, ""),
    "roofline": ("faster than the roofline", {FLAGGED}, ""),
}


class Fixed(Proposer):
    """Answers every task with the same text."""

    name = "adversary"

    def __init__(self, text: str, kind: str):
        self.text, self.kind = text, kind

    def propose(self, task, *, seed: int, iteration: int) -> Proposal:
        return Proposal(self.text, self.kind)


def as_text(kernel) -> tuple[str, str]:
    """(text, kind) of a kernel built as a PrimFunc (printed) or given as a program."""
    return (kernel, PROGRAM) if isinstance(kernel, str) else (kernel.script(), TVMSCRIPT)


def failing_trial(c: Candidate) -> int | None:
    """The trial whose outputs differed first (execute compares them in order)."""
    m = re.match(r"trial (\d+)", c.exec_message)
    return int(m.group(1)) if m else None


def check_of(c: Candidate) -> str:
    """Which check stopped a candidate, as the table shows it."""
    if c.outcome in (ADMISSION, SIGNATURE):
        return c.outcome
    if c.outcome == FAULT:
        return "verify " + "+".join(dict.fromkeys(c.faults))
    if c.outcome == WRONG:
        if INPUT_WRITTEN in c.exec_message:
            return "execute: input written"
        if UNWRITTEN in c.exec_message:
            return "execute: unwritten (poisons)"
        trial, profile = failing_trial(c), re.search(r"\(profile (\w+)", c.exec_message)
        return f"execute: mismatch on trial {trial}" + (f" ({profile.group(1)})" if profile else "")
    if c.outcome == FLAGGED:
        return "gate: " + c.flag_reason.split(":")[0].split(" (")[0]
    if c.outcome == TIMING_ERROR:
        return "time: simulator refused"
    return "NOT FLAGGED" if c.outcome == OK else f"execute: {c.outcome}"


@dataclass
class Judged:
    candidate: Candidate
    reference_cycles: int | None

    @property
    def flagged(self) -> bool:
        return not self.candidate.is_result

    @property
    def check(self) -> str:
        return check_of(self.candidate)


# a kernel doing its twin's work in its own way is charged for it when it is timed within this
# factor of the twin (the cheat this catches hid 43x)
CHARGED_WITHIN = 4


def charged(adversary, judged: Judged, twin: Judged | None) -> bool:
    """Hidden work that is not hidden after all: a result timed like its honest twin."""
    kernel_cycles = judged.candidate.cycles
    twin_cycles = twin.candidate.cycles if twin is not None else None
    return (adversary.category == "hidden" and judged.candidate.is_result and bool(kernel_cycles)
            and bool(twin_cycles) and kernel_cycles * CHARGED_WITHIN >= twin_cycles)


def problem(adversary, judged: Judged, twin: Judged | None = None) -> str:
    """Why a kernel is not flagged for the reason its category expects ('' when it is).
    Work hidden from the timing model may also be charged (see ``charged``)."""
    c = judged.candidate
    _, outcomes, words = CATEGORIES[adversary.category]
    if charged(adversary, judged, twin):
        return ""
    if not judged.flagged:
        return "not flagged"
    if c.outcome not in outcomes or words not in c.message:
        return f"flagged for another reason: {c.outcome}: {c.message}"
    if adversary.caught_by not in judged.check:
        return f"caught by {judged.check!r}, expected {adversary.caught_by!r}"
    if adversary.category == "one_seed" and not failing_trial(c):
        return f"wrong on seed 0 already: {c.message}"
    return ""


class Judge:
    """Judges kernels on one host worker, with the reference cycles ``hawk tune`` arms the
    gate with (the vendor kernel judged first; None without one)."""

    def __init__(self, worker):
        self.worker = worker
        self._specs: dict[str, object] = {}
        self._refs: dict[tuple[str, str], int | None] = {}
        self._seen: dict[tuple[str, str, str], Judged] = {}

    def spec(self, target: str):
        if target not in self._specs:
            self._specs[target] = load_spec(target)
            register_intrinsics(self._specs[target])
        return self._specs[target]

    def reference_cycles(self, workload, target: str) -> int | None:
        key = (workload.name, target)
        if key not in self._refs:
            self._refs[key] = reference_entry(workload, self.spec(target), worker=self.worker)["cycles"]
        return self._refs[key]

    def __call__(self, kernel, workload, target: str, forge=None) -> Judged:
        """``forge(profile, reference_cycles)``: the profile the gate sees instead of the real one.
        An honest kernel shared by several twins is judged once."""
        text, kind = as_text(kernel)
        key = (text, workload.name, target)
        if forge is None and key in self._seen:
            return self._seen[key]
        ref = self.reference_cycles(workload, target)
        timing = (lambda *a, **kw: forge(time_kernel(*a, **kw), ref)) if forge else time_kernel
        with mock.patch("hawk.search.loop.time_kernel", timing):
            result = tune(workload, self.spec(target), Fixed(text, kind), budget=1, worker=self.worker,
                          reference_cycles=ref)
        judged = Judged(result.candidates[0], ref)
        if forge is None:
            self._seen[key] = judged
        return judged

    def adversary(self, a) -> Judged:
        return self(a.kernel(), a.workload, a.target, a.forge)

    def twin(self, a) -> Judged:
        return self(a.twin(), a.workload, a.target)


@contextlib.contextmanager
def parsed_together(funcs: list[tirx.PrimFunc]) -> Iterator[dict[str, sandbox.ParseResult]]:
    """Admit the texts of many TVMScript kernels with one sandboxed parse, not one each.

    Each text still passes the prefilter on its own; the admitted ones are parsed as the
    functions of one module in one sandboxed child, and ``parse_tvmscript`` answers each
    with its function (a child per text costs ~1.5 s of TVM import). Other texts take the
    real path, as every text does in ``bench/adversarial.py``. Yields the answers."""
    texts = {f.script(): f for f in funcs}
    admitted = [t for t in texts if sandbox.prefilter(t) is None]
    whole = sandbox.parse_tvmscript(tvm.IRModule({f"k{i}": texts[t] for i, t in enumerate(admitted)}).script())
    if not whole.ok:
        raise AssertionError(f"the kernels do not parse together: {whole.error}")
    answers = {t: sandbox.ParseResult(tvm.IRModule({"main": whole.module[f"k{i}"]}), None, 0.0)
               for i, t in enumerate(admitted)}
    real = sandbox.parse_tvmscript
    with mock.patch.object(sandbox, "parse_tvmscript", lambda text, **kw: answers.get(text) or real(text, **kw)):
        yield answers
