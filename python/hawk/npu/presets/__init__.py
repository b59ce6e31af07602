"""Shipped NPU presets, stored as spec files beside this module."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from ..spec import HardwareSpec, SpecError

_cache: dict[str, HardwareSpec] = {}


def preset_names() -> list[str]:
    files = resources.files(__name__).iterdir()
    return sorted(f.name[: -len(".json")] for f in files if f.name.endswith(".json"))


def load_spec(target: str | Path | HardwareSpec) -> HardwareSpec:
    """A spec from a preset name, a spec file path, or a spec itself."""
    if isinstance(target, HardwareSpec):
        return target
    name = str(target)
    if name in preset_names():
        if name not in _cache:
            text = resources.files(__name__).joinpath(f"{name}.json").read_text()
            _cache[name] = HardwareSpec.from_json(text, f"preset {name}")
        return _cache[name]
    if Path(name).is_file():
        return HardwareSpec.load(name)
    raise SpecError(f"unknown target {name!r}: not a preset ({', '.join(preset_names())}) nor a spec file")
