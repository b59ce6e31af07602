"""Reference kernels: the "vendor library" of each preset, legal and correct on the model.

A reference is a schedule function ``fn(sch, workload, spec)`` registered for a preset
and an operator family (``workload.op``). It may read the spec: the vendor knows the
hardware; proposers never see these functions.
"""

from __future__ import annotations

from collections.abc import Callable

import tvm
from tvm import s_tir

from ...ir import Workload
from ...npu import HardwareSpec, register_intrinsics

ScheduleFn = Callable[[s_tir.Schedule, Workload, HardwareSpec], None]
_LIBRARY: dict[tuple[str, str], ScheduleFn] = {}


class NoReference(LookupError):
    """No vendor kernel exists for this workload on this target."""


def vendor_kernel(preset: str, *ops: str):
    def register(fn: ScheduleFn) -> ScheduleFn:
        for op in ops:
            _LIBRARY[(preset, op)] = fn
        return fn

    return register


def reference_ops(spec: HardwareSpec) -> list[str]:
    _load()
    return sorted(op for preset, op in _LIBRARY if preset == spec.name)


def has_reference(workload: Workload, spec: HardwareSpec) -> bool:
    _load()
    return (spec.name, workload.op) in _LIBRARY


def reference_kernel(workload: Workload, spec: HardwareSpec) -> tvm.IRModule:
    """The vendor kernel for ``workload`` on ``spec``; raises NoReference when none exists."""
    _load()
    fn = _LIBRARY.get((spec.name, workload.op))
    if fn is None:
        raise NoReference(f"no reference kernel for op {workload.op!r} on {spec.name}")
    register_intrinsics(spec)
    sch = s_tir.Schedule(workload.module())
    fn(sch, workload, spec)
    return sch.mod


def _load() -> None:
    from . import davinci, davinci_conv, edge  # noqa: F401 - registration side effect
