"""The NPU runtime model: verify (pure: IR -> faults) and execute (host, in a worker)."""

from .execute import TOLERANCE, ExecResult, HostWorker, execute, reference_outputs
from .fault import Fault
from .program import Program, ProgramError, read_program
from .verify import verify

__all__ = [
    "TOLERANCE", "ExecResult", "Fault", "HostWorker", "Program", "ProgramError", "execute",
    "read_program", "reference_outputs", "verify",
]
