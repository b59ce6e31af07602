"""The proposer interface: a task in, a kernel text out (or the reason there is none)."""

from __future__ import annotations

from dataclasses import dataclass

from .prompt import Task

PROGRAM, TVMSCRIPT = "program", "tvmscript"


@dataclass(frozen=True)
class Proposal:
    """A proposed kernel: a schedule program or a TVMScript module, as text.

    ``text`` is None when the proposer produced nothing usable (dead endpoint, an answer
    with no program); ``error`` then says why. ``llm_calls`` counts calls spent on it.
    """

    text: str | None
    kind: str = PROGRAM
    llm_calls: int = 0
    error: str = ""


class Proposer:
    """Base class. ``propose`` must not raise on bad luck: failures are Proposals with error."""

    name = "proposer"

    def propose(self, task: Task, *, seed: int, iteration: int) -> Proposal:
        raise NotImplementedError


def kind_of(text: str) -> str:
    """A TVMScript module or function, or a schedule program."""
    return TVMSCRIPT if ("@T.prim_func" in text or "@I.ir_module" in text) else PROGRAM
