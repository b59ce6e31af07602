"""Exploration: the repairs worth trying for what the device said, and how knowledge binds.

Guided only by the fault's fields (its scope, the two scopes of a path, the unit, the
capacity it reported), by the profile (bottleneck and busy pipes), by the program itself
and by the api view (scope and intrinsic names and signatures). Nothing here reads a spec.
"""

from __future__ import annotations

from ..npu import manual
from .rewrite import PARAMS, parse_script

# A learned rewrite's parameters that the context it is applied in supplies: a fix learned on
# one scope's overflow fits the tiles to whatever capacity the next fault reports.
BOUND_BY_FAULT = {
    ("fit_tiles", "scope"): "scope", ("fit_tiles", "capacity"): "capacity",
    ("feed", "dst"): "dst", ("drain", "src"): "src", ("rescope", "scope"): "scope",
    ("relayout", "scope"): "scope", ("tile_deeper", "scope"): "scope", ("tile_deeper", "capacity"): "capacity",
}
VECTOR_WIDTHS = (64, 128, 32, 16)


def fault_fields(fault: dict) -> dict[str, str]:
    """The fields of a fault (``Fault.to_dict``) a context keeps: scopes, unit, dtype, numbers."""
    fields = {k: str(v) for k, v in fault.get("observed", {}).items()}
    for key in ("scope", "pipe"):
        if fault.get(key):
            fields[key] = str(fault[key])
    return fields


def explore_fault(fault: dict, view) -> list[tuple[str, dict]]:
    """Rewrites to try against one fault, most promising first."""
    code, f = fault.get("code", ""), fault_fields(fault)
    onchip = [s for s in view.scopes if s != "global"]
    if code == manual.SCOPE_OVERFLOW and "capacity" in f and f.get("scope"):
        fit = {"scope": f["scope"], "capacity": int(f["capacity"])}
        return [("fit_tiles", fit), ("tile_deeper", fit), ("tile_columns", {"factor": 64})]
    if code == manual.ILLEGAL_PATH and "src" in f and "dst" in f:
        src, dst = f["src"], f["dst"]
        vias = _by_role(view, [s for s in onchip if s not in (src, dst)], operand=False)
        if dst != "global":
            return [("feed", {"dst": dst, "via": v}) for v in vias]
        return [("drain", {"src": src, "via": v}) for v in vias]
    if code in (manual.UNIT_SCOPE, manual.FRACTAL_MISMATCH, manual.UNIT_DTYPE) and f.get("scope"):
        unit = f.get("unit", "")
        scopes = [s for s in onchip if s != f["scope"]]
        return [("rescope", {"scope": f["scope"], "to": t}) for t in _by_unit(view, scopes, unit)]
    if code == manual.DMA_DISCONTIG and f.get("scope"):  # a strided copy: change the layout where a unit copies
        vias = _by_unit(view, [s for s in onchip if s != f["scope"]], "")
        return [("relayout", {"scope": f["scope"], "via": v}) for v in vias[:2]] + \
            [("retile", {"factor": 2}), ("retile", {"factor": 0.5})]
    if code == manual.DMA_MISALIGN:
        return [("retile", {"factor": 2}), ("retile", {"factor": 0.5})]
    if code == REFUSED and f.get("reason") == "output_block":  # an output's buffer keeps its scope
        return [("stage_outputs", {})]
    return []


REFUSED = "REFUSED"  # not a device fault: TVM refused a schedule call (the admission error says which)
# TVM's refusals a rewrite can answer: the phrase in the message -> the reason recorded
REFUSALS = {"is an output block": "output_block"}


def refusal(admission: str) -> dict | None:
    """A fault-like record of a TVM refusal a rewrite can answer (``{"code": "REFUSED",
    "observed": {"reason": ...}}``), or None."""
    for phrase, reason in REFUSALS.items():
        if phrase in admission:
            return {"code": REFUSED, "observed": {"reason": reason}}
    return None


def explore_bottleneck(program: str, view) -> list[tuple[str, dict]]:
    """Rewrites that may make a correct kernel faster, one of each kind first: put a
    multiply-accumulate on the matrix intrinsic, reduce rows with the vector unit's reduce
    intrinsics, vectorise reductions across their output,
    overlap the loads from global memory, move more data per transfer, vectorise what is
    scalar; then the variants."""
    script = parse_script(program)
    if script is None:
        return []
    first_copies, later = [], []
    seen = set()
    for ln in script.lines:  # the first copy of an operand reads global memory: that is the DMA to hide
        scope = ln.kw.get("storage_scope")
        key = (ln.ref("block"), ln.kw.get("read_buffer_index"))
        if ln.prim != "cache_read" or not isinstance(scope, str):
            continue
        (later if key in seen else first_copies).append(scope)
        seen.add(key)
    staged = list(dict.fromkeys(first_copies + later))
    onchip = [s for s in view.scopes if s != "global"]
    kinds = [[("to_matrix", {"stage": s, "n_tile": 8, "k_tile": 4}) for s in _by_role(view, onchip, operand=False)[:2]],
             [("lane_reduce", {})], [("vectorize_reduce", {"width": VECTOR_WIDTHS[0]})],
             [("double_buffer", {"scope": s}) for s in staged], [("retile", {"factor": 2})],
             [("vectorize", {"width": w}) for w in VECTOR_WIDTHS]]
    return [k[0] for k in kinds if k] + [option for k in kinds for option in k[1:]]


def bind(rewrite: str, params: dict, fault: dict | None) -> dict:
    """A learned rewrite's parameters with the current fault's fields put where they belong."""
    out = dict(params)
    if fault is None:
        return out
    fields = fault_fields(fault)
    for name in PARAMS.get(rewrite, ()):
        field = BOUND_BY_FAULT.get((rewrite, name))
        if field and field in fields:
            value = fields[field]
            out[name] = int(value) if isinstance(params.get(name), int) and value.isdigit() else value
    return out


def _operand_scopes(view) -> set[str]:
    return {op[2] for name in view.intrinsics for op in view.operands(name).values()}


def _by_role(view, scopes: list[str], *, operand: bool) -> list[str]:
    """Scopes no intrinsic names as an operand first (staging), or the other way round."""
    ops = _operand_scopes(view)
    return sorted(scopes, key=lambda s: (s in ops) != operand)


def _by_unit(view, scopes: list[str], unit: str) -> list[str]:
    """Scopes the unit's own intrinsics (by name, ``<target>.<unit>.<op>``) use first, then
    scopes of intrinsics that keep several operands in one scope (compute in place, as a
    vector unit does), then the rest."""
    mine = {op[2] for name in view.intrinsics if unit and f".{unit}." in name
            for op in view.operands(name).values()}
    in_place = set()
    for name in view.intrinsics:
        ops = view.operands(name).values()
        used = {op[2] for op in ops}
        if len(ops) > 1 and len(used) == 1:
            in_place |= used
    return sorted(scopes, key=lambda s: (s not in mine, s not in in_place))
