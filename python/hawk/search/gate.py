"""gate: a timed kernel that is too good to be true is flagged for review, never a result.

Two rules, both on numbers the harness already has:

- faster than the workload's roofline: the roofline is a lower bound for any kernel, so the
  NPU model is wrong (``Profile.model_bug``) and the cycles say nothing about the kernel;
- more than ``MAX_SPEEDUP`` times faster than the vendor reference: what an exploit of the
  model looks like (work done but not charged). A person looks before it counts.

Without a reference only the roofline rule applies. Pure: numbers in, verdict out.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_SPEEDUP = 10.0  # over the reference; beyond it a kernel is held for review

OK = "ok"
FLAGGED = "flagged"


@dataclass(frozen=True)
class Verdict:
    """``status`` is OK or FLAGGED; ``reason`` says which rule fired, with the numbers."""

    status: str = OK
    reason: str = ""

    @property
    def flagged(self) -> bool:
        return self.status == FLAGGED


def gate(*, cycles: int | None, roofline_cycles: int | None = None, reference_cycles: int | None = None,
         model_bug: bool = False) -> Verdict:
    """Judge one timed kernel. An untimed kernel (``cycles`` None) has nothing to judge."""
    if cycles is None:
        return Verdict()
    if model_bug or (roofline_cycles is not None and cycles < roofline_cycles):
        bound = f": {cycles} < {roofline_cycles} cycles" if roofline_cycles is not None else ""
        return Verdict(FLAGGED, f"faster than the roofline{bound}")
    if cycles <= 0:  # only reachable without a roofline; no real kernel takes no time
        return Verdict(FLAGGED, f"{cycles} cycles: no work was charged")
    if reference_cycles and reference_cycles / cycles > MAX_SPEEDUP:
        return Verdict(FLAGGED, f"{reference_cycles / cycles:.1f}x faster than the reference "
                                f"({cycles} vs {reference_cycles} cycles)")
    return Verdict()
