"""NPU descriptions: HardwareSpec, presets, TVM target, intrinsics and the api view."""

from .intrinsics import (
    INTRIN_ATTR,
    Intrinsic,
    find_intrinsic,
    intrinsics,
    register_intrinsics,
)
from .manual import CODES, STANDARD_MANUAL, FaultCode
from .presets import load_spec, preset_names
from .spec import (
    DataPath,
    Fractal,
    HardwareSpec,
    MatrixShape,
    Scope,
    SpecError,
    Unit,
    with_capacity,
)
from .target import ApiView, api_view, spec_of, target

__all__ = [
    "CODES", "INTRIN_ATTR", "STANDARD_MANUAL", "ApiView", "DataPath", "FaultCode", "Fractal",
    "HardwareSpec", "Intrinsic", "MatrixShape", "Scope", "SpecError", "Unit", "api_view",
    "find_intrinsic", "intrinsics", "load_spec", "preset_names", "register_intrinsics",
    "spec_of", "target", "with_capacity",
]
