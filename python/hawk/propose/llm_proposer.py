"""The LLM proposer: a Task becomes chat messages, the answer becomes a Proposal."""

from __future__ import annotations

from .llm import LLMClient, extract_program
from .prompt import Task, build_messages
from .proposer import Proposal, Proposer, kind_of


class LLMProposer(Proposer):
    """``fallback`` (e.g. the offline proposer) writes the kernel of an iteration whose LLM
    call failed after its retries; ``fallbacks`` counts how often it did."""

    name = "llm"

    def __init__(self, client: LLMClient, fallback: Proposer | None = None):
        self.client = client
        self.fallback = fallback
        self.fallbacks = 0

    def propose(self, task: Task, *, seed: int, iteration: int) -> Proposal:
        # a different seed per iteration: identical prompts would hit the response cache
        reply = self.client.complete(build_messages(task), seed=seed * 1000 + iteration)
        if reply.error and self.fallback is not None:
            self.fallbacks += 1
            stand_in = self.fallback.propose(task, seed=seed, iteration=iteration)
            return Proposal(stand_in.text, stand_in.kind, llm_calls=1, error=stand_in.error)
        if reply.error:
            return Proposal(None, llm_calls=1, error=f"LLM call failed: {reply.error}")
        text = extract_program(reply.text)
        if text is None:
            return Proposal(None, llm_calls=1, error="the answer holds no program")
        return Proposal(text, kind_of(text), llm_calls=1)
