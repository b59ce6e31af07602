"""Schedule programs: the short text of ``sch.*`` calls a proposer writes.

A program is parsed with ``ast`` against an allow-list and interpreted call by call on an
``s_tir.Schedule`` of the workload: no ``exec``, no ``eval``. Arguments are literals,
names bound by earlier lines, ``name[index]``, lists of those, and, for
``transform_layout`` only, a lambda of index arithmetic. A program that breaks the rules or
that TVM rejects comes back as an AdmissionError pointing at the line and column.

The language is the Python form of MetaSchedule traces (``Trace.as_python``), so programs
convert to and from traces: ``program_from_trace`` and ``apply_program(...).trace``.
"""

from __future__ import annotations

import ast
import inspect
import math
import operator
from dataclasses import dataclass
from functools import cache

import tvm
from tvm import s_tir

from .admission import AdmissionError, parse_source

# Schedule primitives a program may call, with the MetaSchedule sampling instructions a
# trace replays (their decision makes them deterministic).
PRIMITIVES = frozenset({
    "get_sblock", "get_loops", "get_child_blocks", "get_producers", "get_consumers",
    "get_output_blocks", "split", "reorder", "fuse", "cache_read", "cache_write", "set_scope",
    "compute_at", "reverse_compute_at", "compute_inline", "reverse_compute_inline",
    "decompose_reduction", "rfactor", "tensorize", "blockize", "vectorize", "unroll", "parallel",
    "annotate", "unannotate", "storage_align", "pad_einsum", "transform_layout", "reindex",
    "add_unit_loop", "decompose_padding", "sample_perfect_tile", "sample_categorical", "sample_compute_location",
    "enter_postproc",
})
# Annotations a kernel author may set; `hawk.intrin` and friends are the model's own.
ANNOTATIONS = frozenset({
    "double_buffer_scope", "software_pipeline_stage", "software_pipeline_order",
    "pragma_auto_unroll_max_step", "pragma_unroll_explicit", "meta_schedule.unroll_explicit",
    "meta_schedule.unroll_implicit", "meta_schedule.vectorize", "meta_schedule.tiling_structure",
    "meta_schedule.auto_tensorize", "meta_schedule.cooperative_fetch",
})
MAX_STATEMENTS = 400
MAX_TEXT = 40_000
# Bounds on what a line may say; TVM trusts its caller (a split with 8,000 factors crashes
# it, sample_perfect_tile(n=20000000) allocates gigabytes). Real programs stay far below.
MAX_LIST = 64  # factors, loops, candidates, unpacked names
MAX_NESTING = 3  # a list of tuples of literals at most
MAX_INT = 2**31 - 1  # TVM's loop and index arithmetic is int32
MAX_STR = 256
MAX_INDEX_MAP_NODES = 128
# Integer arguments that size what TVM builds, rather than values in the IR.
_COUNTS = {("sample_perfect_tile", "n"): 16}
# Keywords that Trace.as_python prints differently from the Python API (TVM 0.27).
_TRACE_KEYWORDS = {("get_output_blocks", "block"): "scope_block"}
# Python's operators on TVM expressions build floordiv/floormod and unify integer dtypes.
_INDEX_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
              ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod}


@dataclass(frozen=True)
class Applied:
    """Result of running a program: the scheduled module, or the error that stopped it."""

    module: tvm.IRModule | None
    trace: s_tir.Trace | None
    error: AdmissionError | None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Refuse(Exception):
    def __init__(self, node: ast.AST, message: str):
        super().__init__(message)
        self.node = node


def parse_program(text: str) -> tuple[list[ast.stmt] | None, AdmissionError | None]:
    """Check a program against the language; returns its statements or the first error."""
    if len(text) > MAX_TEXT:
        return None, AdmissionError(f"program is {len(text)} characters, the limit is {MAX_TEXT}")
    tree, error = parse_source(text)
    if error is not None:
        return None, error
    if len(tree.body) > MAX_STATEMENTS:
        return None, AdmissionError(f"program has {len(tree.body)} statements, the limit is {MAX_STATEMENTS}")
    for stmt in tree.body:
        try:
            _check_statement(stmt)
        except _Refuse as refusal:
            return None, _error(text, refusal.node, str(refusal))
    return tree.body, None


def apply_program(text: str, kernel) -> Applied:
    """Run ``text`` on a fresh schedule of ``kernel`` (an IRModule or PrimFunc)."""
    stmts, error = parse_program(text)
    if error is not None:
        return Applied(None, None, error)
    mod = kernel if isinstance(kernel, tvm.IRModule) else tvm.IRModule({"main": kernel})
    # schedule a private copy: s_tir.Schedule rewrites statements it shares in place
    sch = s_tir.Schedule(tvm.ir.load_json(tvm.ir.save_json(mod)))
    env: dict[str, object] = {}
    for stmt in stmts:
        try:
            _run_statement(sch, stmt, env)
        except _Refuse as refusal:
            return Applied(None, None, _error(text, refusal.node, str(refusal)))
        except Exception as err:  # noqa: BLE001 - TVM raises builtin kinds; every refusal is a value
            return Applied(None, None, _error(text, stmt, f"TVM rejected the call: {_tvm_message(err)}"))
    return Applied(sch.mod, sch.trace, None)


def split_extents(text: str, kernel) -> dict[int, int]:
    """Statement index -> the extent of the loop each ``split`` of the program divides, as
    the program runs on ``kernel`` (empty when it does not run)."""
    stmts, error = parse_program(text)
    if error is not None:
        return {}
    mod = kernel if isinstance(kernel, tvm.IRModule) else tvm.IRModule({"main": kernel})
    sch = s_tir.Schedule(tvm.ir.load_json(tvm.ir.save_json(mod)))
    env: dict[str, object] = {}
    out = {}
    for i, stmt in enumerate(stmts):
        call = stmt.value
        try:
            if call.func.attr == "split":
                node = next((k.value for k in call.keywords if k.arg == "loop"), call.args[0] if call.args else None)
                extent = sch.get(_value(node, env)).extent
                if isinstance(extent, tvm.tirx.IntImm):
                    out[i] = int(extent)
            _run_statement(sch, stmt, env)
        except Exception:  # noqa: BLE001 - a program that stops here has no more splits to tell
            break
    return out


def program_from_trace(trace: s_tir.Trace) -> str:
    """The program text of a MetaSchedule trace (ValueError if TVM cannot print it)."""
    try:
        return "\n".join(trace.as_python()) + "\n"
    except Exception as err:  # noqa: BLE001 - e.g. DecomposePadding does not print in TVM 0.27
        kinds = sorted({inst.kind.name for inst in trace.insts})
        raise ValueError(f"this trace cannot be written as a program ({_tvm_message(err)}); "
                         f"instructions: {', '.join(kinds)}") from None


# --- checking -------------------------------------------------------------------------------


def _check_statement(stmt: ast.stmt) -> None:
    if isinstance(stmt, ast.Assign):
        if len(stmt.targets) != 1:
            raise _Refuse(stmt, "one assignment target per line")
        _check_target(stmt.targets[0])
        _check_call(stmt.value)
    elif isinstance(stmt, ast.Expr):
        _check_call(stmt.value)
    else:
        raise _Refuse(stmt, f"only `name = sch.primitive(...)` and `sch.primitive(...)` lines are allowed, "
                            f"not {type(stmt).__name__}")


def _check_target(target: ast.expr) -> None:
    if isinstance(target, ast.Name):
        _check_name(target)
    elif isinstance(target, (ast.Tuple, ast.List)) and all(isinstance(t, ast.Name) for t in target.elts):
        _check_length(target)
        for t in target.elts:
            _check_name(t)
    else:
        raise _Refuse(target, "assign to a name or a tuple of names")


def _check_name(node: ast.Name) -> None:
    if node.id.startswith("_") or node.id == "sch":
        raise _Refuse(node, f"name {node.id!r} is reserved")


def _check_call(node: ast.expr) -> None:
    if not isinstance(node, ast.Call):
        raise _Refuse(node, "each line calls a schedule primitive")
    func = node.func
    if not (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "sch"):
        raise _Refuse(node, "only sch.<primitive>(...) may be called")
    if func.attr not in PRIMITIVES:
        raise _Refuse(func, f"sch.{func.attr} is not an allowed schedule primitive")
    for arg in node.args:
        _check_value(arg, func.attr)
    for kw in node.keywords:
        if kw.arg is None:
            raise _Refuse(kw.value, "** arguments are not allowed")
        _check_value(kw.value, func.attr)


def _check_value(node: ast.expr, primitive: str, depth: int = 0) -> None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float, str, bool, type(None))):
        _check_literal(node, node.value)
        return
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and _is_number(node.operand):
        _check_literal(node, node.operand.value)
        return
    if isinstance(node, ast.Name):
        _check_name(node)
        return
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        index = node.slice.operand if isinstance(node.slice, ast.UnaryOp) else node.slice
        if not (isinstance(index, ast.Constant) and type(index.value) is int) or (
                isinstance(node.slice, ast.UnaryOp) and not isinstance(node.slice.op, ast.USub)):
            raise _Refuse(node, "index with an integer literal")
        _check_literal(node.slice, index.value)
        return
    if isinstance(node, (ast.List, ast.Tuple)):
        if depth == MAX_NESTING:
            raise _Refuse(node, f"lists nest {MAX_NESTING} deep at most")
        _check_length(node)
        for elt in node.elts:
            _check_value(elt, primitive, depth + 1)
        return
    if isinstance(node, ast.Lambda) and primitive == "transform_layout":
        _check_index_lambda(node)
        return
    raise _Refuse(node, f"argument must be a literal, a bound name or a list of them, not {type(node).__name__}")


def _check_literal(node: ast.expr, value: object) -> None:
    if isinstance(value, (int, float)) and not isinstance(value, bool) and not (
            math.isfinite(value) and abs(value) <= MAX_INT):
        raise _Refuse(node, f"numbers are at most {MAX_INT} in magnitude")
    if isinstance(value, str) and (len(value) > MAX_STR or not value.isprintable()):
        raise _Refuse(node, f"strings are names: printable and at most {MAX_STR} characters")


def _is_number(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and type(node.value) in (int, float)


def _check_length(node: ast.Tuple | ast.List) -> None:
    if len(node.elts) > MAX_LIST:
        raise _Refuse(node, f"{len(node.elts)} items; the limit is {MAX_LIST}")


def _check_index_lambda(node: ast.Lambda) -> None:
    params = [a.arg for a in node.args.args]
    if node.args.vararg or node.args.kwarg or node.args.kwonlyargs or node.args.defaults:
        raise _Refuse(node, "the index map takes plain positional parameters")
    if len(params) > MAX_LIST or sum(1 for _ in ast.walk(node.body)) > MAX_INDEX_MAP_NODES:
        raise _Refuse(node, f"an index map has at most {MAX_LIST} parameters and {MAX_INDEX_MAP_NODES} terms")

    def check(e):
        if isinstance(e, ast.Name) and e.id in params:
            return
        if isinstance(e, ast.Constant) and type(e.value) is int:
            _check_literal(e, e.value)
            return
        if isinstance(e, ast.BinOp) and type(e.op) in _INDEX_OPS:
            check(e.left)
            check(e.right)
            return
        raise _Refuse(e, "an index map is arithmetic (+ - * // %) over its parameters and integers")

    body = node.body.elts if isinstance(node.body, (ast.Tuple, ast.List)) else [node.body]
    for e in body:
        check(e)


# --- running --------------------------------------------------------------------------------


def _run_statement(sch: s_tir.Schedule, stmt: ast.stmt, env: dict) -> None:
    call = stmt.value
    result = _call(sch, call, env)
    if isinstance(stmt, ast.Assign):
        target = stmt.targets[0]
        if isinstance(target, ast.Name):
            env[target.id] = result
        else:
            values = list(result) if isinstance(result, (list, tuple, tvm.ir.Array)) else None
            if values is None or len(values) != len(target.elts):
                got = "one value" if values is None else f"{len(values)} values"
                raise _Refuse(target, f"sch.{call.func.attr} returned {got}, the line unpacks {len(target.elts)}")
            for name, value in zip(target.elts, values):
                env[name.id] = value


def _call(sch: s_tir.Schedule, call: ast.Call, env: dict):
    name = call.func.attr
    args = [_value(a, env) for a in call.args]
    kwargs = {_TRACE_KEYWORDS.get((name, kw.arg), kw.arg): _value(kw.value, env) for kw in call.keywords}
    if name == "annotate":
        key = kwargs.get("ann_key", args[1] if len(args) > 1 else None)
        if key not in ANNOTATIONS:
            raise _Refuse(call, f"annotation {key!r} is not one a kernel may set")
    if name == "tensorize":
        intrin = kwargs.get("tensor_intrin", args[1] if len(args) > 1 else None)
        if not isinstance(intrin, str) or s_tir.TensorIntrin.get(intrin, allow_missing=True) is None:
            raise _Refuse(call, f"unknown tensor intrinsic {intrin!r}")
    for param, value in _arguments(call, name, args, kwargs).items():
        limit = _COUNTS.get((name, param))
        if limit is not None and not (isinstance(value, int) and 0 < value <= limit):
            raise _Refuse(call, f"sch.{name}: {param} must be an integer from 1 to {limit}, not {value!r}")
    return getattr(sch, name)(*args, **kwargs)


def _arguments(call: ast.Call, name: str, args: list, kwargs: dict) -> dict:
    """The call's arguments by parameter name, as the primitive will bind them."""
    try:
        return _signature(name).bind(None, *args, **kwargs).arguments
    except TypeError as err:
        raise _Refuse(call, f"sch.{name}: {err}") from None


@cache
def _signature(name: str) -> inspect.Signature:
    return inspect.signature(getattr(s_tir.Schedule, name))


def _value(node: ast.expr, env: dict):
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.UnaryOp):
        return -node.operand.value
    if isinstance(node, ast.Name):
        if node.id not in env:
            raise _Refuse(node, f"name {node.id!r} is not bound by an earlier line")
        return env[node.id]
    if isinstance(node, ast.Subscript):
        seq = _value(node.value, env)
        index = _value(node.slice, env)
        try:
            return list(seq)[index]
        except (TypeError, IndexError):
            raise _Refuse(node, f"{node.value.id}[{index}] does not exist") from None
    if isinstance(node, (ast.List, ast.Tuple)):
        values = [_value(e, env) for e in node.elts]
        return values if isinstance(node, ast.List) else tuple(values)
    if isinstance(node, ast.Lambda):
        return _index_map(node)
    raise _Refuse(node, f"cannot evaluate {type(node).__name__}")


def _index_map(node: ast.Lambda):
    """The lambda as a Python callable over TVM index variables (TVM picks their dtype)."""
    params = [a.arg for a in node.args.args]

    def build(*index_vars):
        if len(index_vars) != len(params):
            raise ValueError(f"the index map takes {len(params)} indices, the buffer has {len(index_vars)}")
        scope = dict(zip(params, index_vars))

        def expr(e):
            if isinstance(e, ast.Name):
                return scope[e.id]
            if isinstance(e, ast.Constant):
                return e.value
            return _INDEX_OPS[type(e.op)](expr(e.left), expr(e.right))

        body = node.body.elts if isinstance(node.body, (ast.Tuple, ast.List)) else [node.body]
        return [expr(e) for e in body]

    return build


def _error(text: str, node: ast.AST, message: str) -> AdmissionError:
    return AdmissionError.at_node(text, message, node)


def _tvm_message(err: Exception) -> str:
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("Error message:"):
            return ln[len("Error message:"):].strip()
    return lines[-1] if lines else type(err).__name__
