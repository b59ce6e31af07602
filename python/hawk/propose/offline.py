"""The offline proposer: a deterministic, hardware-agnostic kernel author.

It writes schedule programs the way a generic accelerator programmer would: GPU-style
power-of-two tiles, on-chip scopes picked by their names, staging of inputs and outputs,
vectorised inner loops, tensorize where an intrinsic's name and signature fit (a GEMM padded
up to the signature's fractal, an operand stored the other way round transposed on its way
in). It sees only what an LLM sees (the workload's TensorIR, the api view, the previous
attempt's feedback) and reacts to a device log as an LLM without hardware priors would: a
smaller tile after an overflow, another scope after a scope or path fault, another draw
after anything else, a local variation once a kernel is correct. So it breaks the NPU's
implicit constraints at a realistic rate. Retrieved knowledge reaches it as the prompt
renders it: it applies the ``fix:`` lines of those items to its draft, as an LLM would follow
them, and reads nothing else of them.

Apart from the operand scopes in the intrinsic signatures, scope names are its only hint
about what a scope is for: it prefers a name containing ``ub``, ``buf``,
``spm``, ... for staging and ``l1``, ``l2``, ... for matrix operands, a prior an LLM has as
well. ``bench/first_proposals.py`` measures what they are worth: the legality of first
proposals on each preset and on a copy with neutral names (``global.npu.m0``, ...).

It keeps no state between calls. Its text is a function of (seed, iteration, workload, api
view, feedback): the decisions behind a program are written in a ``# plan:`` comment at its
top, and a reaction reads them back from the program the feedback quotes, as an LLM reads
its earlier answer from the prompt. Feedback quoting no plan (another author's program)
gets a fresh draw.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace

import numpy as np
from tvm import s_tir

from ..ir.workload import Workload
from .prompt import Feedback, Task
from .proposer import PROGRAM, Proposal, Proposer

TILES = (16, 32, 64, 128, 256, 512)
ROW_TILES = (1, 2, 4, 8, 16, 32, 64)
VECTOR_WIDTHS = (16, 32, 64, 128)
_SCOPE_FAULTS = ("ILLEGAL_PATH", "UNIT_SCOPE")


@dataclass(frozen=True)
class Choices:
    """The decisions behind one program, so the next attempt can change one of them."""

    stage: str  # on-chip scope for staging and vector work
    operand_stage: str  # scope operands pass through before the matrix unit's scopes
    rows: int
    cols: int
    k: int
    vector: int  # vector width, 0 = leave loops scalar
    double: bool
    via_stage: bool  # matmul output through the staging scope
    decompose: bool  # matmul init split off and tensorized


class OfflineProposer(Proposer):
    name = "offline"

    def propose(self, task: Task, *, seed: int, iteration: int) -> Proposal:
        wl = task.workload
        rng = np.random.default_rng(zlib.crc32(f"{seed}/{wl.name}/{iteration}".encode()))
        api = _Api(task.view)
        previous = read_plan(task.feedback.program, api.onchip) if task.feedback is not None else None
        choices = _react(previous, task.feedback, api, rng) if previous else _draw(api, rng)
        structure = _Structure(wl)
        mma = api.mma_for(structure.operand_dtype) if structure.is_gemm else None
        if mma is not None:
            text = _gemm_program(structure, api, mma, choices)
            plan = replace(choices, vector=0)
        else:
            text = _staged_program(structure, choices)
            plan = replace(choices, operand_stage=choices.stage, k=0, via_stage=False, decompose=False)
        # choices this kind of program never reads are written as constants: the same program
        # comes with the same plan, so equal kernels have equal texts
        return Proposal(_follow_knowledge(_plan_line(plan) + text, task), PROGRAM)


_PLAN = re.compile(r"^# plan: (.*)$", re.MULTILINE)
_FIX = re.compile(r"^\s*fix: (.*)$", re.MULTILINE)


_WHEN = re.compile(r"\] when (bottleneck )?([\w.]+)")
_RECORD = re.compile(r"^\[verified, worked (\d+)/(\d+)\]")


def _trusted(item: str) -> bool:
    """Follow what has worked more often than not; an unverified item is only a hint."""
    m = _RECORD.match(item)
    return m is not None and 2 * int(m.group(1)) >= int(m.group(2))


def _follow_knowledge(text: str, task: Task) -> str:
    """Apply the fixes the prompt's knowledge spells out (its ``fix:`` lines), in the order
    the prompt lists them, where their "when" fits: a fix for a fault applies when the device
    reported that fault or when the fix names a scope the draft uses (prevention); a fix for a
    bottleneck applies when the last kernel was correct and bound by that pipe. A fix that does
    not fit the draft is passed over. This reads the knowledge exactly as rendered into the
    prompt, nothing else. Items whose record says they fail more often than not, or that
    have not worked yet, are read but not followed."""
    from ..knowledge.rewrite import Env, apply_rewrite, parse_call

    fb = task.feedback
    reported = " ".join(fb.device_log) if fb is not None else ""
    bound_by = fb.bottleneck if fb is not None and fb.cycles is not None else ""
    env = None
    # legality first: a fix for speed is written against a program that runs
    ordered = sorted(task.knowledge, key=lambda item: "] when bottleneck " in item)
    for item in ordered:
        when = _WHEN.search(item)
        for line in _FIX.findall(item):
            call = parse_call(line)
            if call is None or when is None or not _trusted(item):
                continue
            if when.group(1):
                fits = when.group(2) == bound_by
            else:
                fits = when.group(2) in reported or any(
                    isinstance(v, str) and f'"{v}"' in text for v in call[1].values())
            if fits:
                env = env or Env(task.workload, task.view)
                text = apply_rewrite(text, *call, env) or text
    return text


def _plan_line(c: Choices) -> str:
    return "# plan: " + " ".join(f"{f.name}={getattr(c, f.name)}" for f in fields(Choices)) + "\n"


def read_plan(program: str, onchip: Sequence[str]) -> Choices | None:
    """The choices in a program's ``# plan:`` comment, or None when it has no usable plan
    (written by someone else, edited, or for scopes this target does not have)."""
    found = _PLAN.search(program)
    if found is None:
        return None
    given = dict(item.partition("=")[::2] for item in found.group(1).split())
    values = {}
    for f in fields(Choices):
        raw = given.get(f.name)
        if f.type == "str" and raw in onchip:
            values[f.name] = raw
        elif f.type == "int" and raw is not None and raw.isascii() and raw.isdigit():
            values[f.name] = int(raw)
        elif f.type == "bool" and raw in ("True", "False"):
            values[f.name] = raw == "True"
        else:
            return None
    return Choices(**values)


# --- what the author knows: the api view ---------------------------------------------------


@dataclass(frozen=True)
class _Intrinsic:
    name: str
    operands: dict  # letter -> (dtype, shape, scope)


class _Api:
    def __init__(self, view):
        self.onchip = [s for s in view.scopes if s != "global"]
        self.intrinsics = [_Intrinsic(name, view.operands(name)) for name in view.intrinsics]

    def mma_for(self, dtype):
        return next((i for i in self.intrinsics if ".mma_" in i.name and i.operands.get("A", ("",))[0] == dtype),
                    None)

    def fill_for(self, acc_dtype):
        return next((i for i in self.intrinsics if ".fill_" in i.name and i.operands["C"][0] == acc_dtype), None)

    def name_weights(self, scopes, prefer):
        """Scopes weighted by how much their name suggests the job (a guess from names only)."""
        weights = []
        for s in scopes:
            tag = s.rsplit(".", 1)[-1]
            weights.append(4.0 if any(p in tag for p in prefer) else 1.0)
        w = np.asarray(weights)
        return w / w.sum()


def _pick(rng, options, p=None):
    return options[int(rng.choice(len(options), p=p))]


def _draw(api: _Api, rng) -> Choices:
    stage = _pick(rng, api.onchip, api.name_weights(api.onchip, ("ub", "buf", "spm", "shared", "sram")))
    operand_stage = _pick(rng, api.onchip, api.name_weights(api.onchip, ("l1", "l2", "shared", "spm")))
    return Choices(
        stage=stage, operand_stage=operand_stage,
        rows=int(rng.choice(ROW_TILES)), cols=int(rng.choice(TILES[2:])), k=int(rng.choice(TILES[1:5])),
        vector=int(rng.choice(VECTOR_WIDTHS)) if rng.random() < 0.75 else 0,
        double=bool(rng.random() < 0.35), via_stage=bool(rng.random() < 0.35),
        decompose=bool(rng.random() < 0.85),
    )


def _react(prev: Choices, feedback: Feedback, api: _Api, rng) -> Choices:
    log = " ".join(feedback.device_log)
    if "SCOPE_OVERFLOW" in log and (prev.rows > 1 or prev.cols > 16):  # did not fit: smaller tile
        shrink = int(rng.choice([2, 4]))
        return replace(prev, rows=max(1, prev.rows // shrink), cols=max(16, prev.cols // shrink),
                       k=max(16, prev.k // 2), double=prev.double and rng.random() < 0.5)
    if any(code in log for code in _SCOPE_FAULTS):  # try scopes other than the one named
        named = set(re.findall(r"(?:scope|src|dst)=([\w.]+)", log)) - {"global"}
        stage_opts = [s for s in api.onchip if s not in named] or api.onchip
        return replace(prev, stage=_pick(rng, stage_opts), operand_stage=_pick(rng, stage_opts),
                       via_stage=not prev.via_stage if rng.random() < 0.5 else prev.via_stage,
                       decompose=prev.decompose or rng.random() < 0.5)
    if feedback.failed:  # anything else: another draw
        return _draw(api, rng)
    # correct: a local variation, as "make it faster" prompts tend to produce
    move = int(rng.integers(0, 4))
    if move == 0:
        return replace(prev, cols=min(512, prev.cols * 2), rows=min(64, prev.rows * 2))
    if move == 1:
        return replace(prev, double=not prev.double)
    if move == 2:
        return replace(prev, vector=int(rng.choice(VECTOR_WIDTHS)))
    return replace(prev, k=min(256, prev.k * 2))


# --- what the author reads off the TensorIR ------------------------------------------------


class _Structure:
    """Blocks, loops and buffers of the workload (no hardware knowledge involved)."""

    def __init__(self, wl: Workload):
        sch = s_tir.Schedule(wl.module())
        self.params = {p.name for p in wl.func.params}
        self.blocks = []  # in program order
        for rv in sch.get_child_blocks(sch.get_sblock("root")):
            blk = sch.get(rv)
            self.blocks.append(_Block(
                name=blk.name_hint,
                extents=[int(sch.get(lp).extent) for lp in sch.get_loops(rv)],
                reduce=[int(iv.iter_type) == 2 for iv in blk.iter_vars],
                reads=[r.source.name for r in blk.reads],
                writes=[w.source.name for w in blk.writes],
                dtype=str(blk.writes[0].source.dtype),
                body=type(blk.body).__name__,
                multiply=_is_mac(blk),
                read_dtypes=[str(r.source.dtype) for r in blk.reads],
                last_index_reduces=[_last_index_reduces(blk, r) for r in blk.reads],
                read_ndims=[len(r.region) for r in blk.reads],
            ))
        self.out = self.blocks[-1]
        gemm = [b for b in self.blocks if b.multiply and any(b.reduce)]
        self.gemm = gemm[0] if len(gemm) == 1 and wl.category == "matmul" else None
        self.is_gemm = self.gemm is not None
        self.operand_dtype = self.gemm.read_dtypes[-1] if self.gemm else None
        self._workload = wl

    def padded_blocks(self, padding) -> tuple[list, str | None]:
        """(operand pad blocks, crop block or None) that ``pad_einsum`` of the GEMM block
        creates: read off a scratch schedule of the workload, as an author reads the printed
        TensorIR after the call."""
        sch = s_tir.Schedule(self._workload.module())
        c = sch.get_sblock(self.gemm.name)
        sch.pad_einsum(c, list(padding))
        producers = {sch.get(b).name_hint for b in sch.get_producers(c)}
        pads = [name if name in producers else None for name in (f"{r}_pad" for r in self.gemm.reads)]
        consumers = [sch.get(b).name_hint for b in sch.get_consumers(c)]
        crop = consumers[0] if consumers and consumers[0] == f"{self.gemm.writes[0]}_pad" else None
        return pads, crop


@dataclass
class _Block:
    name: str
    extents: list
    reduce: list
    reads: list
    writes: list
    dtype: str
    body: str
    multiply: bool
    read_dtypes: list
    last_index_reduces: list  # per read: is its innermost index a reduction variable?
    read_ndims: list


def _last_index_reduces(blk, region) -> bool:
    last = region.region[-1].min if len(region.region) else None
    return any(last is not None and last.same_as(iv.var) and int(iv.iter_type) == 2 for iv in blk.iter_vars)


def _is_mac(blk) -> bool:
    from tvm import tirx

    value = getattr(blk.body, "value", None)
    return isinstance(value, tirx.Add) and isinstance(value.b, tirx.Mul)


def _fit(extent: int, want: int) -> int:
    """The largest power-of-two-ish divisor of ``extent`` not above ``want`` (GPU habit)."""
    for t in sorted({want, *TILES, *ROW_TILES}, reverse=True):
        if t <= want and extent % t == 0:
            return t
    return 1


class _Emit:
    def __init__(self):
        self.lines: list[str] = []
        self.n = 0

    def __call__(self, primitive: str, returns: int = 0, *positional, unpack: bool = False, **kw) -> list[str]:
        """``unpack``: the primitive returns a list whose items the names are (one name
        unpacks a list of one: ``v1, = sch.get_loops(...)``)."""
        args = ", ".join([_literal(v) for v in positional] + [f"{k}={_literal(v)}" for k, v in kw.items()])
        names = []
        for _ in range(returns):
            names.append(f"v{self.n}")
            self.n += 1
        lhs = (", ".join(names) + ("," if unpack and len(names) == 1 else "") + " = ") if names else ""
        self.lines.append(f"{lhs}sch.{primitive}({args})")
        return names

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


class _Ref(str):
    """A name bound by an earlier line, or an index-map lambda (printed bare)."""


def _literal(v) -> str:
    if isinstance(v, _Ref):
        return str(v)
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "(" + ", ".join(_literal(x) for x in v) + ("," if len(v) == 1 else "") + ")"
    if isinstance(v, list):
        return "[" + ", ".join(_literal(x) for x in v) + "]"
    return repr(v)


def _staged_program(st: _Structure, c: Choices) -> str:
    """Tile the output, stage its inputs and every intermediate in one scope, vectorise."""
    e = _Emit()
    out = st.out
    (bo,) = e("get_sblock", 1, name=out.name)
    loops = e("get_loops", len(out.extents), block=_Ref(bo), unpack=True)
    spatial = [i for i, r in enumerate(out.reduce) if not r]
    first = spatial[0]
    cols = 0
    lo, li = e("split", 2, loop=_Ref(loops[first]), factors=[None, _fit(out.extents[first], c.rows)])
    at = lo
    # row reductions feeding the output span whole rows: tile columns only for plain maps
    reduces_rows = any(any(b.reduce) for b in st.blocks[:-1])
    if len(spatial) > 1 and not reduces_rows:
        last = spatial[-1]
        co, ci = e("split", 2, loop=_Ref(loops[last]), factors=[None, _fit(out.extents[last], c.cols)])
        cols = _fit(out.extents[last], c.cols)
        e("reorder", 0, _Ref(lo), _Ref(co), _Ref(li), _Ref(ci))
        at = co
    (w,) = e("cache_write", 1, block=_Ref(bo), write_buffer_index=0, storage_scope=c.stage)
    e("reverse_compute_at", block=_Ref(w), loop=_Ref(at))
    handles = {out.name: bo}
    for blk in reversed(st.blocks[:-1]):
        (b,) = e("get_sblock", 1, name=blk.name)
        handles[blk.name] = b
        e("compute_at", block=_Ref(b), loop=_Ref(at))
        e("set_scope", block=_Ref(b), buffer_index=0, storage_scope=c.stage)
    staged = set()
    for blk in st.blocks:
        for k, src in enumerate(blk.reads):
            if src in st.params and src not in staged:  # one copy per input, for its first reader
                staged.add(src)
                (r,) = e("cache_read", 1, block=_Ref(handles[blk.name]), read_buffer_index=k, storage_scope=c.stage)
                e("compute_at", block=_Ref(r), loop=_Ref(at))
                if c.double:
                    e("annotate", block_or_loop=_Ref(r), ann_key="double_buffer_scope", ann_val=0)
    if c.vector:
        for blk in st.blocks:
            if blk.reduce and not blk.reduce[-1] and blk.extents[-1] > 1:
                (block_loops,) = e("get_loops", 1, block=_Ref(handles[blk.name]))
                width = _fit(math.gcd(blk.extents[-1], cols or blk.extents[-1]), c.vector)
                _, vi = e("split", 2, loop=_Ref(f"{block_loops}[-1]"), factors=[None, width])
                e("vectorize", loop=_Ref(vi))
    return e.text()


def _gemm_program(st: _Structure, api: _Api, mma: _Intrinsic, c: Choices) -> str:
    """Tile the GEMM, stage A and B into the intrinsic's operand scopes, accumulate in its
    C scope, tensorize the fractal loops, write the result out.

    Extents that are not whole fractals of the intrinsic (M = 1, N = 1000, K = 776, ...) are
    padded up to them with ``pad_einsum``: the zero pads are filled by the operands' first
    staging copy and the padded result is cropped by its consumer. An operand stored the
    other way round from the intrinsic's (B as [n, k] in A @ B^T) is transposed by the
    layout of its copy in the operand scope."""
    e = _Emit()
    g = st.gemm
    fm, fk = mma.operands["A"][1]
    fn = mma.operands["B"][1][1]
    a_scope, b_scope, c_scope = (mma.operands[x][2] for x in "ABC")
    (bc,) = e("get_sblock", 1, name=g.name)
    m, n, kk = g.extents[-3:]
    pads, crop = [None, None], None
    if m % fm or n % fn or kk % fk:
        padding = [1] * (len(g.extents) - 3) + [fm, fn, fk]
        e("pad_einsum", block=_Ref(bc), padding=padding)
        pads, crop = st.padded_blocks(padding)
        m, n, kk = (-(-x // f) * f for x, f in ((m, fm), (n, fn), (kk, fk)))
    loops = e("get_loops", len(g.extents), block=_Ref(bc), unpack=True)
    outer, (i, j, k) = loops[:-3], loops[-3:]
    tiles = [_fit(m, max(fm, c.k * 2 if c.rows > 8 else 64)), _fit(n, max(fn, c.cols // 2)), _fit(kk, max(fk, c.k))]
    io, ii = e("split", 2, loop=_Ref(i), factors=[None, tiles[0]])
    jo, ji = e("split", 2, loop=_Ref(j), factors=[None, tiles[1]])
    ko, ki = e("split", 2, loop=_Ref(k), factors=[None, tiles[2]])
    iio, iif = e("split", 2, loop=_Ref(ii), factors=[None, fm])
    jio, jif = e("split", 2, loop=_Ref(ji), factors=[None, fn])
    kio, kif = e("split", 2, loop=_Ref(ki), factors=[None, fk])
    e("reorder", 0, *map(_Ref, outer), *map(_Ref, (io, jo, ko, iio, jio, kio, iif, jif, kif)))
    cast = [b.name for b in st.blocks if b.name != g.name and g.writes[0] in b.reads]
    if crop is not None and cast:  # the cast reads the padded result directly
        (bp,) = e("get_sblock", 1, name=crop)
        e("compute_inline", block=_Ref(bp))
    consumer = cast[0] if cast else crop
    if consumer is not None:
        e("set_scope", block=_Ref(bc), buffer_index=0, storage_scope=c_scope)
        (bd,) = e("get_sblock", 1, name=consumer)
        if c.via_stage:
            (w,) = e("cache_write", 1, block=_Ref(bd), write_buffer_index=0, storage_scope=c.stage)
            e("reverse_compute_at", block=_Ref(bd), loop=_Ref(jo))
            e("reverse_compute_at", block=_Ref(w), loop=_Ref(jo))
        else:
            e("reverse_compute_at", block=_Ref(bd), loop=_Ref(jo))
    else:
        (w,) = e("cache_write", 1, block=_Ref(bc), write_buffer_index=0, storage_scope=c_scope)
        e("reverse_compute_at", block=_Ref(w), loop=_Ref(jo))
    # the intrinsic takes A as [m, k] (reduction index last) and B as [k, n] (spatial last)
    transposed = (not g.last_index_reduces[0], g.last_index_reduces[1])
    for idx, scope in ((0, a_scope), (1, b_scope)):
        staged = c.operand_stage not in (a_scope, b_scope, c_scope)
        if staged:
            (s1,) = e("cache_read", 1, block=_Ref(bc), read_buffer_index=idx, storage_scope=c.operand_stage)
        (s0,) = e("cache_read", 1, block=_Ref(bc), read_buffer_index=idx, storage_scope=scope)
        if transposed[idx]:
            e("transform_layout", block=_Ref(s0), buffer=("write", 0), index_map=_swap_last_two(g.read_ndims[idx]))
        e("compute_at", block=_Ref(s0), loop=_Ref(ko))
        if staged:
            e("compute_at", block=_Ref(s1), loop=_Ref(ko))
            if c.double:
                e("annotate", block_or_loop=_Ref(s1), ann_key="double_buffer_scope", ann_val=0)
        if pads[idx] is not None:  # zero pads filled on the first copy on chip
            (bp,) = e("get_sblock", 1, name=pads[idx])
            e("compute_inline", block=_Ref(bp))
    if c.decompose:
        (init,) = e("decompose_reduction", 1, block=_Ref(bc), loop=_Ref(ko))
    e("tensorize", block_or_loop=_Ref(iif), tensor_intrin=mma.name)
    fill = api.fill_for(mma.operands["C"][0])
    if c.decompose and fill is not None:
        (init_loops,) = e("get_loops", 1, block=_Ref(init))
        e.lines.append(f"sch.tensorize(block_or_loop={init_loops}[-2], tensor_intrin=\"{fill.name}\")")
    return e.text()


def _swap_last_two(ndim: int) -> _Ref:
    """The index map of a copy that stores a buffer with its last two dimensions swapped."""
    idx = [f"i{d}" for d in range(ndim)]
    out = idx[:-2] + [idx[-1], idx[-2]]
    return _Ref(f"lambda {', '.join(idx)}: ({', '.join(out)})")
