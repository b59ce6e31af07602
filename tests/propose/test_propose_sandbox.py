"""The TVMScript sandbox: hostile text must never run, wherever it is stopped.

Each escape payload targets a marker file under tmp_path (``touch`` for the command ones),
so "nothing happened" is checked on disk, not inferred from an error message. Payloads go
through the full pipeline and, separately, through the sandbox alone with the prefilter
bypassed, to show each layer holds by itself. Each sandbox run starts a child that imports
TVM (~1 s); the hanging payloads use a short timeout.
"""

from __future__ import annotations

import ast
import tempfile
from pathlib import Path

import pytest
import tvm
import tvm_ffi

from hawk.propose.sandbox import _load_module, _parse_unfiltered, _strip_imports, parse_tvmscript, prefilter

HANG_TIMEOUT_S = 3.0

KERNEL = """
@T.prim_func(s_tir=True)
def main(A: T.Buffer((128,), "float32")):
    for i in range({bound}):
        A[i] = T.float32(0)
"""
BODY = """
@T.prim_func(s_tir=True)
def main(A: T.Buffer((128,), "float32")):
    {stmt}
    for i in range(128):
        A[i] = T.float32(0)
"""
CLASS_BODY = """
@I.ir_module
class Module:
    {stmt}

    @T.prim_func(s_tir=True)
    def main(A: T.Buffer((128,), "float32")):
        for i in range(128):
            A[i] = T.float32(0)
"""
DECORATOR = """
@T.prim_func(s_tir={expr})
def main(A: T.Buffer((128,), "float32")):
    for i in range(128):
        A[i] = T.float32(0)
"""
HELPER_LOOP = """
def spin():
    while True:
        pass

@T.prim_func(s_tir=True)
def main(A: T.Buffer((128, 4), "float32")):
    for i, j in T.grid(spin(), 4):
        A[i, j] = T.float32(0)
"""
# Passes the prefilter and TVMScript's shape checks, then fails TVM's buffer check.
WRONG_INDEX = """from tvm.script import ir as I
from tvm.script import tirx as T

@I.ir_module
class Module:
    @T.prim_func(s_tir=True)
    def main(A: T.Buffer((4,), "float32"), B: T.Buffer((4,), "float32")):
        for i in T.grid(4):
            with T.sblock("B"):
                vi = T.axis.spatial(4, i)
                B[vi] = A[vi, vi] + T.float32(1)
"""


def payloads(marker: Path) -> dict[str, str]:
    m = str(marker)
    system = f'__import__("os").system("touch {m}")'
    return {
        "write_text loop bound": KERNEL.format(
            bound=f'__import__("pathlib").Path("{m}").write_text("x") + 127'
        ),
        "os.system in body": BODY.format(stmt=system),
        "os.system in ir_module class": CLASS_BODY.format(stmt=f"x = {system}"),
        "open().write": KERNEL.format(bound=f'open("{m}", "w").write("x") + 127'),
        "getattr on builtins": KERNEL.format(
            bound=f'getattr(T, "__builtins__")["open"]("{m}", "w").write("x")'
        ),
        "globals() trick": BODY.format(
            stmt=f'globals()["__builtins__"]["open"]("{m}", "w").write("x")'
        ),
        "decorator time": DECORATOR.format(expr=f"{system} == 0"),
        "while True in helper": HELPER_LOOP,
    }


@pytest.fixture(scope="module")
def silu() -> tvm.IRModule:
    from hawk.bench.reference import reference_kernel
    from hawk.bench.suites import find_workload
    from hawk.npu import load_spec

    return reference_kernel(find_workload("silu_f32"), load_spec("davinci-like"))


# --- what must pass ------------------------------------------------------------------------


def test_printed_module_round_trips(silu):
    # The printer comments its imports out; uncommented, they are admitted and stripped.
    text = silu.script().replace("# from tvm.script import", "from tvm.script import")
    r = parse_tvmscript(text)
    assert r.ok, r.error.render()
    assert tvm_ffi.structural_equal(r.module, silu)
    assert 0 < r.wall_s < 20


def test_printed_primfunc_comes_back_wrapped(silu):
    r = parse_tvmscript(silu["main"].script())
    assert r.ok, r.error.render()
    assert [g.name_hint for g in r.module.get_global_vars()] == ["main"]
    assert tvm_ffi.structural_equal(r.module["main"], silu["main"])


def test_prefilter_admits_printed_reference_kernels():
    from hawk.bench.reference import reference_kernel
    from hawk.bench.suites import find_workload
    from hawk.npu import load_spec

    spec = load_spec("davinci-like")
    for name in [
        "matmul_bert_ffn",
        "conv2d_resnet_3x3",
        "softmax_bert",
        "rmsnorm_llama",
        "maxpool_resnet",
    ]:
        mod = reference_kernel(find_workload(name), spec)
        for text in (mod.script(), mod["main"].script()):
            err = prefilter(text)
            assert err is None, f"{name}: {err.render()}"


def test_tvmscript_error_keeps_its_position():
    r = parse_tvmscript(WRONG_INDEX)  # the two import lines are stripped, not renumbered
    assert r.module is None
    assert (r.error.line, r.error.col) == (11, 25)
    assert "Too many indices" in r.error.message
    assert "A[vi, vi]" in r.error.source_line
    assert "^" in r.error.render()


# --- the prefilter refuses, pointing at the node ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "line", "col", "fragment"),
    [
        ("def f(:\n", 1, 7, "syntax error"),
        ("import os\n", 1, 1, "may be imported"),
        ("from os import system\n", 1, 1, "may be imported"),
        ("from tvm.script import tirx as os\n", 1, 1, "may be imported"),
        (KERNEL.format(bound='__import__("os").getpid()'), 4, 20, "dunder name '__import__'"),
        (KERNEL.format(bound="A.__class__"), 4, 20, "attribute '__class__'"),
        (KERNEL.format(bound="A.same_as(A)"), 4, 20, "attribute 'same_as' is not allowed"),
        (KERNEL.format(bound='getattr(A, "shape")'), 4, 20, "'getattr' is not allowed"),
        (KERNEL.format(bound="(lambda: 4)()"), 4, 21, "Lambda is not allowed"),
        (KERNEL.format(bound="len([c for c in 'ab'])"), 4, 24, "ListComp is not allowed"),
        (KERNEL.format(bound="T.ir.IRModule"), 4, 20, "T.ir is a module"),
        (KERNEL.format(bound="T.no_such_thing(4)"), 4, 20, "not part of the TVMScript API"),
        (KERNEL.format(bound='tvm.get_global_func("x")'), 4, 20, "name 'tvm' is not defined"),
        (KERNEL.format(bound='"{0}".format(4)'), 4, 20, "attribute 'format'"),
        (KERNEL.format(bound="f'{A}'"), 4, 20, "JoinedStr is not allowed"),
        (BODY.format(stmt="t = T"), 4, 9, "'T' may only be used as T.<name>"),
        (BODY.format(stmt="tvm = 1"), 4, 5, "cannot be rebound"),
        (
            BODY.format(stmt="try:\n        pass\n    except Exception:\n        pass"),
            4,
            5,
            "Try is not allowed",
        ),
        (BODY.format(stmt="T.macro(A)"), 4, 5, "attribute 'macro'"),
        ("x = 1\n" + KERNEL.format(bound="4"), 1, 1, "may appear at top level"),
        (DECORATOR.format(expr="T.int32(1)"), 2, 2, "arguments must be constants"),
        (CLASS_BODY.format(stmt="x = 1"), 4, 5, "may hold only @T.prim_func"),
    ],
)
def test_prefilter_refusals_point_at_the_node(text, line, col, fragment):
    err = prefilter(text)
    assert err is not None
    assert fragment in err.message, err.render()
    assert (err.line, err.col) == (line, col), err.render()


# --- escape payloads ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(payloads(Path("M"))))
def test_escape_payloads_are_refused_up_front(name, tmp_path):
    marker = tmp_path / "MARKER"
    text = payloads(marker)[name]
    r = parse_tvmscript(text, timeout_s=HANG_TIMEOUT_S)
    assert r.module is None
    assert r.error == prefilter(text)  # refused before any child was started
    assert r.error.line > 0
    assert not marker.exists()


def test_cpu_burn_that_passes_the_prefilter_times_out():
    text = KERNEL.format(bound="9 ** 9 ** 9")  # plain arithmetic: minutes of big-int work
    assert prefilter(text) is None
    r = parse_tvmscript(text, timeout_s=HANG_TIMEOUT_S)
    assert r.module is None
    assert "timed out" in r.error.message
    assert r.wall_s < HANG_TIMEOUT_S + 15  # the timeout counts from the end of the child's start-up


def test_huge_allocation_that_passes_the_prefilter_hits_the_memory_limit():
    text = KERNEL.format(bound='len("x" * (1 << 34))')  # 16 GiB
    assert prefilter(text) is None
    r = parse_tvmscript(text)
    assert r.module is None
    assert "MemoryError" in r.error.message
    assert r.error.line == 4


# --- the sandbox alone (prefilter bypassed) ---------------------------------------------------


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("write_text loop bound", "opening a file for writing"),
        ("os.system in body", "os.system is not allowed"),
        ("os.system in ir_module class", "os.system is not allowed"),
        ("decorator time", "os.system is not allowed"),
    ],
)
def test_sandbox_alone_stops_payloads(name, why, tmp_path):
    marker = tmp_path / "MARKER"
    r = _parse_unfiltered(payloads(marker)[name], timeout_s=10)
    assert r.module is None
    assert why in r.error.message, r.error.render()
    assert not marker.exists()


def test_sandbox_alone_times_out_an_infinite_loop():
    r = _parse_unfiltered(KERNEL.format(bound="any(iter(int, 1)) + 4"), timeout_s=HANG_TIMEOUT_S)
    assert r.module is None
    assert "timed out" in r.error.message


def test_sandbox_reply_cannot_be_forged_and_crashes_are_errors():
    forged = KERNEL.format(bound='print(\'{"module": "forged"}\') or __import__("os")._exit(0)')
    r = _parse_unfiltered(forged, timeout_s=10)  # the print lands on stderr, not the reply pipe
    assert r.module is None and "exited with status 0" in r.error.message
    r = _parse_unfiltered(KERNEL.format(bound='__import__("os").abort()'), timeout_s=10)
    assert r.module is None and "SIGABRT" in r.error.message
    assert "no module" in _load_module(None) and "unreadable" in _load_module("{not json")


def test_os_limits_hold_without_the_audit_hook(tmp_path):
    """No audit hook either: seccomp refuses new processes; the chroot and Landlock keep
    even a directory anyone may write to out of reach. (tests/sandbox has the full probe.)"""
    marker = tmp_path / "MARKER"
    spawn = KERNEL.format(
        bound=f'__import__("subprocess").run(["touch", "{marker}"]).returncode + 128'
    )
    r = _parse_unfiltered(spawn, timeout_s=10, audit=False)
    assert r.module is None and "Operation not permitted" in r.error.message
    assert not marker.exists()

    with tempfile.TemporaryDirectory() as shared:
        Path(shared).chmod(0o777)
        target = Path(shared) / "MARKER"
        write = KERNEL.format(bound=f'__import__("pathlib").Path("{target}").write_text("x") + 127')
        r = _parse_unfiltered(write, timeout_s=10, audit=False)
        assert r.module is None and "No such file or directory" in r.error.message
        assert not target.exists()


def test_a_deep_module_from_the_child_is_refused_before_decoding(silu):
    """2,000 nested additions crash tvm.ir.load_json; the reply is bounded first."""
    from ..ir.test_ir_safe_json import nested_sum, with_attr

    deep = with_attr(tvm.ir.save_json(silu), nested_sum(2000))
    assert "nested 257 deep" in _load_module(deep)
    assert isinstance(_load_module(with_attr(tvm.ir.save_json(silu), nested_sum(10))), tvm.IRModule)


# --- the prefilter reads the text as the tokenizer does, and names in TVMScript's order ---------


@pytest.mark.parametrize("char", ["\x0c", "\x0b", "\x1c", "\x1d", "\x1e", "\x85", "\u2028", "\u2029",
                                  "\x00", "\x1b", "\u200b", "\u202e", "\ufeff", "\x7f"])
@pytest.mark.parametrize("where", ["comment", "string", "code"])
def test_invisible_characters_are_refused_anywhere_with_a_position(char, where):
    stmt = {"comment": f"# note{char}x = 1", "string": f'T.evaluate(T.StringImm("a{char}b"))',
            "code": f"x = 1{char}"}[where]
    text = BODY.format(stmt=stmt)
    err = prefilter(text)
    assert err is not None and f"U+{ord(char):04X}" in err.message, err
    assert err.line == 4 and err.source_line.lstrip().startswith(stmt[:4]), err.render()
    assert char not in err.render()


def test_import_stripping_keeps_every_other_character_in_place():
    # U+2028 is refused up front; the stripping must not depend on that: it blanks by position
    text = ('"""doc\u2028\u2028\u2028"""\r"""\r__import__("os").system("touch M")\r"""\r'
            'from tvm.script import tirx as T; from tvm.script import ir as I\r' + KERNEL.format(bound="4"))
    stripped = _strip_imports(text)
    assert len(stripped) == len(text) and "import" not in stripped.replace("__import__", "")
    assert [(i, c) for i, c in enumerate(stripped) if c != text[i]] == [
        (i, " ") for i, c in enumerate(stripped) if c != text[i]]
    body = [ast.dump(n, include_attributes=True) for n in ast.parse(text).body if not isinstance(n, ast.ImportFrom)]
    assert [ast.dump(n, include_attributes=True) for n in ast.parse(stripped).body] == body


def test_a_splitlines_payload_is_refused_before_any_child(tmp_path):
    marker = tmp_path / "MARKER"
    text = ('"\u2028\u2028\u2028"\n"""\n' f'__import__("os").system("touch {marker}")\n' '"""\n'
            "from tvm.script import tirx as T\n" + KERNEL.format(bound="4"))
    assert prefilter(text) is not None  # the old prefilter admitted it
    r = parse_tvmscript(text)
    assert r.error == prefilter(text) and "U+2028" in r.error.message and (r.error.line, r.error.col) == (1, 2)
    assert not marker.exists()


TWO_FUNCS = """
@I.ir_module
class Module:
    @T.prim_func(s_tir=True)
    def first({name}: T.int32, A: T.Buffer((128,), "float32")):
        for i in range(128):
            A[i] = T.float32(0)

    @T.prim_func(s_tir=True)
    def main(A: T.Buffer((128,), "float32")):
        for i in range({name}([128])):
            A[i] = T.float32(0)
"""


@pytest.mark.parametrize(("text", "line", "col"), [
    (BODY.format(stmt="x = sum([1, 2])\n    sum = T.int32(0)"), 4, 9),  # bound after the use
    (BODY.format(stmt="for sum in range(2):\n        T.evaluate(0)\n    x = sum([1])"), 6, 9),  # frame closed
    (BODY.format(stmt="if True:\n        map = 1\n    else:\n        x = map(abs, [1])"), 7, 13),  # sibling
    (BODY.format(stmt='with T.sblock("b") as iter:\n        T.evaluate(0)\n    x = iter([1])'), 6, 9),
    (BODY.format(stmt="id += 1"), 4, 5),
    (TWO_FUNCS.format(name="sum"), 11, 24),  # another function's parameter
    (KERNEL.format(bound="main([1])"), 4, 20),  # a function name
    ('\n@T.prim_func(s_tir=True)\ndef main(A: T.Buffer((sum([128]),), "float32"), sum: T.int32):\n'
     "    T.evaluate(0)\n", 3, 23),  # the annotation is evaluated before the parameter is bound
])
def test_a_name_is_admitted_only_where_the_parser_has_bound_it(text, line, col):
    err = prefilter(text)
    assert err is not None and "is not defined by this kernel" in err.message, err
    assert (err.line, err.col) == (line, col), err.render()


@pytest.mark.parametrize("name", [
    "sum", "map", "iter", "next", "id", "hash", "chr", "ord", "repr", "str", "bytes", "list", "dict", "set",
    "tuple", "zip", "enumerate", "sorted", "reversed", "filter", "isinstance", "issubclass", "callable",
    "round", "pow", "divmod", "any", "all", "slice", "frozenset", "bytearray", "complex", "ascii", "bin",
    "hex", "oct", "format", "__build_class__", "aiter", "anext", "NotImplemented", "Ellipsis", "license",
])
def test_no_builtin_beyond_the_safe_few_is_reachable(name):
    for text in (BODY.format(stmt=f"x = {name}"), KERNEL.format(bound=f"{name}(4)"),
                 BODY.format(stmt=f"for i in range(4):\n        {name} = i\n    x = {name}")):
        assert prefilter(text) is not None, text


def test_names_bound_before_their_use_are_admitted():
    text = BODY.format(stmt=(
        'B = T.alloc_buffer((128,), "float32")\n    sum = T.int32(4)\n'
        "    for i in range(sum):\n        with T.sblock('b'):\n            vi = T.axis.spatial(128, i)\n"
        "            B[vi] = A[vi]\n            n = vi + sum\n            T.evaluate(n)"))
    assert prefilter(text) is None
