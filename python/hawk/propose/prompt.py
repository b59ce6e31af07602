"""Prompts: what a kernel author is told about a task.

The workload's TensorIR, the target's api view (scope names, intrinsic names and
signatures), the previous attempt with what the device said about it, and retrieved
knowledge. Nothing is rendered from the spec's capacities, paths, alignments or costs.
Such numbers still reach a prompt the way they reach a programmer on a real NPU: the
device log quotes what it observed (a SCOPE_OVERFLOW gives the bytes asked for and the
scope's capacity, a misaligned DMA its burst_bytes and address range, an ILLEGAL_PATH the
two scopes), a correct attempt its cycles and bottleneck pipe, and knowledge carries what
was learned from such logs. ``Feedback`` is plain text on purpose: it is what an LLM would
read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..ir.workload import Workload
from ..npu.spec import HardwareSpec
from ..npu.target import ApiView, api_view
from .program import PRIMITIVES


@dataclass(frozen=True)
class Feedback:
    """What happened to the previous attempt, as the device and the harness reported it."""

    program: str
    admission: str = ""  # the admission error, rendered with its caret
    device_log: tuple[str, ...] = ()  # fault log lines
    mismatch: str = ""  # wrong results, timeout or crash on the host
    cycles: int | None = None
    bottleneck: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.admission or self.device_log or self.mismatch)

    def render(self) -> str:
        lines = ["Previous attempt:", "```python", self.program.rstrip(), "```"]
        if self.admission:
            lines += ["It was refused before running:", self.admission]
        elif self.device_log:
            lines += ["The NPU reported:"] + [f"  {ln}" for ln in self.device_log]
        elif self.mismatch:
            lines += [f"It ran but the result is wrong: {self.mismatch}"]
        elif self.cycles is not None:
            lines += [f"It is correct: {self.cycles} cycles, bottleneck pipe {self.bottleneck}. Make it faster."]
        return "\n".join(lines)


@dataclass(frozen=True)
class Task:
    """One proposal request: everything a proposer may know."""

    workload: Workload
    view: ApiView
    feedback: Feedback | None = None
    knowledge: tuple[str, ...] = ()  # retrieved triples as the prompt renders them (hawk.knowledge.render)

    @classmethod
    def for_target(cls, workload: Workload, spec: HardwareSpec, feedback: Feedback | None = None,
                   knowledge: Sequence[str] = ()) -> Task:
        return cls(workload, api_view(spec), feedback, tuple(knowledge))


SYSTEM = """You write TensorIR schedules for an NPU with explicit on-chip memory scopes.
Answer with one Python code block holding a schedule program: one `sch.<primitive>(...)`
call per line, optionally assigned to names (`b0 = sch.get_sblock(name="C")`,
`l1, l2 = sch.get_loops(block=b0)`). Arguments are literals, names bound by earlier lines,
`name[index]`, or lists of those; `transform_layout` may take a lambda of index arithmetic.
Allowed primitives: {primitives}.
Data moves between scopes with cache_read / cache_write / set_scope; compute on the matrix
unit with sch.tensorize and one of the target's intrinsics; `sch.vectorize` puts a block on
the vector unit; annotate a staging block with ann_key="double_buffer_scope", ann_val=0 to
double-buffer it."""


def build_messages(task: Task) -> list[dict]:
    """Chat messages for an OpenAI-compatible endpoint."""
    parts = [
        f"Target NPU:\n{task.view.render()}",
        f"Workload `{task.workload.name}` ({task.workload.category}), TensorIR:\n```python\n"
        f"{task.workload.func.script().rstrip()}\n```",
    ]
    if task.knowledge:
        parts.append("What is known about this NPU:\n" + "\n".join(f"- {k}" for k in task.knowledge))
    if task.feedback is not None:
        parts.append(task.feedback.render())
    parts.append("Write the schedule program.")
    return [
        {"role": "system", "content": SYSTEM.format(primitives=", ".join(sorted(PRIMITIVES)))},
        {"role": "user", "content": "\n\n".join(parts)},
    ]
