"""IR-level features of a kernel: the hardware-semantic axis of knowledge retrieval.

Read off the kernel's TensorIR alone (``hawk.runtime.program.read_program``, which needs no
spec): per-scope footprints, arithmetic intensity, the mix of work by unit kind, DMA run
lengths and their alignment, dtype widths. Numbers that span orders of magnitude are on a
log2 scale so that a cosine between two feature vectors compares shapes of kernels, not
sizes. The bottleneck pipe of a profile, when there is one, is added by the caller
(``with_bottleneck``): it is what the device said, not what the IR says.
"""

from __future__ import annotations

import math

import tvm

KINDS = ("intrin", "vector", "scalar", "copy")


def scope_peaks(program) -> dict[str, int]:
    """Peak live bytes per on-chip scope (double-buffered allocations twice), no alignment."""
    from ..runtime.program import Loop, Region

    def peak(nodes, scope):
        best = 0
        for node in nodes:
            if isinstance(node, Loop):
                best = max(best, peak(node.body, scope))
            elif isinstance(node, Region):
                own = sum(a.bytes * (2 if a.double else 1) for a in node.allocs if a.scope == scope)
                best = max(best, own + peak(node.body, scope))
        return best

    scopes = {a.scope for r in program.regions() for a in r.allocs}
    return {s: peak(program.body, s) for s in sorted(scopes)}


def kernel_features(kernel) -> dict[str, float]:
    """The feature vector of a kernel (an IRModule or PrimFunc); {} if it cannot be read."""
    from ..runtime.program import ProgramError, read_program

    try:
        program = read_program(kernel)
    except ProgramError:
        return {}
    return program_features(program)


def program_features(program) -> dict[str, float]:
    feats: dict[str, float] = {}
    for scope, nbytes in scope_peaks(program).items():
        feats[f"fp:{scope}"] = math.log2(1 + nbytes)
    work = dict.fromkeys(KINDS, 0.0)
    ops = moved = 0.0
    runs, aligns, bits = [], [], set()
    for instr in program.instrs():
        iters = math.prod(lp.extent for lp in instr.loops) if instr.loops else 1
        for dtype in instr.dtypes:
            bits.add(tvm.runtime.DataType(dtype).bits)
        if instr.kind == "copy":
            work["copy"] += iters
            src, dst = instr.reads[0], instr.writes[0]
            elem = tvm.runtime.DataType(dst.dtype).bits // 8
            if "global" in (src.scope, dst.scope):
                moved += iters * elem
            run = (instr.loops[-1].extent if instr.loops else 1) * elem
            runs.append(math.log2(run))
            aligns.append(min(12, (run & -run).bit_length() - 1))
        elif instr.kind == "intrin":  # one instruction covers a tile: count its elements
            tile = math.prod(instr.operands[-1].extent) if instr.operands else 1
            work["intrin"] += iters * tile
            ops += iters * tile * 2
        else:
            work["vector" if instr.vectorized else "scalar"] += iters
            ops += iters * max(1, instr.ops)
            moved += sum(iters * tvm.runtime.DataType(a.dtype).bits // 8
                         for a in instr.reads + instr.writes if a.scope == "global")
    total = sum(work.values()) or 1.0
    feats.update({f"unit:{k}": v / total for k, v in work.items()})
    feats["intensity"] = math.log2(1 + ops / max(1.0, moved))
    feats["work"] = math.log2(1 + total)
    if runs:
        feats["dma_run"] = sum(runs) / len(runs)
        feats["dma_align"] = float(min(aligns))
    if bits:
        feats["bits_max"], feats["bits_min"] = float(max(bits)), float(min(bits))
    return feats


def with_bottleneck(features: dict[str, float], pipe: str, profile: dict[str, float] | None = None) -> dict:
    """Features plus the profile: the bottleneck pipe and every pipe's busy fraction."""
    out = dict(features)
    if pipe:
        out[f"bottleneck:{pipe}"] = 1.0
    for name, frac in (profile or {}).items():
        out[f"busy:{name}"] = float(frac)
    return out


def cosine(a: dict[str, float], b: dict[str, float], weights: dict[str, float] | None = None) -> float:
    """Cosine similarity of two sparse feature vectors, with optional per-feature weights."""
    w = weights or {}
    keys = set(a) | set(b)
    dot = sum(a.get(k, 0.0) * b.get(k, 0.0) * w.get(k, 1.0) ** 2 for k in keys)
    na = math.sqrt(sum((a.get(k, 0.0) * w.get(k, 1.0)) ** 2 for k in keys))
    nb = math.sqrt(sum((b.get(k, 0.0) * w.get(k, 1.0)) ** 2 for k in keys))
    return dot / (na * nb) if na and nb else 0.0
