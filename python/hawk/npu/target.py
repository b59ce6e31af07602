"""The TVM Target of a spec, and the api view: the only part of a spec a proposer may see."""

from __future__ import annotations

import re
from dataclasses import dataclass

import tvm

from .intrinsics import intrinsics
from .spec import HardwareSpec

_tagged: dict[str, str] = {}
_specs: dict[str, HardwareSpec] = {}  # fingerprint -> spec, for passes that only see the Target
_OPERAND = re.compile(r"(\w): (\w+)\[([\d, ]+)\] @ ([\w.]+)")


def target_config(spec: HardwareSpec) -> dict:
    return {
        "kind": "llvm",
        "keys": ["npu", "cpu"],
        "model": spec.name,
        "feature.npu_spec": spec.name,
        "feature.npu_fingerprint": spec.fingerprint(),
    }


def target(spec: HardwareSpec) -> tvm.target.Target:
    """An llvm-kind Target keyed ``npu`` and registered under the tag ``hawk/<name>``."""
    tag = f"hawk/{spec.name}"
    _specs[spec.fingerprint()] = spec
    if _tagged.get(tag) != spec.fingerprint():
        tvm.target.register_tag(tag, target_config(spec), override=True)
        _tagged[tag] = spec.fingerprint()
    return tvm.target.Target(tag)


def spec_of(tgt: tvm.target.Target) -> HardwareSpec | None:
    """The spec a Hawk target was made from (None: not a Hawk NPU target)."""
    from .presets import load_spec

    attrs = dict(tgt.attrs) if tgt is not None else {}
    fingerprint, name = attrs.get("feature.npu_fingerprint"), attrs.get("feature.npu_spec")
    if fingerprint is None:
        return None
    if str(fingerprint) in _specs:
        return _specs[str(fingerprint)]
    try:
        spec = load_spec(str(name))
    except Exception:  # noqa: BLE001 - a spec file this process never loaded
        return None
    return spec if spec.fingerprint() == str(fingerprint) else None


@dataclass(frozen=True)
class ApiView:
    """What a kernel author may know of an NPU: scope names and the instruction API.

    Capacities, legal data paths, alignments, fractal tables and costs are absent on
    purpose; runtime knowledge is the only channel for those.
    """

    target: str
    scopes: tuple[str, ...]
    intrinsics: tuple[str, ...]
    signatures: tuple[str, ...]

    def render(self) -> str:
        lines = [f"target: {self.target}", "memory scopes: " + ", ".join(self.scopes), "intrinsics:"]
        lines += [f"  {sig}" for sig in self.signatures]
        return "\n".join(lines)

    def operands(self, intrinsic: str) -> dict[str, tuple[str, tuple[int, ...], str]]:
        """An intrinsic's operands as read off its signature: letter -> (dtype, shape, scope)."""
        sig = self.signatures[self.intrinsics.index(intrinsic)]
        return {m.group(1): (m.group(2), tuple(int(x) for x in m.group(3).split(",")), m.group(4))
                for m in _OPERAND.finditer(sig)}


def api_view(spec: HardwareSpec) -> ApiView:
    found = intrinsics(spec)
    return ApiView(
        target=spec.name,
        scopes=tuple(s.name for s in spec.scopes),
        intrinsics=tuple(i.name for i in found),
        signatures=tuple(i.signature for i in found),
    )
