"""A copy of a spec whose names say nothing about their use.

On-chip scopes become ``global.npu.m0``, ``m1``, ... in the spec's order, units ``u0``, ...,
pipes ``p0``, ..., the spec ``npu-<hash>`` with no description; intrinsic names follow
(``npu-<hash>.u0.mma_f16_f32``: the op stays, it is the instruction API). Capacities, paths,
alignments, costs and the fault manual are the original's, so a kernel meets the same
constraints under the new names: what changes is only what the names suggest to an author.
"""

from __future__ import annotations

from hawk.npu import HardwareSpec, intrinsics


def neutral_copy(spec: HardwareSpec) -> HardwareSpec:
    scope = {s.name: f"global.npu.m{i}" for i, s in enumerate(spec.onchip_scopes)}
    unit = {u.name: f"u{i}" for i, u in enumerate(spec.units)}
    pipes = dict.fromkeys([p.pipe for p in spec.paths] + [u.pipe for u in spec.units])  # in order, once each
    pipe = {p: f"p{i}" for i, p in enumerate(pipes)}
    data = spec.to_dict()
    data["name"], data["description"] = f"npu-{spec.fingerprint()[:8]}", ""
    for s in data["scopes"]:
        s["name"] = scope.get(s["name"], s["name"])  # the off-chip scope keeps its name
    for p in data["paths"]:
        p["src"], p["dst"], p["pipe"] = scope.get(p["src"], p["src"]), scope.get(p["dst"], p["dst"]), pipe[p["pipe"]]
    for u in data["units"]:
        u["name"], u["pipe"] = unit[u["name"]], pipe[u["pipe"]]
        u["reads"] = [scope.get(s, s) for s in u["reads"]]
        u["writes"] = [scope.get(s, s) for s in u["writes"]]
    return HardwareSpec.from_dict(data)


def renaming(spec: HardwareSpec, neutral: HardwareSpec) -> dict[str, str]:
    """Old -> new for every name a program can mention: on-chip scopes and intrinsics."""
    names = {a.name: b.name for a, b in zip(spec.onchip_scopes, neutral.onchip_scopes, strict=True)}
    names.update({a.name: b.name for a, b in zip(intrinsics(spec), intrinsics(neutral), strict=True)})
    return names
