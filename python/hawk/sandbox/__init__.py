"""Confined child processes for everything hostile: parsing TVMScript, building and running kernels."""

from .confine import Confinement
from .process import Limits, SandboxError, SandboxProcess, SandboxTimeout

__all__ = ["Confinement", "Limits", "SandboxError", "SandboxProcess", "SandboxTimeout"]
