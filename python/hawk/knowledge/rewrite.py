"""Rewrites: the executable part of knowledge, as transformations of schedule programs.

A rewrite takes a schedule program (the language of ``hawk.propose.program``) and named
parameters and returns the program changed, or None when it does not fit the program (or
TVM refuses the result). Parameters are relative to the context a fault or profile gave,
so a rewrite applies to other shapes, operators and targets:

- ``feed(dst, via)``: data reaches ``dst`` through ``via`` (stage every copy into ``dst``
  through ``via``, or move the staging it already has there);
- ``drain(src, via)``: data leaves ``src`` for global memory through ``via``;
- ``rescope(scope, to)``: buffers the program puts in ``scope`` go to ``to`` instead (the
  operands of a tensorized block stay where the intrinsic wants them);
- ``fit_tiles(scope, capacity)``: shrink the tiles the program splits off until what
  lives in ``scope`` fits the capacity the device reported;
- ``double_buffer(scope)``: double-buffer every copy into ``scope``;
- ``vectorize(width)``: vectorise the innermost loop of every compute block left scalar;
- ``retile(factor)``: scale every constant tile factor (2: larger tiles, fewer transfers).

Nothing here reads a spec: scopes and capacities come from parameters (learned from
device logs) and the api view. Programs are parsed with the admission parser first;
nothing is evaluated.
"""

from __future__ import annotations

import ast
import itertools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..propose.program import _signature, apply_program, parse_program

MAX_FIT_STEPS = 16
PROBE = ("meta_schedule.tiling_structure", "hawk.probe")  # an annotation kernels may carry, a value none does


@dataclass(frozen=True)
class Src:
    """A non-literal argument (a name, ``name[index]``, a lambda), kept as written."""

    text: str


@dataclass
class Line:
    targets: list[str]
    prim: str
    kw: dict[str, object]
    unpack: bool = False  # ``b5, = sch.get_producers(...)``: one value unpacked from a list

    def render(self) -> str:
        params = _signature(self.prim).parameters
        parts = []
        for k, v in self.kw.items():
            if k in params and params[k].kind == params[k].VAR_POSITIONAL:  # reorder(*loops)
                parts += [_literal(x) for x in v]
            else:
                parts.append(f"{k}={_literal(v)}")
        args = ", ".join(parts)
        lhs = ", ".join(self.targets) + ("," if self.unpack and len(self.targets) == 1 else "") + " = " \
            if self.targets else ""
        return f"{lhs}sch.{self.prim}({args})"

    def ref(self, key: str) -> str | None:
        """The variable an argument names (``v3`` for ``v3`` and ``v3[-1]``)."""
        value = self.kw.get(key)
        if isinstance(value, Src):
            m = re.match(r"[A-Za-z_]\w*", value.text)
            return m.group(0) if m else None
        return None


@dataclass
class Script:
    header: list[str]
    lines: list[Line]

    def render(self) -> str:
        return "".join(h + "\n" for h in self.header) + "".join(ln.render() + "\n" for ln in self.lines)

    def names(self) -> set[str]:
        return {t for ln in self.lines for t in ln.targets}

    def fresh(self) -> str:
        """A name prefix no line uses (``k3``; callers may add suffixes to it)."""
        used = self.names()
        n = 0
        while any(u == f"k{n}" or u.startswith(f"k{n}_") for u in used):
            n += 1
        return f"k{n}"

    def creator(self, var: str | None) -> Line | None:
        return next((ln for ln in self.lines if var in ln.targets), None) if var else None

    def block_of(self, var: str | None) -> str | None:
        """The block variable a loop or block variable belongs to (through get_loops, split, fuse)."""
        seen = 0
        while var is not None and seen < 64:
            seen += 1
            line = self.creator(var)
            if line is None:
                return None
            if line.prim in ("get_sblock", "cache_read", "cache_write", "decompose_reduction", "blockize",
                             "rfactor", "reindex"):
                return var
            var = line.ref("block") or line.ref("loop") or (line.ref("loops") if line.prim == "fuse" else None)
        return None

    def tensorized(self) -> dict[str, str]:
        """Block variable -> intrinsic name, for every tensorize line."""
        out = {}
        for ln in self.lines:
            if ln.prim == "tensorize":
                block = self.block_of(ln.ref("block_or_loop"))
                if block is not None and isinstance(ln.kw.get("tensor_intrin"), str):
                    out[block] = ln.kw["tensor_intrin"]
        return out


def _literal(v) -> str:
    if isinstance(v, Src):
        return v.text
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    if isinstance(v, tuple):
        return "(" + ", ".join(_literal(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    return repr(v)


def parse_script(text: str) -> Script | None:
    """The program as lines of keyword calls; None when admission refuses it."""
    stmts, error = parse_program(text)
    if error is not None:
        return None
    header = []
    for raw in text.splitlines():
        if raw.startswith("#"):
            header.append(raw)
        elif raw.strip():
            break
    lines = []
    for stmt in stmts:
        call = stmt.value
        prim = call.func.attr
        unpack = False
        if isinstance(stmt, ast.Assign):
            target = stmt.targets[0]
            unpack = not isinstance(target, ast.Name)
            targets = [target.id] if not unpack else [e.id for e in target.elts]
        else:
            targets = []
        values = [_value(text, a) for a in call.args]
        kw = {k.arg: _value(text, k.value) for k in call.keywords}
        try:
            bound = _signature(prim).bind(None, *values, **kw).arguments
        except TypeError:
            return None
        bound.pop(next(iter(bound)))  # self
        lines.append(Line(targets, prim, dict(bound), unpack))
    return Script(header, lines)


def _value(text: str, node: ast.expr):
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return Src(ast.get_source_segment(text, node) or "")


@dataclass(frozen=True)
class Env:
    """What a rewrite may use besides the program: the workload and the api view."""

    workload: object  # hawk.ir.Workload
    view: object  # hawk.npu.ApiView
    cache: dict = field(default_factory=dict, compare=False)

    def module(self, text: str):
        """The scheduled module of a program, or None if it does not apply."""
        if text not in self.cache:
            applied = apply_program(text, self.workload.module())
            self.cache[text] = applied.module if applied.ok else None
        return self.cache[text]

    def block_name(self, script: Script, var: str) -> str | None:
        """The name TVM gave the block a program variable holds (cache_read names its
        copies itself): the program is run with the block tagged, and the tag looked up."""
        from tvm import s_tir

        key, value = PROBE
        probe = Script(script.header, script.lines + [
            Line([], "annotate", {"block_or_loop": Src(var), "ann_key": key, "ann_val": value})])
        mod = self.module(probe.render())
        if mod is None:
            return None
        sch = s_tir.Schedule(mod)
        found, todo = [], list(sch.get_child_blocks(sch.get_sblock("root")))
        while todo:
            rv = todo.pop()
            block = sch.get(rv)
            if str(block.annotations.get(key, "")) == value:
                found.append(block.name_hint)
            todo += list(sch.get_child_blocks(rv))
        return found[0] if len(found) == 1 else None


Rewrite = Callable[[Script, dict, Env], Script | None]
REWRITES: dict[str, Rewrite] = {}
PARAMS: dict[str, tuple[str, ...]] = {}


def rewrite(*params: str):
    def register(fn):
        REWRITES[fn.__name__] = fn
        PARAMS[fn.__name__] = params
        return fn
    return register


def apply_rewrite(text: str, name: str, params: dict, env: Env) -> str | None:
    """The program rewritten, or None: unknown rewrite, bad parameters, nothing to change,
    or TVM refuses the result."""
    fn = REWRITES.get(name)
    if fn is None or set(params) != set(PARAMS[name]):
        return None
    script = parse_script(text)
    if script is None:
        return None
    before = script.render()  # rewrites change the script in place
    try:
        out = fn(script, dict(params), env)
    except (ValueError, TypeError, KeyError, IndexError, ArithmeticError):
        return None  # parameters of the wrong kind or size for this program (an import is untrusted)
    if out is None:
        return None
    new = out.render()
    if new == before or env.module(new) is None:
        return None
    return new


_CALL = re.compile(r"^\s*([a-z_]+)\((.*)\)\s*$")


def parse_call(line: str) -> tuple[str, dict] | None:
    """``name(k=v, ...)`` as prompts render an executable; None if it is not one.

    Values are JSON literals; the text is hostile, so nothing is evaluated."""
    m = _CALL.match(line)
    if not m or m.group(1) not in REWRITES:
        return None
    try:
        tree = ast.parse(f"f({m.group(2)})", mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    call = tree.body
    if call.args or not isinstance(call, ast.Call):
        return None
    params = {}
    for kw in call.keywords:
        if kw.arg is None:
            return None
        try:
            value = ast.literal_eval(kw.value)
        except (ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
            return None
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            return None
        params[kw.arg] = value
    if set(params) != set(PARAMS[m.group(1)]):
        return None
    return m.group(1), params


# --- data paths -------------------------------------------------------------------------------


def _staging(script: Script, prim: str) -> dict[tuple, list[int]]:
    """(block var, buffer index) -> indexes of the cache_read/cache_write lines on it, in order."""
    key = "read_buffer_index" if prim == "cache_read" else "write_buffer_index"
    chains: dict[tuple, list[int]] = {}
    for i, ln in enumerate(script.lines):
        if ln.prim == prim:
            chains.setdefault((ln.ref("block"), ln.kw.get(key)), []).append(i)
    return chains


def _placement(script: Script, var: str, prims: tuple[str, ...]) -> int | None:
    return next((i for i, ln in enumerate(script.lines) if ln.prim in prims and ln.ref("block") == var), None)


@rewrite("dst", "via")
def feed(script: Script, p: dict, env: Env) -> Script | None:
    dst, via = p["dst"], p["via"]
    if dst == via:
        return None
    changed = False
    for chain in _staging(script, "cache_read").values():
        for pos, idx in enumerate(chain):
            line = script.lines[idx]
            if line.kw.get("storage_scope") != dst:
                continue
            if pos > 0:  # the copy into dst already has a source on chip: make it via
                prev = script.lines[chain[pos - 1]]
                if prev.kw.get("storage_scope") != via:
                    prev.kw["storage_scope"] = via
                    changed = True
                continue
            name = script.fresh()
            script.lines.insert(idx, Line([name], "cache_read", {**line.kw, "storage_scope": via}))
            target = line.targets[0] if line.targets else None
            at = _placement(script, target, ("compute_at",)) if target else None
            if at is not None:
                script.lines.insert(at + 1, Line([], "compute_at", {**script.lines[at].kw, "block": Src(name)}))
            changed = True
            return feed(script, p, env) or script  # indexes moved: go again for the other operands
    return script if changed else None


@rewrite("src", "via")
def drain(script: Script, p: dict, env: Env) -> Script | None:
    src, via = p["src"], p["via"]
    if src == via:
        return None
    for chain in _staging(script, "cache_write").values():
        if not chain:
            continue
        first = script.lines[chain[0]]  # the copy that writes global memory
        if first.kw.get("storage_scope") != src or len(chain) > 1:
            continue
        name = script.fresh()
        script.lines.insert(chain[0], Line([name], "cache_write", {**first.kw, "storage_scope": via}))
        target = first.targets[0] if first.targets else None
        at = _placement(script, target, ("reverse_compute_at", "compute_at")) if target else None
        if at is not None:
            script.lines.insert(at + 1, Line([], script.lines[at].prim, {**script.lines[at].kw, "block": Src(name)}))
        return drain(script, p, env) or script
    return _drain_accumulator(script, src, via, env)


def _drain_accumulator(script: Script, src: str, via: str, env: Env) -> Script | None:
    """A block whose output buffer the program put in ``src`` with ``set_scope`` (an
    accumulator) is read out by the block placed after it (the first ``reverse_compute_at``
    that follows): that block writes into ``via`` instead, and a copy takes its result on
    to global memory (``cache_write`` puts it where the block is)."""
    for at, ln in enumerate(script.lines):
        if ln.prim != "set_scope" or ln.kw.get("storage_scope") != src:
            continue
        placed = next((i for i in range(at + 1, len(script.lines))
                       if script.lines[i].prim == "reverse_compute_at"), None)
        if placed is None:
            continue
        reader = script.lines[placed]
        return Script(script.header, script.lines[:placed + 1] + [
            Line([script.fresh()], "cache_write", {"block": reader.kw["block"], "write_buffer_index": 0,
                                                   "storage_scope": via})] + script.lines[placed + 1:])
    return None


@rewrite("scope", "to")
def rescope(script: Script, p: dict, env: Env) -> Script | None:
    scope, to = p["scope"], p["to"]
    if scope == to:
        return None
    operand_scopes = {}
    for block, intrin in script.tensorized().items():
        if intrin in env.view.intrinsics:
            operand_scopes[block] = {op[2] for op in env.view.operands(intrin).values()}
    changed = False
    for ln in script.lines:
        if ln.prim in ("cache_read", "cache_write", "set_scope") and ln.kw.get("storage_scope") == scope:
            if scope in operand_scopes.get(ln.ref("block"), ()):
                continue
            ln.kw["storage_scope"] = to
            changed = True
    return script if changed else None


# --- sizes ------------------------------------------------------------------------------------


def tile_factors(script: Script) -> list[tuple[int, int]]:
    """(line, position) of every constant inner factor > 1 of a split, except splits that cut
    an instruction's tile (their inner loop is tensorized: its extent is the intrinsic's)."""
    instr_loops = {ln.ref("block_or_loop") for ln in script.lines if ln.prim == "tensorize"}
    for ln in script.lines:  # loops a reorder puts inside a tensorized loop are the instruction's too
        order = [v.text for v in ln.kw.get("ordered_loops", ()) if isinstance(v, Src)] if ln.prim == "reorder" else []
        for k, var in enumerate(order):
            if var in instr_loops:
                instr_loops.update(order[k:])
                break
    out = []
    for i, ln in enumerate(script.lines):
        factors = ln.kw.get("factors") if ln.prim == "split" else None
        if ln.targets and ln.targets[-1] in instr_loops:
            continue
        if isinstance(factors, list):
            for j, f in enumerate(factors):
                if isinstance(f, int) and not isinstance(f, bool) and f > 1 and j > 0:
                    out.append((i, j))
    return out


def _peak(text: str, scope: str, env: Env) -> int | None:
    from ..ir.features import scope_peaks
    from ..runtime.program import ProgramError, read_program

    mod = env.module(text)
    if mod is None:
        return None
    try:
        return scope_peaks(read_program(mod)).get(scope, 0)
    except ProgramError:
        return None


@rewrite("scope", "capacity")
def fit_tiles(script: Script, p: dict, env: Env) -> Script | None:
    scope, capacity = p["scope"], int(p["capacity"])
    peak = _peak(script.render(), scope, env)
    if peak is None or peak <= capacity:
        return None
    for _ in range(MAX_FIT_STEPS):
        best = None
        for i, j in tile_factors(script):
            f = script.lines[i].kw["factors"]
            trial = list(f)
            trial[j] = f[j] // 2
            script.lines[i].kw["factors"] = trial
            got = _peak(script.render(), scope, env)
            script.lines[i].kw["factors"] = f
            if got is not None and got < peak and (best is None or got < best[0]):
                best = (got, i, trial)
        if best is None:
            return None
        peak, i, trial = best
        script.lines[i].kw["factors"] = trial
        if peak <= capacity:
            return script
    return None


@rewrite("factor")
def retile(script: Script, p: dict, env: Env) -> Script | None:
    factor = float(p["factor"])
    if factor <= 0 or factor == 1:
        return None
    changed = False
    for i, j in tile_factors(script):
        f = list(script.lines[i].kw["factors"])
        new = max(1, int(f[j] * factor))
        if new != f[j]:
            f[j] = new
            script.lines[i].kw["factors"] = f
            changed = True
    return script if changed else None


# --- overlap and units ------------------------------------------------------------------------


@rewrite("scope")
def double_buffer(script: Script, p: dict, env: Env) -> Script | None:
    scope = p["scope"]
    annotated = {ln.ref("block_or_loop") for ln in script.lines
                 if ln.prim == "annotate" and ln.kw.get("ann_key") == "double_buffer_scope"}
    changed = False
    for ln in list(script.lines):
        if ln.prim != "cache_read" or ln.kw.get("storage_scope") != scope or not ln.targets:
            continue
        var = ln.targets[0]
        if var in annotated:
            continue
        at = _placement(script, var, ("compute_at",))
        if at is None:
            continue
        script.lines.insert(at + 1, Line([], "annotate", {"block_or_loop": Src(var),
                                                          "ann_key": "double_buffer_scope", "ann_val": 0}))
        changed = True
    return script if changed else None


@rewrite("width")
def vectorize(script: Script, p: dict, env: Env) -> Script | None:
    width = int(p["width"])
    if width < 2:
        return None
    from tvm import tirx

    mod = env.module(script.render())
    if mod is None:
        return None
    vectorized = {script.block_of(ln.ref("loop")) for ln in script.lines if ln.prim == "vectorize"}
    tensorized = set(script.tensorized())
    changed = False
    copies_in_place = _copies_within_a_scope(script)
    blocks = [(ln.targets[0], ln.kw.get("name")) for ln in script.lines if ln.prim == "get_sblock" and ln.targets]
    blocks += [(var, None) for ln in script.lines if ln.prim == "get_child_blocks" for var in ln.targets]
    blocks += [(var, None) for var in sorted(copies_in_place)]
    for var, name in blocks:
        if var in vectorized or var in tensorized or name == "root":
            continue
        name = name if isinstance(name, str) else env.block_name(script, var)
        extent = _innermost_spatial_extent(mod, name, tirx)
        if not extent or extent < 2:
            continue
        lanes = math.gcd(extent, width)
        loops, inner = script.fresh(), None
        script.lines.append(Line([loops], "get_loops", {"block": Src(var)}))
        if lanes < extent:
            outer, inner = script.fresh(), None
            script.lines.append(Line([outer, outer + "_v"], "split",
                                     {"loop": Src(f"{loops}[-1]"), "factors": [None, lanes]}))
            inner = outer + "_v"
        script.lines.append(Line([], "vectorize", {"loop": Src(inner or f"{loops}[-1]")}))
        if env.module(script.render()) is None:  # TVM refuses (e.g. a reduction innermost): undo
            del script.lines[-(3 if lanes < extent else 2):]
            continue
        changed = True
    return script if changed else None


def _copies_within_a_scope(script: Script) -> set[str]:
    """Variables of the copies whose source sits in the same scope: a unit does them, not a DMA."""
    out = set()
    for prim in ("cache_read", "cache_write"):
        for chain in _staging(script, prim).values():
            for prev, idx in itertools.pairwise(chain):
                a, b = script.lines[prev], script.lines[idx]
                if b.targets and a.kw.get("storage_scope") == b.kw.get("storage_scope"):
                    out.add(b.targets[0])
    return out


def _innermost_spatial_extent(mod, name, tirx) -> int | None:
    """The extent of a block's innermost loop when that loop is spatial for the block."""
    from tvm import s_tir

    if not isinstance(name, str):
        return None
    sch = s_tir.Schedule(mod)
    try:
        block = sch.get_sblock(name)
    except Exception:  # noqa: BLE001 - no such block in this program
        return None
    blk = sch.get(block)
    if not blk.iter_vars or int(blk.iter_vars[-1].iter_type) != 0 or not isinstance(blk.body, tirx.BufferStore):
        return None
    if blk.reads and all(r.source.scope() != blk.writes[0].source.scope() for r in blk.reads):
        return None  # a move between scopes: a DMA's, not a unit's
    loops = sch.get_loops(block)
    return int(sch.get(loops[-1]).extent) if loops else None


# --- reductions on the vector unit ------------------------------------------------------------

_MOVES = frozenset(("get_sblock", "get_loops", "split", "reorder", "fuse", "sample_perfect_tile"))


@rewrite()
def lane_reduce(script: Script, p: dict, env: Env) -> Script | None:
    """Every row reduction the api view has a reduce intrinsic for (by name and signature:
    ``<target>.<unit>.reduce_<op>_<dtype>``, A: dtype[lanes]) becomes lane partials on the
    vector unit and one reduce instruction per row: split the reduced loop by the lanes,
    rfactor, keep the partials in the intrinsic's scope beside the rows they belong to,
    vectorise them, and tensorize the cross-lane fold."""
    changed = False
    for red in _reductions(env):
        if red["op"] is None or not red["row"]:
            continue
        intrin = _reduce_intrinsic(env.view, red["op"], red["dtype"])
        if intrin is None:
            continue
        name_i, lanes, scope = intrin
        if red["extent"] % lanes or red["extent"] == lanes:
            continue
        trial = Script(list(script.header), [Line(list(ln.targets), ln.prim, dict(ln.kw)) for ln in script.lines])
        if _lane_reduce_one(trial, red, name_i, lanes, scope, env):
            script.lines = trial.lines
            changed = True
    return script if changed else None


def _reductions(env: Env) -> list[dict]:
    """Every reduction block of the workload: name, combiner (sum, max or None), dtype,
    extent of its innermost loop, output rank, whether that innermost loop reduces."""
    from tvm import s_tir, tirx

    sch = s_tir.Schedule(env.workload.module())
    out = []
    for rv in sch.get_child_blocks(sch.get_sblock("root")):
        blk = sch.get(rv)
        if blk.init is None or not any(int(iv.iter_type) == 2 for iv in blk.iter_vars):
            continue
        value = getattr(blk.body, "value", None)
        loops = sch.get_loops(rv)
        out.append({"name": blk.name_hint, "op": {tirx.Add: "sum", tirx.Max: "max"}.get(type(value)),
                    "dtype": str(blk.writes[0].source.dtype), "extent": int(sch.get(loops[-1]).extent),
                    "ndim": len(blk.writes[0].source.shape), "row": int(blk.iter_vars[-1].iter_type) == 2})
    return out


def _reduce_intrinsic(view, op: str, dtype: str) -> tuple[str, int, str] | None:
    for name in view.intrinsics:
        if f".reduce_{op}_" not in name:
            continue
        ops = view.operands(name)
        a, c = ops.get("A"), ops.get("C")
        if a and c and a[0] == dtype and len(a[1]) == 1 and c[1] == (1,) and a[2] == c[2]:
            return name, a[1][0], a[2]
    return None


def _lane_reduce_one(script: Script, red: dict, intrin: str, lanes: int, scope: str, env: Env) -> bool:
    lines = script.lines
    var = next((ln.targets[0] for ln in lines if ln.prim == "get_sblock" and ln.kw.get("name") == red["name"]
                and ln.targets), None)
    if var is None:
        return False
    start = next(i for i, ln in enumerate(lines) if var in ln.targets)
    at = next((i for i in range(start + 1, len(lines)) if lines[i].prim not in _MOVES), len(lines))
    loops, ko, ki, rf = (script.fresh() + s for s in ("_l", "_o", "_i", "_rf"))
    lines[at:at] = [
        Line([loops], "get_loops", {"block": Src(var)}),
        Line([ko, ki], "split", {"loop": Src(f"{loops}[-1]"), "factors": [None, lanes]}),
        Line([rf], "rfactor", {"loop": Src(ki), "factor_axis": red["ndim"]}),
        Line([], "set_scope", {"block": Src(rf), "buffer_index": 0, "storage_scope": scope}),
    ]
    defined = {t for ln in lines[: at + 4] for t in ln.targets}
    anchored = False
    for i in range(at + 4, len(lines)):
        ln = lines[i]
        if ln.prim == "cache_read" and ln.ref("block") == var:  # the inputs are the partials' now
            ln.kw["block"] = Src(rf)
        if ln.prim == "compute_at" and ln.ref("block") == var and not anchored:
            lines.insert(i + 1, Line([], "compute_at", {**ln.kw, "block": Src(rf)}))
            anchored = True
    if not anchored:  # an output reduction: its partials go under the loop its result is written back in
        writes = {ln.targets[0] for ln in lines if ln.prim == "cache_write" and ln.ref("block") == var and ln.targets}
        home = next((ln.ref("loop") for ln in lines if ln.prim == "reverse_compute_at" and ln.ref("block") in writes),
                    None)
        if home is None or home not in defined:
            return False
        lines.insert(at + 4, Line([], "compute_at", {"block": Src(rf), "loop": Src(home)}))
    tail = _fold_lines(script, red["name"], var, intrin, lanes, env)
    if tail is None:
        return False
    lines.extend(tail)
    return env.module(script.render()) is not None


def _fold_lines(script: Script, name: str, var: str, intrin: str, lanes: int, env: Env) -> list[Line] | None:
    """Vectorise the partials (lanes innermost, init split off) and tensorize the fold, with
    loop positions read off the program as it stands."""
    from tvm import s_tir

    mod = env.module(script.render())
    if mod is None:
        return None
    sch = s_tir.Schedule(mod)
    try:
        rf_pos = _loop_roles(sch, sch.get_sblock(f"{name}_rf"))
        fold_pos = _loop_roles(sch, sch.get_sblock(name))
    except Exception:  # noqa: BLE001 - TVM raises builtin kinds; no such block: this does not fit
        return None
    if rf_pos is None or fold_pos is None:
        return None
    (rf_red, rf_lane, n_rf), (fold_red, _, n_fold) = rf_pos, fold_pos
    if rf_red is None or rf_lane is None or fold_red is None:
        return None
    b, l1, l2 = (script.fresh() + s for s in ("_b", "_rl", "_fl"))
    out = [Line([b], "get_sblock", {"name": f"{name}_rf"}), Line([l1], "get_loops", {"block": Src(b)})]
    if rf_lane != n_rf - 1 or rf_red > rf_lane:
        # loop handles name loops, not positions: after the reorder they still name the same loops
        out.append(Line([], "reorder", {"ordered_loops": (Src(f"{l1}[{rf_red}]"), Src(f"{l1}[{rf_lane}]"))}))
    out += [Line([], "vectorize", {"loop": Src(f"{l1}[{rf_lane}]")}),
            Line([script.fresh() + "_ri"], "decompose_reduction", {"block": Src(b), "loop": Src(f"{l1}[{rf_red}]")}),
            Line([l2], "get_loops", {"block": Src(var)})]
    if fold_red != n_fold - 1:
        out.append(Line([], "reorder", {"ordered_loops": (Src(f"{l2}[{n_fold - 1}]"), Src(f"{l2}[{fold_red}]"))}))
    out += [Line([script.fresh() + "_fi"], "decompose_reduction", {"block": Src(var), "loop": Src(f"{l2}[{fold_red}]")}),
            Line([], "tensorize", {"block_or_loop": Src(f"{l2}[{fold_red}]"), "tensor_intrin": intrin})]
    return out


def _loop_roles(sch, block) -> tuple[int | None, int | None, int] | None:
    """(index of the loop bound to the reduction, of the loop bound to the written buffer's
    last index, number of loops) for a block; None when it is not directly under its loops."""
    from tvm import s_tir

    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body if loops else None
    if not isinstance(realize, s_tir.SBlockRealize):
        return None
    index = {sch.get(lp).loop_var: i for i, lp in enumerate(loops)}
    blk = sch.get(block)
    red = lane = None
    write = blk.writes[0].region[-1].min if blk.writes and len(blk.writes[0].region) else None
    for iv, value in zip(blk.iter_vars, realize.iter_values):
        pos = next((i for v, i in index.items() if value.same_as(v)), None)
        if int(iv.iter_type) == 2:
            red = pos
        elif write is not None and iv.var.same_as(write):
            lane = pos
    return red, lane, len(loops)


@rewrite("width")
def vectorize_reduce(script: Script, p: dict, env: Env) -> Script | None:
    """Reductions that keep a spatial axis of their output innermost-able (pooling windows,
    column sums) run on the vector unit across that axis: the reduction loops move outside it,
    the init is split off, and the axis is vectorised (``width`` lanes at most)."""
    from tvm import s_tir

    width = int(p["width"])
    if width < 2:
        return None
    changed = False
    for name in (red["name"] for red in _reductions(env)):
        mod = env.module(script.render())
        if mod is None:
            return None
        sch = s_tir.Schedule(mod)
        try:
            block = sch.get_sblock(name)
        except Exception:  # noqa: BLE001 - TVM raises builtin kinds; the program renamed or removed it
            continue
        roles = _reduce_roles(sch, block)
        if roles is None:
            continue
        reduce_pos, lane_pos, extent = roles
        lanes = math.gcd(extent, width)
        if lanes < 2:
            continue
        b, loops, init, outer = (script.fresh() + s for s in ("_vb", "_vl", "_vi", "_vo"))
        added = [Line([b], "get_sblock", {"name": name}), Line([loops], "get_loops", {"block": Src(b)})]
        order = [Src(f"{loops}[{i}]") for i in reduce_pos] + [Src(f"{loops}[{lane_pos}]")]
        if lane_pos < max(reduce_pos):
            added.append(Line([], "reorder", {"ordered_loops": tuple(order)}))
        target = order[-1]
        if lanes < extent:
            added.append(Line([outer, outer + "_v"], "split", {"loop": target, "factors": [None, lanes]}))
            target = Src(outer + "_v")
        added.append(Line([], "vectorize", {"loop": target}))  # before the init is split off
        added.append(Line([init], "decompose_reduction", {"block": Src(b), "loop": order[0]}))
        script.lines.extend(added)
        if env.module(script.render()) is None:  # TVM refuses (another block between the loops, ...)
            del script.lines[-len(added):]
            continue
        changed = True
    return script if changed else None


def _reduce_roles(sch, block) -> tuple[list[int], int, int] | None:
    """(positions of the loops bound to reduction iter vars, position and extent of the loop
    bound to the output's last index) for a reduction block still under its own loops and not
    yet vectorised; None otherwise."""
    from tvm import s_tir, tirx

    loops = sch.get_loops(block)
    realize = sch.get(loops[-1]).body if loops else None
    if not isinstance(realize, s_tir.SBlockRealize):
        return None
    if any(sch.get(lp).kind == tirx.ForKind.VECTORIZED for lp in loops):
        return None
    import tvm_ffi

    index = [sch.get(lp).loop_var for lp in loops]
    blk = sch.get(block)
    last = blk.writes[0].region[-1].min if blk.writes and len(blk.writes[0].region) else None
    reduce_pos, lane = set(), None

    def positions(value) -> list[int]:
        found = []
        tvm_ffi.structural_walk(value, [(tirx.Var, found.append)])
        return [i for i, v in enumerate(index) if any(v.same_as(f) for f in found)]

    for iv, value in zip(blk.iter_vars, realize.iter_values):
        if int(iv.iter_type) == 2:
            reduce_pos.update(positions(value))
        elif last is not None and iv.var.same_as(last):
            mine = positions(value)
            lane = max(mine) if mine else None  # the innermost loop the axis runs over
    if lane is None or not reduce_pos or lane in reduce_pos:
        return None
    return sorted(reduce_pos), lane, int(sch.get(loops[lane]).extent)


@rewrite("factor")
def tile_columns(script: Script, p: dict, env: Env) -> Script | None:
    """Tile the output's innermost axis too, and move everything the program placed under
    its row tile loop under the column tile loop: what each tile stages shrinks with it (a
    fused GEMM no longer stages the whole weight matrix per row tile)."""
    factor = int(p["factor"])
    return _tile_under(script, lambda nest, row: nest[-1], factor) if factor >= 1 else None


@rewrite("scope", "capacity")
def tile_deeper(script: Script, p: dict, env: Env) -> Script | None:
    """Tile the loop after the one the program tiles, by the largest power of two that makes
    what lives in ``scope`` fit ``capacity``, and move what was placed under the row tile
    under the new tile: for a tile that cannot shrink any more (a batch of one, one row)."""
    scope, capacity = p["scope"], int(p["capacity"])
    base = script.render()
    peak = _peak(base, scope, env)
    if capacity < 1 or peak is None or peak <= capacity:
        return None
    for factor in (256, 128, 64, 32, 16, 8, 4, 2, 1):
        trial = parse_script(base)
        trial = _tile_under(trial, lambda nest, row: nest[nest.index(row) + 1], factor) if trial else None
        if trial is None:
            return None
        peak = _peak(trial.render(), scope, env)
        if peak is not None and peak <= capacity:
            return trial
    return None


def _tile_under(script: Script, pick, factor: int) -> Script | None:
    """Split the loop ``pick(nest, row_loop)`` of the first placed block's loop nest by
    ``factor``, put its outer part inside the row tile loop and move every placement under
    the row tile loop under it."""
    placements = [i for i, ln in enumerate(script.lines) if ln.prim in ("compute_at", "reverse_compute_at")]
    if not placements:
        return None
    at = script.lines[placements[0]].ref("loop")
    made = next((i for i, ln in enumerate(script.lines) if ln.prim == "split" and at in ln.targets), None)
    if made is None or len(script.lines[made].targets) != 2 or script.lines[made].targets[0] != at:
        return None
    row_inner = script.lines[made].targets[1]
    row_loop = script.lines[made].ref("loop")
    nest = next((ln for ln in script.lines[:made] if ln.prim == "get_loops" and row_loop in ln.targets), None)
    if nest is None or nest.targets[-1] == row_loop:
        return None
    col = pick(nest.targets, row_loop)
    if any(ln.prim == "split" and ln.ref("loop") == col for ln in script.lines):
        return None  # tiled already
    outer = script.fresh()
    col_outer, col_inner = outer + "_co", outer + "_ci"
    insert = [Line([col_outer, col_inner], "split", {"loop": Src(col), "factors": [None, factor]}),
              Line([], "reorder", {"ordered_loops": (Src(at), Src(col_outer), Src(row_inner), Src(col_inner))})]
    for i in placements:
        if script.lines[i].ref("loop") == at:
            script.lines[i].kw["loop"] = Src(col_outer)
    script.lines[made + 1:made + 1] = insert
    return script


@rewrite()
def stage_outputs(script: Script, p: dict, env: Env) -> Script | None:
    """A block that writes one of the function's outputs can neither be placed under
    another block's loop nor have its buffer moved to another scope (TVM refuses
    ``compute_at`` and ``set_scope`` on an output block): it gets a loop nest of its own,
    tiled like the one it was to join, writing through a cache in the scope the program gave
    it (else the one its other results are staged in), with its inputs' copies placed in
    that nest."""
    outputs = _output_blocks(env)
    staged = next((ln.kw.get("storage_scope") for ln in script.lines if ln.prim == "cache_write"), None)
    changed = False
    for made in [ln for ln in script.lines if ln.prim == "get_sblock" and ln.kw.get("name") in outputs]:
        block = made.targets[0] if made.targets else None
        at = next((x for x in script.lines if x.prim == "compute_at" and x.ref("block") == block), None)
        scoped = next((x for x in script.lines if x.prim == "set_scope" and x.ref("block") == block), None)
        scope = scoped.kw.get("storage_scope") if scoped is not None else staged
        tile = next((x for x in script.lines if at is not None and x.prim == "split"
                     and x.targets[:1] == [at.ref("loop")]), None)
        factor = tile.kw.get("factors", [None, None])[-1] if tile is not None else None
        if block is None or at is None or not isinstance(scope, str) or not isinstance(factor, int):
            continue
        base = script.fresh()
        loops, outer, inner, cache = base + "_l", base + "_o", base + "_i", base + "_c"
        for x in (at, scoped):
            if x is not None:
                script.lines.remove(x)
        for x in script.lines:  # the copies of its inputs go with it
            if x.prim == "compute_at" and x.ref("loop") == at.ref("loop"):
                src = script.creator(x.ref("block"))
                if src is not None and src.prim == "cache_read" and src.ref("block") == block:
                    x.kw["loop"] = Src(outer)
        index = script.lines.index(made) + 1
        script.lines[index:index] = [
            Line([loops], "get_loops", {"block": Src(block)}),
            Line([outer, inner], "split", {"loop": Src(f"{loops}[0]"), "factors": [None, factor]}),
            Line([cache], "cache_write", {"block": Src(block), "write_buffer_index": 0, "storage_scope": scope}),
            Line([], "reverse_compute_at", {"block": Src(cache), "loop": Src(outer)}),
        ]
        changed = True
    return script if changed else None


def _output_blocks(env: Env) -> set[str]:
    """Names of the workload's blocks that write a function parameter (an output)."""
    from tvm import s_tir

    params = {p.name for p in env.workload.func.params}
    sch = s_tir.Schedule(env.workload.module())
    return {sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))
            if any(w.source.name in params for w in sch.get(b).writes)}


# --- layouts ----------------------------------------------------------------------------------


@rewrite("scope", "via")
def relayout(script: Script, p: dict, env: Env) -> Script | None:
    """A copy into ``scope`` that changes the layout (a ``transform_layout`` of its buffer) is
    a strided DMA; do the layout change in ``via`` instead, where a unit copies element by
    element: the operand is loaded into ``via`` as stored, copied there into the new layout,
    and every later copy moves it as it is."""
    scope, via = p["scope"], p["via"]
    if scope == via:
        return None
    for key, chain in _staging(script, "cache_read").items():
        copies = {script.lines[c].targets[0] for c in chain if script.lines[c].targets}
        layout = next((i for i, ln in enumerate(script.lines) if ln.prim == "transform_layout"
                       and ln.ref("block") in copies
                       and script.creator(ln.ref("block")).kw.get("storage_scope") == scope), None)
        if layout is None:
            continue
        moved = script.lines.pop(layout)
        first = script.lines[chain[0]]
        loaded, relaid = script.fresh() + "_ld", script.fresh() + "_tr"
        script.lines[chain[0]:chain[0]] = [
            Line([loaded], "cache_read", {**first.kw, "storage_scope": via}),
            Line([relaid], "cache_read", {**first.kw, "storage_scope": via}),
            Line([], "transform_layout", {**moved.kw, "block": Src(relaid)}),
        ]
        placed = [i for i, ln in enumerate(script.lines) if ln.prim == "compute_at"
                  and ln.ref("block") in {script.lines[c].targets[0] for c in _staging(script, "cache_read")[key]
                                          if script.lines[c].targets}]
        if placed:  # the new copies sit where the operand's first copy sits, producers last
            at = script.lines[placed[-1]]
            script.lines[placed[-1] + 1:placed[-1] + 1] = [
                Line([], "compute_at", {**at.kw, "block": Src(name)}) for name in (relaid, loaded)]
        return script
    return None


# --- the matrix unit --------------------------------------------------------------------------

MAX_MATRIX_TILE = 64  # fractals per tile side


@rewrite("stage", "n_tile", "k_tile")
def to_matrix(script: Script, p: dict, env: Env) -> Script | None:
    """Put the workload's multiply-accumulate reduction (a GEMM, a convolution as an implicit
    GEMM) on the matrix intrinsic whose operand types fit, when the program computes it on
    another unit: the operand that varies along the output's rows becomes the intrinsic's
    left operand (gathered im2col-style and padded to whole fractals by TVM's own
    ``tile_with_tensor_intrin``), the other the right one; both are gathered in ``stage``,
    moved into the intrinsic's scopes per K step of ``k_tile`` fractals, and accumulate
    ``n_tile`` fractals of output columns in the intrinsic's accumulator scope. The program
    written is TVM's trace of those steps; the input program contributes its header."""
    stage, n_tile, k_tile = p["stage"], int(p["n_tile"]), int(p["k_tile"])
    if stage not in env.view.scopes or stage == "global" or not (1 <= n_tile <= MAX_MATRIX_TILE) \
            or not (1 <= k_tile <= MAX_MATRIX_TILE):
        return None
    if any(ln.prim == "tensorize" and ".mma_" in str(ln.kw.get("tensor_intrin")) for ln in script.lines):
        return None  # on the matrix unit already: tiles are the other rewrites' business
    text = _matrix_program(env, stage, n_tile, k_tile)
    out = parse_script(text) if text is not None else None
    if out is None:
        return None
    return Script(script.header, out.lines)


def _matrix_program(env: Env, stage: str, n_tile: int, k_tile: int) -> str | None:
    from tvm import s_tir
    from tvm.s_tir.schedule.transform import tile_with_tensor_intrin

    from ..propose.program import program_from_trace

    sch = s_tir.Schedule(env.workload.module())
    found = _mac_block(sch)
    if found is None:
        return None
    block, left, right, m_var, k_var = found
    intrin = next((name for name in env.view.intrinsics if ".mma_" in name
                   and env.view.operands(name).get("A", ("",))[0] == str(left.dtype)), None)
    fill = next((name for name in env.view.intrinsics if intrin is not None and ".fill_" in name
                 and env.view.operands(name).get("C", ("",))[0] == env.view.operands(intrin)["C"][0]), None)
    if fill is None:
        return None
    ops = env.view.operands(intrin)
    try:
        gathered = _gather_rows(sch, block, left, m_var, k_var)
        if tile_with_tensor_intrin(sch, block, intrin, allow_padding=True) is None:
            return None
        loops = sch.get_loops(block)
        n_spatial = sum(1 for iv in sch.get(block).iter_vars if int(iv.iter_type) == 0)
        spatial, reduce, frac = loops[:n_spatial], loops[n_spatial:-3], loops[-3:]
        if not reduce:
            return None
        # whole tiles only: a predicated tile is no fractal
        n_outer, n_inner = sch.split(spatial[-1], [None, _divisor(int(sch.get(spatial[-1]).extent), n_tile)])
        k_outer, k_inner = sch.split(reduce[-1], [None, _divisor(int(sch.get(reduce[-1]).extent), k_tile)])
        # the column tile outermost: the right operand's tile is gathered once and serves
        # every row tile
        sch.reorder(n_outer, *spatial[:-1], *reduce[:-1], k_outer, n_inner, k_inner, *frac)
        row_loop = spatial[-2] if len(spatial) > 1 else n_outer
        first_k = (reduce[:-1] or [k_outer])[0]
        sch.set_scope(block, 0, ops["C"][2])
        _epilogue(sch, block, row_loop, _compute_scope(env.view), ops["C"][2])
        # each operand reaches the stage by the block that gathers or pads it (im2col, zero
        # pads: a DMA with a guard) or by a plain copy, then its intrinsic scope per K step
        for operand, letter, at in ((gathered or left, "A", row_loop), (right, "B", n_outer)):
            index = _read_index(sch, block, operand)
            src = sch.get(block).reads[index].source
            made = next((b for b in sch.get_producers(block)
                         if any(w.source.same_as(src) for w in sch.get(b).writes)), None)
            if made is None:
                made = sch.cache_read(block, index, stage)
            else:
                sch.set_scope(made, 0, stage)
            if ops[letter][2] != stage:
                into = sch.cache_read(block, index, ops[letter][2])
                sch.compute_at(into, k_outer)
            sch.compute_at(made, at)
        init = sch.decompose_reduction(block, first_k)
        sch.tensorize(frac[0], intrin)
        sch.tensorize(sch.get_loops(init)[-2], fill)
        return program_from_trace(sch.trace)
    except Exception:  # noqa: BLE001 - TVM refuses this mapping for this workload: no rewrite
        return None


def _epilogue(sch, block, row_loop, compute: str | None, acc: str) -> None:
    """Everything after the reduction runs per row tile (the accumulator holds one). A plain
    read-out (a cast) stays a move out of the accumulator; anything more (a bias, an
    activation, a norm's affine) is computed in ``compute``, where the vector unit works:
    its inputs and the accumulator are copied there and its result copied out."""
    from tvm import tirx

    from ..runtime.program import Load

    down = _downstream(sch, block)
    for consumer in down:
        sch.reverse_compute_at(consumer, row_loop)
    only = sch.get(down[0]) if len(down) == 1 else None
    if only is not None and len(only.reads) == 1 and isinstance(only.body, tirx.BufferStore) and isinstance(
            getattr(only.body.value, "value", only.body.value), Load):
        return
    if compute is None:
        return
    for i, rv in enumerate(down):
        reads = sch.get(rv).reads
        for index, region in enumerate(reads):
            if region.source.scope() in ("global", acc) and not any(
                    sch.get(other).writes[0].source.same_as(region.source) for other in down):
                sch.cache_read(rv, index, compute)  # the copy lands where its reader is
        if i < len(down) - 1:
            sch.set_scope(rv, 0, compute)
        else:
            sch.reverse_compute_at(sch.cache_write(rv, 0, compute), row_loop)  # lands at the root


def _compute_scope(view) -> str | None:
    """The scope a unit computes in: where an intrinsic keeps all its operands (the vector
    unit's reductions), as the api view names them."""
    for name in view.intrinsics:
        scopes = {op[2] for op in view.operands(name).values()}
        if len(view.operands(name)) > 1 and len(scopes) == 1:
            return scopes.pop()
    return None


def _divisor(extent: int, most: int) -> int:
    return max(d for d in range(1, min(extent, most) + 1) if extent % d == 0)


def _read_index(sch, block, buffer) -> int:
    """The position of ``buffer`` (a buffer or a name; or the buffer padded from it) among the
    block's reads."""
    name = buffer if isinstance(buffer, str) else buffer.name
    for i, region in enumerate(sch.get(block).reads):
        if region.source.name in (name, f"{name}_pad"):
            return i
    raise ValueError(f"{name} is not read by the block")


def _index_vars(ranges, iter_vars) -> set[int]:
    """Positions of the block iterators the indices of an access (its ranges) use."""
    from tvm.tirx.analysis import undefined_vars

    used: set[int] = set()
    for rng in ranges:
        free = undefined_vars(rng.min)
        used |= {i for i, iv in enumerate(iter_vars) if any(v.same_as(iv.var) for v in free)}
    return used


def _mac_block(sch):
    """(block, left, right, m, k) for the one multiply-accumulate reduction of the workload:
    ``right`` is the operand that brings the output's innermost axis, ``left`` the one that
    brings its rows (``m``: the innermost output iterator only it indexes); ``k`` is the
    innermost reduction iterator both index. None if the workload has no such block."""
    from tvm import tirx

    found = []
    for rv in sch.get_child_blocks(sch.get_sblock("root")):
        blk = sch.get(rv)
        value = getattr(blk.body, "value", None)
        if not (isinstance(value, tirx.Add) and isinstance(value.b, tirx.Mul)):
            continue
        ivs, out = blk.iter_vars, blk.writes[0]
        reads = [r for r in blk.reads if not r.source.same_as(out.source)]
        if len(reads) != 2 or not out.region:
            continue
        used = [_index_vars(r.region, ivs) for r in reads]
        last = _index_vars(out.region[-1:], ivs)
        r = next((i for i in (0, 1) if last & (used[i] - used[1 - i])), None)
        if r is None:
            continue
        a, b = used[1 - r], used[r]
        rows = [i for i in sorted(a & _index_vars(out.region, ivs)) if i not in b]
        reduce = sorted(i for i in a & b if int(ivs[i].iter_type) == 2)
        if rows and reduce:
            found.append((rv, reads[1 - r].source, reads[r].source, rows[-1], reduce[-1]))
    return found[0] if len(found) == 1 else None


def _plain(region, blk) -> bool:
    """Every index of the access is one block iterator (no ``y + rh``)."""
    return all(any(rng.min.same_as(iv.var) for iv in blk.iter_vars) for rng in region.region)


def _gather_rows(sch, block, left, m_var: int, k_var: int) -> str | None:
    """A left operand indexed by sums of iterators (a convolution's ``y + rh``) becomes an
    im2col buffer, laid out with the rows and the reduction last (the two axes the
    intrinsic's fractal takes); its name, or None when the operand is read as it is."""
    from tvm.tirx import IndexMap

    blk = sch.get(block)
    index = next(i for i, r in enumerate(blk.reads) if r.source.same_as(left))
    if _plain(blk.reads[index], blk):
        return None
    col = sch.reindex(block, ("read", index))
    buf = sch.get(col).writes[0].source
    blk = sch.get(block)
    region = next(r for r in blk.reads if r.source.same_as(buf))
    dims = [next(i for i, iv in enumerate(blk.iter_vars) if rng.min.same_as(iv.var)) for rng in region.region]
    nd = len(dims)
    perm = [j for j in range(nd) if dims[j] not in (m_var, k_var)] + [dims.index(m_var), dims.index(k_var)]
    sch.transform_layout(col, ("write", 0), IndexMap.from_func(lambda *axes: [axes[i] for i in perm], ndim=nd))
    return buf.name


def _downstream(sch, block) -> list:
    """Every block after ``block`` in the program, in order."""
    order = list(sch.get_child_blocks(sch.get_sblock("root")))
    names = [sch.get(rv).name_hint for rv in order]
    return order[names.index(sch.get(block).name_hint) + 1:]
