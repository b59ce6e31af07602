"""Search: the generation loop that turns proposals into the best legal, correct kernel."""

from .loop import DEFAULT_BUDGET, Candidate, TuneResult, tune

__all__ = ["DEFAULT_BUDGET", "Candidate", "TuneResult", "tune"]
