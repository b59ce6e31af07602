"""Parse LLM-written TVMScript without trusting it.

TVMScript is Python: the parser ``eval``s every expression it meets (loop bounds, buffer
shapes, annotations, decorators), so parsing hostile text in-process is running it.
Two independent layers stand between the text and the machine:

1. :func:`prefilter` -- a static ``ast`` check run in this process. It admits the subset of
   Python that printed TVMScript uses (``func.script()`` / ``mod.script()``) and refuses
   everything else with a position: foreign imports, dunders, the builtins that reach
   code/objects/files, lambdas and comprehensions, helper functions, and attribute access
   that is neither a real ``T.``/``I.`` API name (resolved statically, never a module) nor
   a buffer/var field (``A.shape``, ``A.data``, ...) of a name the kernel binds. A name is
   admitted only where TVMScript's parser has bound it (earlier in the same function, in an
   enclosing block): anywhere else the parser would resolve it to the builtin. Invisible
   characters (controls, format characters, line separators) are refused anywhere.
2. :func:`parse_tvmscript` -- parses only in a throwaway confined child
   (:mod:`hawk.sandbox`, role ``parse`` in ``_sandbox_child.py``): limits and a private
   network namespace before TVM is imported; once it is (before the text is read), chroot
   into a private empty directory, ``nobody`` when started as root, Landlock, a seccomp
   filter (no sockets, processes, ptrace, ...), and an audit hook as a last Python-level
   layer; a scrubbed environment and a wall-clock timeout that kills the process group.
   Its reply is read with a size bound; the module comes back as ``tvm.ir.save_json``
   text and is rebuilt here by ``tvm.ir.load_json``, which constructs objects through the
   reflection registry and evaluates nothing, once ``load_ir_json`` has bounded the graph.

Import lines: ``from tvm.script import tirx as T`` (or ``tir as T``), ``from tvm.script
import ir as I``, ``from tvm.tirx.layout import Axis`` and ``from __future__ import
annotations`` are *allowed and stripped* (blanked by their ``ast`` positions, so every other
character keeps its line and column): the parser provides exactly these names anyway and
``from_source`` rejects import lines. Any other import, or these under another alias, is
refused. Not admitted (refused with a position):
``@T.macro`` and other helpers, ``metadata[...]`` references, f-strings, lambdas,
comprehensions, ``try``/``raise``/``del``/``global``.

Every failure -- refusal, TVMScript error, timeout, crash, limit, garbage -- is returned as
an :class:`AdmissionError` in :class:`ParseResult`, never raised.
"""

from __future__ import annotations

import ast
import inspect
import math
import re
import time
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from ..ir.safe_json import load_ir_json
from ..sandbox import Limits, SandboxError, SandboxProcess, SandboxTimeout
from .admission import AdmissionError, parse_source

if TYPE_CHECKING:
    import tvm

DEFAULT_TIMEOUT_S = 20.0
# The child maps ~0.5 GB of address space just importing TVM + LLVM; 2 GB leaves room for
# large kernels while stopping a runaway allocation long before it troubles the host.
DEFAULT_MEMORY_MB = 2048
MAX_SOURCE_CHARS = 1_000_000  # ast.parse itself costs memory; no real kernel is this large
_NOFILE = 32  # stdin/stdout/stderr, the dup'ed result pipe, and transient opens during import
STARTUP_CPU_S = 120  # importing TVM and warming the parser up, before the text is read
MAX_REPLY_BYTES = 64 << 20  # a parsed kernel's JSON; real ones are well under 1 MB

# (module, name) -> the only alias it may be imported under.
_ALLOWED_IMPORTS = {
    ("tvm.script", "tirx"): "T",
    ("tvm.script", "tir"): "T",
    ("tvm.script", "ir"): "I",
    ("tvm.tirx.layout", "Axis"): "Axis",
    ("__future__", "annotations"): None,
}
_IMPORT_ONLY = (
    "only 'from tvm.script import tirx as T' and 'from tvm.script import ir as I' may be imported"
)
_NAMESPACES = ("T", "I", "Axis")
# Builtins a kernel may call: pure, and none of them reaches objects, code or files.
_SAFE_BUILTINS = frozenset({"range", "len", "min", "max", "abs", "int", "float", "bool"})  # fmt: skip
# Never admitted as a name, bound or loaded: they reach code, frames, attributes by string,
# the filesystem or the interpreter.
_FORBIDDEN_NAMES = frozenset(
    {"open", "eval", "exec", "compile", "getattr", "setattr", "delattr", "hasattr", "globals",
     "locals", "vars", "dir", "input", "breakpoint", "help", "exit", "quit", "memoryview",
     "type", "object", "super", "classmethod", "staticmethod", "property", "print"}
)  # fmt: skip
# Non-underscore attributes that still lead somewhere dangerous: frames and code of
# generators/tracebacks, the class hierarchy, str.format's attribute walks, and the
# TVMScript API that wraps or registers Python callables instead of building IR.
_FORBIDDEN_ATTRS = frozenset(
    {"format", "format_map", "mro", "gi_frame", "gi_code", "cr_frame", "cr_code", "ag_frame",
     "ag_code", "tb_frame", "tb_next", "f_globals", "f_locals", "f_builtins", "f_back", "f_code",
     "func_globals", "func_code", "macro", "inline", "pyfunc", "register_script_namespace"}
)  # fmt: skip
# The only attributes reachable from kernel names and expressions (buffers, vars, values).
_LOCAL_ATTRS = frozenset(
    {"data", "shape", "dtype", "strides", "elem_offset", "offset_factor", "axis_separators",
     "scope", "name", "access_ptr", "vload", "vstore", "astype"}
)  # fmt: skip
# Characters no printed kernel holds (tab and line ends aside): see _invisible.
_INVISIBLE = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_ASCII_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")
_ALLOWED_NODES = (
    ast.Module, ast.ImportFrom, ast.alias, ast.FunctionDef, ast.ClassDef, ast.arguments, ast.arg,
    ast.Assign, ast.AnnAssign, ast.AugAssign, ast.For, ast.While, ast.If, ast.With, ast.withitem,
    ast.Expr, ast.Return, ast.Pass, ast.Assert, ast.Break, ast.Continue,
    ast.Name, ast.Attribute, ast.Call, ast.keyword, ast.Constant, ast.Tuple, ast.List, ast.Dict,
    ast.Subscript, ast.Slice, ast.Starred, ast.BinOp, ast.UnaryOp, ast.BoolOp, ast.Compare,
    ast.IfExp, ast.expr_context, ast.operator, ast.unaryop, ast.boolop, ast.cmpop,
)  # fmt: skip


@dataclass(frozen=True)
class ParseResult:
    """Outcome of :func:`parse_tvmscript`: exactly one of ``module`` and ``error`` is set."""

    module: tvm.IRModule | None
    error: AdmissionError | None
    wall_s: float

    @property
    def ok(self) -> bool:
        return self.error is None


class _Refused(Exception):
    def __init__(self, node: ast.AST, message: str):
        super().__init__(message)
        self.node = node


@cache
def _scope() -> tuple[dict[str, object], frozenset[str]]:
    """The TVMScript namespaces (T, I, Axis) and every name the parser pre-binds.

    Taken from TVM itself so the check follows the installed version; a pre-bound name
    (``tvm``, ``R``, ``Tx``, ...) must never be shadowed-then-fallen-through-to or loaded.
    """
    from tvm.script.parser.core.entry import _default_globals

    scope = _default_globals()
    return {k: scope[k] for k in _NAMESPACES}, frozenset(scope)


def prefilter(text: str) -> AdmissionError | None:
    """Statically check TVMScript text; the first refusal, pointing at its node, or None."""
    if len(text) > MAX_SOURCE_CHARS:
        return AdmissionError(
            f"TVMScript text is {len(text)} characters; the limit is {MAX_SOURCE_CHARS}"
        )
    invisible = _invisible(text)
    if invisible is not None:
        return invisible
    tree, error = parse_source(text)
    if error is not None:
        return error
    try:
        _check(tree)
    except _Refused as r:
        return AdmissionError.at_node(text, r.args[0], r.node)
    except (RecursionError, MemoryError) as e:
        return AdmissionError.at(text, f"TVMScript text is nested too deeply ({type(e).__name__})", 1, 1)
    return None


def _invisible(text: str) -> AdmissionError | None:
    """The first control, format, separator or surrogate character (tab and line ends aside).

    Python's tokenizer and the tools around it disagree about such characters (str.splitlines
    ends lines at \f, \v, \x1c-\x1e, \x85, \u2028, \u2029), and a reader cannot see them:
    no printed kernel holds one, anywhere, comments included.
    """
    found = _ASCII_CONTROL.search(text)
    end = found.start() if found else len(text)
    for m in _NON_ASCII.finditer(text, 0, end):
        if unicodedata.category(m.group()) in _INVISIBLE:
            found = m
            break
    if found is None:
        return None
    c = found.group()
    return AdmissionError.at_index(
        text, f"invisible character U+{ord(c):04X} ({unicodedata.category(c)}) is not allowed in TVMScript",
        found.start(),
    )


def _check(tree: ast.Module) -> None:
    namespaces, prebound = _scope()
    parents: dict[ast.AST, ast.AST] = {}
    # Pass 1 (ast.walk is iterative, so hostile nesting cannot blow our stack): the
    # identifiers themselves, so a payload is named for its dunder or forbidden builtin.
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
        if isinstance(node, ast.Attribute):
            if node.attr.startswith("_") or node.attr in _FORBIDDEN_ATTRS:
                raise _Refused(node, f"attribute {node.attr!r} is not allowed")
            continue
        name = _identifier(node)
        if name is None:
            continue
        if name.startswith("__"):
            raise _Refused(node, f"dunder name {name!r} is not allowed")
        if name in _FORBIDDEN_NAMES and not isinstance(node, ast.keyword):  # kwargs are labels
            raise _Refused(node, f"{name!r} is not allowed in TVMScript")
        if isinstance(node, (ast.keyword, ast.alias)) or (
            isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load)
        ):
            continue
        # Everything else binds the name: target, parameter, function or class.
        if name in prebound:
            raise _Refused(node, f"{name!r} is a TVMScript namespace and cannot be rebound")

    # Pass 2: shape (node kinds, where definitions and imports sit).
    _check_layout(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            raise _Refused(node, _IMPORT_ONLY)
        if not isinstance(node, _ALLOWED_NODES):
            raise _Refused(node, f"{type(node).__name__} is not allowed in TVMScript")
        if isinstance(node, ast.ImportFrom):
            _check_import(node, parents.get(node))
        elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            _check_definition(node, parents)

    # Pass 3: what each name reaches, in the order TVMScript's parser binds names.
    _Names(namespaces, parents).module(tree)


def _identifier(node: ast.AST) -> str | None:
    """The name a node binds or loads (imports: the alias), if any."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.arg):
        return node.arg
    if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
        return node.name
    if isinstance(node, ast.keyword):
        return node.arg  # None for **kwargs
    if isinstance(node, ast.alias):
        return node.asname or node.name
    return None


def _check_layout(tree: ast.Module) -> None:
    """Top level: imports, docstrings, kernels. An @I.ir_module class: kernels and I.* calls.

    Anything else (a helper function, a statement run at import time) is refused here.
    """
    for stmt in tree.body:
        if isinstance(stmt, ast.ClassDef):
            for inner in stmt.body:
                if not isinstance(inner, (ast.FunctionDef, ast.Expr, ast.Pass)):
                    raise _Refused(
                        inner, "an @I.ir_module class may hold only @T.prim_func functions"
                    )
        elif not isinstance(stmt, (ast.Import, ast.ImportFrom, ast.FunctionDef)) and not (
            isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        ):
            raise _Refused(
                stmt,
                "only imports, @T.prim_func functions and @I.ir_module classes may appear at top level",
            )


class _Scopes(list):
    """Nested frames of bound names, innermost last; ``name in scopes`` looks through all."""

    def __contains__(self, name: object) -> bool:
        return any(name in frame for frame in self)


class _Names:
    """Admit a load only where TVMScript's parser has the name in its variable table.

    The parser evaluates a name it has not bound against Python's globals and builtins,
    so a name bound anywhere else (later, in a sibling block, in a block already closed)
    is the builtin at that point. It binds parameters one by one after their annotation,
    assignment targets after their value, and loop and ``with`` targets for the body only,
    and closes the frame of every ``for``/``while``/``if``/``with`` body when it ends.
    Function and class names are never in a body's table.
    """

    def __init__(self, namespaces: dict[str, object], parents: dict[ast.AST, ast.AST]):
        self.namespaces, self.parents = namespaces, parents

    def module(self, tree: ast.Module) -> None:
        for stmt in tree.body:
            if isinstance(stmt, ast.ClassDef):
                self.loads(stmt.decorator_list, _Scopes([set()]))
                for inner in stmt.body:
                    if isinstance(inner, ast.FunctionDef):
                        self.function(inner)
                    else:
                        self.statement(inner, _Scopes([set()]))
            elif isinstance(stmt, ast.FunctionDef):
                self.function(stmt)

    def function(self, fn: ast.FunctionDef) -> None:
        self.loads(fn.decorator_list, _Scopes([set()]))
        scopes = _Scopes([set()])
        for a in fn.args.args:
            self.loads([a.annotation], scopes)
            scopes[-1].add(a.arg)
        self.loads([fn.returns], scopes)
        self.body(fn.body, scopes)

    def body(self, stmts: list[ast.stmt], scopes: _Scopes, *targets: ast.expr) -> None:
        """A block in a new frame, with ``targets`` bound in it first."""
        scopes.append(set())
        for target in targets:
            self.bind(target, scopes)
        for stmt in stmts:
            self.statement(stmt, scopes)
        scopes.pop()

    def statement(self, stmt: ast.stmt, scopes: _Scopes) -> None:
        if isinstance(stmt, ast.Assign):
            self.loads([stmt.value], scopes)
            for target in stmt.targets:
                self.bind(target, scopes)
        elif isinstance(stmt, ast.AnnAssign):
            self.loads([stmt.annotation, stmt.value], scopes)
            self.bind(stmt.target, scopes)
        elif isinstance(stmt, ast.AugAssign):
            self.loads([stmt.value], scopes)
            if isinstance(stmt.target, ast.Name) and stmt.target.id not in scopes:
                raise _Refused(stmt.target, _undefined(stmt.target.id))
            self.bind(stmt.target, scopes)
        elif isinstance(stmt, ast.For):
            self.loads([stmt.iter], scopes)
            self.body(stmt.body, scopes, stmt.target)
            self.body(stmt.orelse, scopes)
        elif isinstance(stmt, (ast.While, ast.If)):
            self.loads([stmt.test], scopes)
            self.body(stmt.body, scopes)
            self.body(stmt.orelse, scopes)
        elif isinstance(stmt, ast.With):
            scopes.append(set())  # each item sees the targets of the items before it
            for item in stmt.items:
                self.loads([item.context_expr], scopes)
                if item.optional_vars is not None:
                    self.bind(item.optional_vars, scopes)
            self.body(stmt.body, scopes)
            scopes.pop()
        else:  # Expr, Return, Assert, Pass, Break, Continue: expressions only
            self.loads([v for v in ast.iter_child_nodes(stmt) if isinstance(v, ast.expr)], scopes)

    def bind(self, target: ast.expr, scopes: _Scopes) -> None:
        if isinstance(target, ast.Name):
            scopes[-1].add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for elt in target.elts:
                self.bind(elt, scopes)
        elif isinstance(target, ast.Starred):
            self.bind(target.value, scopes)
        else:  # A[i] = ..., A.x = ...: the buffer and the indices are loads
            self.loads([target], scopes)

    def loads(self, exprs: list[ast.expr | None], scopes: _Scopes) -> None:
        for expr in exprs:
            for node in ast.walk(expr) if expr is not None else ():
                if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load):
                    _check_load(node, self.parents.get(node), scopes)
                elif isinstance(node, ast.Attribute):
                    _check_attribute(node, self.namespaces, scopes)


def _check_load(node: ast.Name, parent: ast.AST | None, bound: _Scopes) -> None:
    if node.id in _NAMESPACES:
        # Only as the root of an attribute chain, so a namespace module is never aliased.
        if not (isinstance(parent, ast.Attribute) and parent.value is node):
            raise _Refused(node, f"{node.id!r} may only be used as {node.id}.<name>")
    elif node.id not in bound and node.id not in _SAFE_BUILTINS:
        raise _Refused(node, _undefined(node.id))


def _undefined(name: str) -> str:
    return f"name {name!r} is not defined by this kernel nor a TVMScript namespace"


def _check_attribute(node: ast.Attribute, namespaces: dict[str, object], bound: _Scopes) -> None:
    chain = [node.attr]
    root: ast.expr = node.value
    while isinstance(root, ast.Attribute):
        chain.append(root.attr)
        root = root.value
    chain.reverse()
    root_name = root.id if isinstance(root, ast.Name) else None
    if root_name == "Axis":
        if len(chain) != 1:  # Axis.<name> resolves through a registry; never deeper
            raise _Refused(node, "only Axis.<name> is allowed")
    elif root_name in namespaces:
        # Resolve statically (no __getattr__, no properties run): it must be real TVMScript
        # API, and never a module, which would open the way to tvm, os, sys, ...
        obj = namespaces[root_name]
        for i, name in enumerate(chain):
            dotted = ".".join([root_name, *chain[: i + 1]])
            try:
                obj = inspect.getattr_static(obj, name)
            except AttributeError:
                raise _Refused(node, f"{dotted} is not part of the TVMScript API") from None
            if inspect.ismodule(obj):
                raise _Refused(node, f"{dotted} is a module, not TVMScript API")
    elif root_name is not None and root_name not in bound:
        raise _Refused(root, _undefined(root_name))
    else:
        # Kernel names and expressions hold IR values: only their fields are reachable.
        bad = next((name for name in chain if name not in _LOCAL_ATTRS), None)
        if bad is not None:
            raise _Refused(node, f"attribute {bad!r} is not allowed outside T. and I.")


def _check_import(node: ast.ImportFrom, parent: ast.AST | None) -> None:
    if not isinstance(parent, ast.Module):
        raise _Refused(node, "imports are allowed only at top level")
    for a in node.names:
        key = (node.module, a.name)
        if node.level or key not in _ALLOWED_IMPORTS or a.asname != _ALLOWED_IMPORTS[key]:
            raise _Refused(node, _IMPORT_ONLY)


def _check_definition(
    node: ast.FunctionDef | ast.ClassDef, parents: dict[ast.AST, ast.AST]
) -> None:
    parent = parents.get(node)
    if isinstance(node, ast.ClassDef):
        where_ok = isinstance(parent, ast.Module)
        decorator, what = ("I", "ir_module"), "a class must be an @I.ir_module at top level"
        if node.bases or node.keywords:
            raise _Refused(node, "an @I.ir_module class takes no bases or keywords")
    else:
        where_ok = isinstance(parent, ast.Module) or (
            isinstance(parent, ast.ClassDef) and isinstance(parents.get(parent), ast.Module)
        )
        decorator, what = (
            ("T", "prim_func"),
            "a function must be an @T.prim_func at top level or in an @I.ir_module",
        )
        a = node.args
        if a.posonlyargs or a.vararg or a.kwonlyargs or a.kwarg or a.defaults:
            raise _Refused(node, "@T.prim_func parameters are plain 'name: annotation' only")
    if not where_ok or len(node.decorator_list) != 1:
        raise _Refused(node, what)
    dec = node.decorator_list[0]
    call = dec if isinstance(dec, ast.Call) else None
    target = call.func if call else dec
    if not (isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name)
            and (target.value.id, target.attr) == decorator):  # fmt: skip
        raise _Refused(dec, what)
    if call and not all(
        isinstance(v, ast.Constant) for v in [*call.args, *(k.value for k in call.keywords)]
    ):
        raise _Refused(dec, f"@{'.'.join(decorator)}(...) arguments must be constants")


def _strip_imports(text: str) -> str:
    """Blank the (already admitted) imports: exactly the characters of each statement, and
    a ``;`` after it, become spaces, so every other character keeps its line and column and
    no string or comment boundary moves. Lines are split as the tokenizer splits them."""
    parts = re.split(r"(\r\n|\r|\n)", text)  # lines at even indices, their ends between
    for node in ast.parse(text).body:
        if not isinstance(node, ast.ImportFrom):
            continue
        first, last = node.lineno - 1, (node.end_lineno or node.lineno) - 1
        for row in range(first, last + 1):
            line = parts[2 * row]
            start = _char_col(line, node.col_offset) if row == first else 0
            end = _char_col(line, node.end_col_offset) if row == last else len(line)
            if row == last:
                after = len(line) - len(line[end:].lstrip(" "))
                end = after + 1 if line[after : after + 1] == ";" else end
            parts[2 * row] = line[:start] + " " * (end - start) + line[end:]
    return "".join(parts)


def _char_col(line: str, byte_col: int | None) -> int:
    """ast's UTF-8 byte column as a character index into ``line``."""
    return len(line.encode()[: byte_col or 0].decode(errors="ignore"))


def parse_tvmscript(
    text: str, *, timeout_s: float = DEFAULT_TIMEOUT_S, memory_mb: int = DEFAULT_MEMORY_MB
) -> ParseResult:
    """Prefilter ``text``, then parse it with ``tvm.script.from_source`` in a sandboxed child.

    A PrimFunc comes back wrapped as ``IRModule({"main": func})``. Never raises for bad input.
    """
    start = time.monotonic()
    refusal = prefilter(text)
    if refusal is not None:
        return ParseResult(None, refusal, time.monotonic() - start)
    return _run_child(text, _strip_imports(text), timeout_s, memory_mb, start)


def _parse_unfiltered(
    text: str,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    memory_mb: int = DEFAULT_MEMORY_MB,
    audit: bool = True,
) -> ParseResult:
    """The sandbox alone, prefilter bypassed. Tests only: proves the second layer holds."""
    return _run_child(text, text, timeout_s, memory_mb, time.monotonic(), audit=audit)


def _run_child(
    original: str, text: str, timeout_s: float, memory_mb: int, start: float, audit: bool = True
) -> ParseResult:
    def fail(message: str, line: int = 0, col: int = 0) -> ParseResult:
        err = AdmissionError.at(original, message, line, col) if line else AdmissionError(message)
        return ParseResult(None, err, time.monotonic() - start)

    # A fresh child per text: nothing a payload leaves behind reaches the next parse.
    child = SandboxProcess(
        "parse", limits=Limits(cpu_s=STARTUP_CPU_S + math.ceil(timeout_s) + 1, memory_mb=memory_mb,
                               nofile=_NOFILE),
        options={"audit": audit},
    )  # fmt: skip
    try:
        child.start()
        # the parse itself gets its own CPU backstop, just behind the wall-clock timeout
        reply, _ = child.request({"op": "parse", "cpu_s": math.ceil(timeout_s) + 1},
                                 [text.encode(errors="replace")],
                                 timeout=timeout_s, max_header=MAX_REPLY_BYTES, max_blobs=0)
    except SandboxTimeout:
        return fail(f"TVMScript parsing timed out after {timeout_s:g} s")
    except SandboxError as err:
        return fail(f"TVMScript sandbox failed: {str(err)[:800]}")
    finally:
        child.close()
    if isinstance(reply.get("error"), str):
        line, col = reply.get("line"), reply.get("col")
        ok_pos = isinstance(line, int) and isinstance(col, int)
        return fail(reply["error"][:2000], line if ok_pos else 0, col if ok_pos else 0)
    module = _load_module(reply.get("module"))
    if isinstance(module, str):
        return fail(module)
    return ParseResult(module, None, time.monotonic() - start)


def _load_module(saved: object) -> tvm.IRModule | str:
    """Rebuild the child's result (reflection only, no eval, bounded before TVM decodes it:
    its decoder recurses without a limit); a message if it is not a module."""
    import tvm

    if not isinstance(saved, str):
        return "TVMScript sandbox returned no module"
    try:
        obj = load_ir_json(saved)
    except ValueError as e:
        return f"TVMScript sandbox returned an unreadable module: {e}"
    if isinstance(obj, tvm.tirx.PrimFunc):
        obj = tvm.IRModule({"main": obj})
    if not isinstance(obj, tvm.IRModule):
        return f"TVMScript parsed to a {type(obj).__name__}, not a PrimFunc or IRModule"
    return obj
