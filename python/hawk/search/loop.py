"""The generation loop: propose -> admit -> verify -> execute -> time -> feed back.

Each iteration asks the proposer for a kernel, admits the text (schedule program or
sandboxed TVMScript), checks the signature, verifies it on the NPU model, runs it on the
host against the reference and, when it is correct, times it on the pipe simulator and
gates the cycles (``hawk.search.gate``): a kernel faster than its roofline or far faster than
the reference is flagged for review, never the best. What happened becomes the feedback of
the next proposal. The best legal, correct and unflagged kernel (fewest cycles) is kept.

A candidate's failure -- no text, refused text, a fault, wrong results, a hang or crash on
the host, a simulator error, even an exception in this code -- is a ``Candidate`` with an
outcome, never an exception out of ``tune``. Only ``KeyboardInterrupt``/``SystemExit`` and
exceptions raised by the caller's own ``on_candidate`` propagate.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from ..ir.safe_json import ir_key
from ..ir.workload import Workload
from ..npu import register_intrinsics
from ..npu.spec import HardwareSpec
from ..propose.program import apply_program
from ..propose.prompt import Feedback, Task
from ..propose.proposer import PROGRAM, TVMSCRIPT, Proposal, Proposer
from ..runtime.execute import (
    DEFAULT_TIMEOUT_S,
    DEFAULT_TRIALS,
    HostWorker,
    check_signature,
    execute,
)
from ..runtime.timing import SimulatorError, time_kernel
from ..runtime.verify import verify
from .gate import gate

DEFAULT_BUDGET = 30

# Outcomes, in the order of the stages that produce them. Host execution failures keep the
# status of ExecResult (timeout, crash, build_error, runtime_error, reference_error).
NO_PROPOSAL = "no_proposal"  # the proposer gave no text (or raised)
ADMISSION = "admission"  # the text was refused before it touched the NPU model
SIGNATURE = "signature"  # the kernel's parameters differ from the workload's
FAULT = "fault"  # verify reported device faults
WRONG = "wrong"  # ran on the host, results differ from the reference
TIMING_ERROR = "timing_error"  # correct, but the simulator refused it: no cycles
FLAGGED = "flagged"  # correct and timed, but the gate holds its cycles for review: not a result
INTERNAL_ERROR = "internal_error"  # an exception in the harness for this candidate
OK = "ok"

# What the proposer hears of a flagged kernel: no cycles (they would reward it) and no roofline
# or reference numbers (they come from the hidden spec); only that it does not count.
FLAGGED_FEEDBACK = ("[NPU] the measured time of this program is not plausible for the workload; "
                    "it is held for review and does not count as a result")


@dataclass
class Candidate:
    """One iteration of the loop: what was proposed and how far it got.

    ``stage`` is where it stopped (``done`` for a timed, correct kernel); ``outcome`` says why.
    ``legal`` means verify passed, ``correct`` that the host run matched the reference;
    ``flagged`` that the gate held its cycles for review (``flag_reason`` says why).
    """

    iteration: int
    kind: str = ""
    text: str | None = None
    stage: str = "propose"
    outcome: str = NO_PROPOSAL
    error: str = ""  # why the proposer gave nothing, or the harness exception
    admission: str = ""  # the admission error rendered with its caret (or the signature problem)
    faults: tuple[str, ...] = ()  # fault codes, in verify's order
    fault_log: tuple[str, ...] = ()  # device log lines
    exec_status: str = ""
    exec_message: str = ""
    cycles: int | None = None
    bottleneck: str = ""
    roofline_cycles: int | None = None
    model_bug: bool = False  # reported faster than the roofline: the model is wrong, not the kernel good
    flag_reason: str = ""  # why the gate flagged it ('' unless flagged)
    fault_records: tuple[dict, ...] = ()  # the faults with their fields (Fault.to_dict)
    busy: dict[str, float] = field(default_factory=dict)  # pipe -> busy fraction, for a timed kernel
    origin: str = "proposer"  # or "knowledge" / "explore": a repair of an earlier candidate
    repair: str = ""  # the rewrite a repair applied, as a call
    repairs: int | None = None  # the iteration of the candidate it repairs
    llm_calls: int = 0
    wall_s: float = 0.0
    module: object | None = field(default=None, repr=False, compare=False)  # tvm.IRModule once admitted

    @property
    def legal(self) -> bool:
        return self.stage in ("execute", "time", "done")

    @property
    def correct(self) -> bool:
        return self.exec_status == "ok"

    @property
    def flagged(self) -> bool:
        return self.outcome == FLAGGED

    @property
    def is_result(self) -> bool:
        """Legal, correct and not flagged: a kernel Hawk may report."""
        return self.legal and self.correct and not self.flagged

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def message(self) -> str:
        """One line saying what went wrong ('' for an ok candidate)."""
        if self.outcome == OK:
            return ""
        if self.flagged:
            return f"flagged for review: {self.flag_reason}"
        if self.admission:
            return self.admission.splitlines()[0]
        if self.fault_log:
            return self.fault_log[0]
        return self.exec_message or self.error

    def to_dict(self, *, text: bool = True) -> dict:
        d = {
            "iteration": self.iteration, "kind": self.kind, "stage": self.stage, "outcome": self.outcome,
            "legal": self.legal, "correct": self.correct, "faults": list(self.faults),
            "fault_log": list(self.fault_log), "admission": self.admission, "error": self.error,
            "exec_status": self.exec_status, "exec_message": self.exec_message, "cycles": self.cycles,
            "bottleneck": self.bottleneck, "roofline_cycles": self.roofline_cycles,
            "model_bug": self.model_bug, "flag_reason": self.flag_reason, "llm_calls": self.llm_calls,
            "wall_s": round(self.wall_s, 4),
        }
        if self.origin != "proposer":
            d.update(origin=self.origin, repair=self.repair, repairs=self.repairs)
        if text:
            d["text"] = self.text
        return d

    def feedback(self) -> Feedback | None:
        """What the next proposal is told about this one; None when there is nothing to show."""
        if self.text is None or self.outcome == INTERNAL_ERROR:
            return None
        if self.outcome in (ADMISSION, SIGNATURE):
            return Feedback(self.text, admission=self.admission)
        if self.outcome == FAULT:
            return Feedback(self.text, device_log=self.fault_log)
        if self.outcome == TIMING_ERROR:
            return Feedback(self.text, device_log=(f"[NPU] the program could not be run: {self.error}",))
        if self.outcome == FLAGGED:
            return Feedback(self.text, device_log=(FLAGGED_FEEDBACK,))
        if self.outcome == OK:
            return Feedback(self.text, cycles=self.cycles, bottleneck=self.bottleneck)
        status = "wrong results" if self.outcome == WRONG else self.exec_status
        return Feedback(self.text, mismatch=f"{status}: {self.exec_message}" if self.exec_message else status)


@dataclass
class TuneResult:
    """Everything one run of the loop produced for one workload on one target."""

    workload: str
    target: str
    proposer: str
    seed: int
    budget: int
    reference_cycles: int | None = None  # what the gate compared against (None: roofline rule only)
    candidates: list[Candidate] = field(default_factory=list)

    @property
    def best(self) -> Candidate | None:
        """The legal, correct, unflagged candidate with the fewest cycles (the earliest on a tie)."""
        good = [c for c in self.candidates if c.is_result]
        if not good:
            return None
        return min(good, key=lambda c: (c.cycles is None, c.cycles or 0, c.iteration))

    @property
    def best_text(self) -> str | None:
        best = self.best
        return best.text if best else None

    @property
    def best_module(self):
        best = self.best
        return best.module if best else None

    @property
    def iterations(self) -> int:
        return len(self.candidates)

    @property
    def llm_calls(self) -> int:
        return sum(c.llm_calls for c in self.candidates)

    @property
    def flagged(self) -> list[Candidate]:
        """The candidates held for review, in order."""
        return [c for c in self.candidates if c.flagged]

    @property
    def pass_at_1(self) -> bool:
        return bool(self.candidates) and self.candidates[0].is_result

    @property
    def solved(self) -> bool:
        return self.best is not None

    @property
    def first_solved_at(self) -> int | None:
        """The iteration (0-based) of the first legal, correct, unflagged candidate."""
        return next((c.iteration for c in self.candidates if c.is_result), None)

    def outcomes(self) -> dict[str, int]:
        """How many candidates ended each way, most frequent first."""
        return dict(Counter(c.outcome for c in self.candidates).most_common())

    def fault_history(self) -> list[dict]:
        return [{"iteration": c.iteration, "outcome": c.outcome, "faults": list(c.faults),
                 "cycles": c.cycles, "message": _short(c.message)} for c in self.candidates]

    def flagged_entries(self) -> list[dict]:
        """The flagged candidates for review: where, how fast, why, and the program."""
        return [{"iteration": c.iteration, "cycles": c.cycles, "roofline_cycles": c.roofline_cycles,
                 "reference_cycles": self.reference_cycles, "reason": c.flag_reason, "program": c.text}
                for c in self.flagged]

    def to_dict(self, *, candidates: bool = False) -> dict:
        best = self.best
        d = {
            "name": self.workload, "target": self.target, "proposer": self.proposer, "seed": self.seed,
            "budget": self.budget, "best_program": best.text if best else None,
            "best_kind": best.kind if best else None, "best_iteration": best.iteration if best else None,
            "cycles": best.cycles if best else None, "bottleneck": best.bottleneck if best else None,
            "iterations": self.iterations, "llm_calls": self.llm_calls, "pass_at_1": self.pass_at_1,
            "solved": self.solved, "first_solved_at": self.first_solved_at, "outcomes": self.outcomes(),
            "fault_history": self.fault_history(), "flagged": self.flagged_entries(),
        }
        if candidates:
            d["candidates"] = [c.to_dict() for c in self.candidates]
        return d


def tune(workload: Workload, spec: HardwareSpec, proposer: Proposer, *, budget: int = DEFAULT_BUDGET,
         seed: int = 0, worker: HostWorker | None = None,
         on_candidate: Callable[[Candidate, TuneResult], None] | None = None,
         trials: int = DEFAULT_TRIALS, timeout: float = DEFAULT_TIMEOUT_S,
         reference_cycles: int | None = None, knowledge=None) -> TuneResult:
    """Run the loop for ``budget`` iterations and keep the best legal, correct, unflagged kernel.

    ``worker`` runs every host execution (one is started, and closed at the end, when none
    is given). ``on_candidate(candidate, result)`` is called after each iteration. The
    proposer sees the workload, the target's api view and the feedback, never the spec.
    ``reference_cycles`` (a legal, correct reference kernel's cycles) arms the gate's
    speedup rule; the roofline rule always applies.

    ``knowledge`` (a ``hawk.knowledge.Knowledge``) puts retrieved triples into every prompt
    and spends iterations on repairs: a faulting or newly best candidate is followed by
    rewrites of it (retrieved executables first, then exploration), each run like any
    candidate and judged by the runtime model; what worked is learned. Without it the loop
    is exactly the loop without knowledge.
    """
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")
    register_intrinsics(spec)  # tensorize in a program looks intrinsics up by name
    result = TuneResult(workload.name, spec.name, getattr(proposer, "name", type(proposer).__name__),
                        seed, budget, reference_cycles)
    own_worker = worker is None and budget > 0
    if own_worker:
        worker = HostWorker()
    try:
        feedback: Feedback | None = None
        executed: dict[str, object] = {}  # ir_key -> passing ExecResult: a repeat is not rebuilt
        session = _KnowledgeSession(knowledge, workload, spec, proposer) if knowledge is not None else None
        for iteration in range(budget):
            repair = session.next_repair() if session is not None else None
            items = session.prompt_items(result) if session is not None and repair is None else ()
            task = Task.for_target(workload, spec, feedback, items)
            author = _Fixed(repair.text) if repair is not None else proposer
            cand = _evaluate(task, workload, spec, author, iteration, seed=seed, worker=worker,
                             trials=trials, timeout=timeout, executed=executed,
                             reference_cycles=reference_cycles)
            result.candidates.append(cand)
            if session is not None:
                try:
                    session.after(cand, repair, result)
                except Exception as err:  # noqa: BLE001 - knowledge failing must not end the search
                    cand.error = cand.error or f"knowledge: {_one_line(err)}"
                    session.pending.clear()
            # a candidate with nothing to show leaves the previous feedback in place
            feedback = cand.feedback() or feedback
            if on_candidate is not None:
                on_candidate(cand, result)
    finally:
        if own_worker:
            worker.close()
    return result


class _Fixed(Proposer):
    """A repair: the program is already written."""

    name = "repair"

    def __init__(self, text: str):
        self.text = text

    def propose(self, task: Task, *, seed: int, iteration: int) -> Proposal:
        return Proposal(self.text, PROGRAM)


class _KnowledgeSession:
    """The loop's side of knowledge for one workload: prompts, the repair queue, learning."""

    def __init__(self, knowledge, workload: Workload, spec: HardwareSpec, proposer: Proposer):
        from ..npu.target import api_view

        self.kb, self.workload, self.spec = knowledge, workload, spec
        self.view = api_view(spec)
        self.proposer = getattr(proposer, "name", type(proposer).__name__)
        self.pending: list = []
        self.tried: set = set()
        self.in_a_row = 0

    def next_repair(self):
        """The next repair, or None for the proposer's turn (after a few repairs in a row)."""
        from ..knowledge.base import REPAIRS_IN_A_ROW

        # a program queued twice (found again from a newer kernel, and so queued earlier) runs once
        while self.pending and ("text", self.pending[0].text) in self.tried:
            self.pending.pop(0)
        if not self.pending or self.in_a_row >= REPAIRS_IN_A_ROW:
            self.in_a_row = 0
            return None
        self.in_a_row += 1
        return self.pending.pop(0)

    def prompt_items(self, result: TuneResult) -> list[str]:
        """Retrieval for the next proposal: the last fault, else the best kernel's bottleneck,
        else the workload itself (before the first proposal)."""
        last = result.candidates[-1] if result.candidates else None
        about = last if last is not None and last.fault_records else result.best
        return self.kb.prompt_items(self.kb.query(self.workload, about))

    def after(self, cand: Candidate, repair, result: TuneResult) -> None:
        from ..knowledge.base import first_fault, progressed, worked

        depth = 0
        if cand.text:
            self.tried.add(("text", cand.text))
        if repair is not None:
            cand.origin, cand.repairs = repair.origin, repair.before.iteration
            cand.repair = f"{repair.rewrite}({', '.join(f'{k}={v!r}' for k, v in sorted(repair.params.items()))})"
            self.kb.observe(repair, cand, workload=self.workload, target=self.spec.name, proposer=self.proposer)
            depth = repair.depth
            fixed = worked(repair, cand)
            if fixed:  # the alternatives for the same trigger are moot
                self.pending = [r for r in self.pending if r.before is not repair.before]
            if not progressed(repair, cand) or (repair.trial and not fixed):
                return
        elif result.iterations > 1:  # the proposer's own fix of the last fault, if a rewrite says what it did
            fix = self.kb.explain(result.candidates[-2], cand, self.workload, self.view)
            if fix is not None:
                self.kb.observe(fix, cand, workload=self.workload, target=self.spec.name, proposer=self.proposer)
        if first_fault(cand) is not None or (cand.is_result and result.best is cand):
            # a correct kernel ends a chain of legality repairs: its speed-ups start a new one
            self.pending[:0] = self.kb.plan(cand, self.workload, self.view, depth=0 if cand.is_result else depth,
                                            tried=self.tried)


def _evaluate(task: Task, workload: Workload, spec: HardwareSpec, proposer: Proposer, iteration: int, *,
              seed: int, worker: HostWorker, trials: int, timeout: float, executed: dict,
              reference_cycles: int | None) -> Candidate:
    """One candidate, from proposal to cycles; every failure is recorded on it."""
    cand = Candidate(iteration)
    start = time.perf_counter()
    try:
        _run(cand, task, workload, spec, proposer, seed=seed, worker=worker, trials=trials, timeout=timeout,
             executed=executed, reference_cycles=reference_cycles)
    except Exception as err:  # noqa: BLE001 - a bug for one candidate must not end the search
        cand.outcome = INTERNAL_ERROR
        cand.error = f"{cand.stage}: {_one_line(err)}"
    cand.wall_s = time.perf_counter() - start
    return cand


def _run(cand: Candidate, task: Task, workload: Workload, spec: HardwareSpec, proposer: Proposer, *,
         seed: int, worker: HostWorker, trials: int, timeout: float, executed: dict,
         reference_cycles: int | None) -> None:
    cand.stage = "propose"
    try:
        proposal = proposer.propose(task, seed=seed, iteration=cand.iteration)
    except Exception as err:  # noqa: BLE001 - proposers should not raise; if one does, it is its candidate's failure
        cand.outcome, cand.error = NO_PROPOSAL, f"the proposer raised {_one_line(err)}"
        return
    if not isinstance(proposal, Proposal):
        cand.outcome, cand.error = NO_PROPOSAL, f"the proposer returned {type(proposal).__name__}, not a Proposal"
        return
    cand.llm_calls = proposal.llm_calls
    cand.kind = proposal.kind
    if proposal.text is None:
        cand.outcome, cand.error = NO_PROPOSAL, proposal.error or "the proposer gave no text"
        return
    if not isinstance(proposal.text, str):
        cand.outcome = NO_PROPOSAL
        cand.error = f"the proposal's text is {type(proposal.text).__name__}, not str"
        return
    cand.text = proposal.text

    cand.stage = "admit"
    module, refusal = _admit(proposal.text, proposal.kind, workload)
    if refusal:
        cand.outcome, cand.admission = ADMISSION, refusal
        return
    cand.module = module

    cand.stage = "signature"
    problem = check_signature(module, workload)
    if problem:
        cand.outcome = SIGNATURE
        cand.admission = f"the kernel's signature does not match the workload: {problem}"
        return

    cand.stage = "verify"
    faults = verify(module, spec)
    if faults:
        cand.outcome = FAULT
        cand.faults = tuple(f.code for f in faults)
        cand.fault_log = tuple(f.log for f in faults)
        cand.fault_records = tuple(f.to_dict() for f in faults)
        return

    cand.stage = "execute"
    key = ir_key(module)  # not script(): exponential on shared subterms
    res = executed.get(key)
    if res is None:
        res = execute(module, workload, trials=trials, seed=seed, timeout=timeout, worker=worker)
        if res.correct:  # a hang or crash may be the machine's fault: only a pass is final
            executed[key] = res
    cand.exec_status, cand.exec_message = res.status, res.message
    if not res.correct:
        cand.outcome = WRONG if res.status == "mismatch" else res.status
        return

    cand.stage = "time"
    try:
        profile = time_kernel(module, spec, workload)
    except SimulatorError as err:
        cand.outcome, cand.error = TIMING_ERROR, str(err)
        return
    cand.cycles, cand.bottleneck = profile.cycles, profile.bottleneck
    cand.busy = {pipe: busy / profile.cycles for pipe, busy in profile.busy.items()} if profile.cycles else {}
    cand.roofline_cycles, cand.model_bug = profile.roofline_cycles, profile.model_bug
    cand.stage, cand.outcome = "done", OK
    verdict = gate(cycles=profile.cycles, roofline_cycles=profile.roofline_cycles,
                   reference_cycles=reference_cycles, model_bug=profile.model_bug)
    if verdict.flagged:
        cand.outcome, cand.flag_reason = FLAGGED, verdict.reason


def _admit(text: str, kind: str, workload: Workload):
    """(module, '') for admitted text, (None, rendered refusal) otherwise."""
    if kind == PROGRAM:
        applied = apply_program(text, workload.module())
        return (applied.module, "") if applied.ok else (None, applied.error.render())
    if kind == TVMSCRIPT:
        from ..propose.sandbox import parse_tvmscript

        parsed = parse_tvmscript(text)
        return (parsed.module, "") if parsed.ok else (None, parsed.error.render())
    return None, f"unknown proposal kind {kind!r} (expected {PROGRAM!r} or {TVMSCRIPT!r})"


def _one_line(err: BaseException) -> str:
    lines = [ln.strip() for ln in str(err).strip().splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[-1]}" if lines else type(err).__name__


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
