"""Search: the generation loop that turns proposals into the best legal, correct kernel,
and the gate that holds implausible kernels for review."""

from .gate import MAX_SPEEDUP, Verdict, gate
from .loop import DEFAULT_BUDGET, Candidate, TuneResult, tune

__all__ = ["DEFAULT_BUDGET", "MAX_SPEEDUP", "Candidate", "TuneResult", "Verdict", "gate", "tune"]
