"""Workloads: the operators Hawk generates kernels for."""

from .loader import load_workloads
from .workload import (
    CATEGORIES, TensorSpec, Workload, WorkloadError, from_te, normal_inputs, positive_inputs,
)

__all__ = [
    "CATEGORIES", "TensorSpec", "Workload", "WorkloadError", "from_te", "load_workloads",
    "normal_inputs", "positive_inputs",
]
