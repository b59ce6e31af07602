"""Hostile proposals for the fuzzing campaign, drawn by hypothesis.

Two sources, as a model's answers would be: grammar-aware mutations of real texts (the
offline proposer's schedule programs and the reference kernels as TVMScript, for the
workloads tuned) and the known payload classes, each aimed at canaries (a directory, a TCP
port and a unix socket) that nothing the tuner runs may reach. Every proposal is an answer
(fenced or not, with prose or not) and carries its class, so the campaign can say which
class ended in which outcome.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

# integers that break code written for sane ones
EXTREMES = [0, -1, 1, 3, 7, 15, 17, 255, 65536, 2**31 - 1, 2**31, -(2**31), 2**32, 2**63, 10**30, 1 << 40]
PRIMITIVES = ["get_sblock", "get_loops", "split", "fuse", "reorder", "cache_read", "cache_write", "compute_at",
              "reverse_compute_at", "vectorize", "parallel", "unroll", "tensorize", "blockize", "annotate",
              "decompose_reduction", "compute_inline", "rfactor", "storage_align", "set_scope"]
UNKNOWN = ["frobnicate", "_sch", "__class__", "__init__", "__globals__", "mod", "state", "trace", "fork",
           "enter_postproc", "work_on", "copy", "seed", "__reduce__", "__getattribute__"]
SCOPES = ["global", "global.npu.l1", "global.npu.l0a", "global.npu.l0b", "global.npu.l0c", "global.npu.ub",
          "global.npu.spm", "global.npu.acc", "shared", "local", "global.npu.l2", "", "../../etc", "global\x00.npu"]
ANN_KEYS = ["double_buffer_scope", "pragma_import_c", "pragma_import_llvm", "pragma_unroll_explicit",
            "meta_schedule.auto_tensorize", "software_pipeline_stage", "tir.noalias", "global_symbol",
            "tirx.script_parsing_detect_access", "hawk.cycles"]
JUNK = ["\x00", "\u2028", "\ufeff", "\ud800", "\x1b[2J", "```", "\t", "\\", "'", '"', "#", ":", "(", ")", "[", "]",
        "lambda: 0", "yield", "await", "...", "\n", "𝔰𝔠𝔥"]


@dataclass(frozen=True)
class Canary:
    """Where an escape would show: nothing may appear in ``root``, nothing may connect."""

    root: Path
    port: int
    unix: Path
    token: str

    def path(self, name: str) -> str:
        return str(self.root / f"{self.token}-{name}")


@dataclass(frozen=True)
class Proposal:
    kind: str  # the class it was drawn from
    answer: str  # what the endpoint replies


def draw(n: int, bases: list[str], canary: Canary, *, seed: int) -> list[Proposal]:
    """``n`` proposals, deterministic for a seed: hypothesis generates (no shrinking, no
    database), one example per proposal."""
    out: list[Proposal] = []

    @hypothesis_seed(seed)
    @settings(max_examples=n, phases=[Phase.generate], database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(proposals(bases, canary))
    def collect(p: Proposal) -> None:
        out.append(p)

    collect()
    while len(out) < n:  # hypothesis may stop early once it has seen every distinct example
        out.extend(out[: n - len(out)])
    return out[:n]


def proposals(bases: list[str], canary: Canary) -> st.SearchStrategy[Proposal]:
    programs = [b for b in bases if "@T.prim_func" not in b]
    scripts = [b for b in bases if "@T.prim_func" in b]
    mutated_program = st.sampled_from(programs).flatmap(lambda b: _mutated(b, program=True))
    mutated_script = st.sampled_from(scripts).flatmap(lambda b: _mutated(b, program=False))
    # a fifth each: mutated programs, mutated kernels, programs generated from the grammar;
    # two fifths the known payload classes (one_of would flatten the payloads' own one_of
    # and weigh every class like a mutation)
    payloads = _payloads(programs, scripts, canary)
    branches = [mutated_program.map(lambda t: ("mutated program", t)),
                mutated_script.map(lambda t: ("mutated tvmscript", t)),
                _generated_program(programs).map(lambda t: ("generated program", t)),
                payloads, payloads]
    body = st.sampled_from(range(len(branches))).flatmap(lambda i: branches[i])
    return st.tuples(body, _wrappers()).map(lambda pair: Proposal(pair[0][0], pair[1](pair[0][1])))


def _wrappers():
    fenced = st.sampled_from(["python", "py", "", "python3"]).map(lambda lang: lambda t: f"```{lang}\n{t}\n```")
    prose = st.text(max_size=80).map(lambda words: lambda t: f"{words}\n```python\n{t}\n```\n{words}")
    unclosed = st.just(lambda t: f"Here it is:\n```python\n{t}")
    bare = st.just(lambda t: t)
    empty = st.sampled_from(["", "I cannot help with that.", "```\n```", "```python"]).map(lambda s: lambda t: s)
    return st.one_of(fenced, fenced, prose, unclosed, bare, empty)


# ---- grammar-aware mutations of a real text ------------------------------------------------

def _mutated(base: str, *, program: bool) -> st.SearchStrategy[str]:
    ops = [_replace_int, _replace_string, _delete_line, _duplicate_line, _swap_lines, _truncate, _insert_junk]
    ops += [_replace_primitive, _retype_argument] if program else [_replace_dtype, _scale_grid]
    return st.lists(st.sampled_from(ops), min_size=1, max_size=4).flatmap(
        lambda chosen: _apply(base, chosen))


def _apply(text: str, ops) -> st.SearchStrategy[str]:
    strategy = st.just(text)
    for op in ops:
        strategy = strategy.flatmap(op)
    return strategy


def _nth(pattern: str, text: str, replacement: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """``text`` with one match of ``pattern`` (drawn) replaced by a drawn string."""
    spans = [m.span() for m in re.finditer(pattern, text)]
    if not spans:
        return st.just(text)
    return st.tuples(st.sampled_from(spans), replacement).map(lambda p: text[: p[0][0]] + p[1] + text[p[0][1]:])


def _replace_int(text):
    return _nth(r"(?<![\w.])\d+(?![\w.])", text, st.sampled_from(EXTREMES).map(str))


def _replace_string(text):
    return _nth(r'"[^"\n]*"', text, st.one_of(st.sampled_from(SCOPES + ANN_KEYS), st.text(max_size=20)).map(repr))


def _replace_primitive(text):
    return _nth(r"(?<=sch\.)\w+", text, st.sampled_from(PRIMITIVES + UNKNOWN))


def _retype_argument(text):
    wrong = ["None", "[]", "{}", "'x'", "3.5", "-1", "(1, 2)", "sch", "[None] * 3", "True", "b'\\x00'", "..."]
    return _nth(r"(?<==)[^,()\n]+(?=[,)])", text, st.sampled_from(wrong))


def _replace_dtype(text):
    return _nth(r'"(float16|float32|int8|int32|bool)"', text,
                st.sampled_from(['"float64"', '"int4"', '"handle"', '"float8_e4m3fn"', '"uint64"', '"custom[x]16"']))


def _scale_grid(text):
    return _nth(r"T\.grid\([^)\n]*\)", text, st.sampled_from(EXTREMES).map(lambda n: f"T.grid({n}, 1)"))


def _delete_line(text):
    lines = text.splitlines()
    return st.integers(0, max(len(lines) - 1, 0)).map(lambda i: "\n".join(lines[:i] + lines[i + 1:]))


def _duplicate_line(text):
    lines = text.splitlines()
    return st.integers(0, max(len(lines) - 1, 0)).map(lambda i: "\n".join(lines[: i + 1] + lines[i:]))


def _swap_lines(text):
    lines = text.splitlines()
    n = max(len(lines) - 1, 0)

    def swap(ij):
        out = list(lines)
        if out:
            out[ij[0]], out[ij[1]] = out[ij[1]], out[ij[0]]
        return "\n".join(out)

    return st.tuples(st.integers(0, n), st.integers(0, n)).map(swap)


def _truncate(text):
    return st.integers(0, len(text)).map(lambda i: text[:i])


def _insert_junk(text):
    return st.tuples(st.integers(0, len(text)), st.sampled_from(JUNK)).map(lambda p: text[: p[0]] + p[1] + text[p[0]:])


# ---- schedule programs from the grammar -------------------------------------------------------

def _generated_program(programs: list[str]) -> st.SearchStrategy[str]:
    """Straight-line programs of schedule calls: any primitive, keyword or positional
    arguments built from earlier results, block names of the real programs, scopes,
    numbers, lists and nesting -- well-formed Python, arbitrary meaning."""
    names = sorted({m for p in programs for m in re.findall(r'name="(\w+)"', p)}) or ["root"]
    return st.integers(1, 12).flatmap(lambda n: st.tuples(*[_statement(i, names) for i in range(n)])).map("\n".join)


def _statement(i: int, names: list[str]) -> st.SearchStrategy[str]:
    earlier = [f"v{j}" for j in range(i)]
    leaf = st.one_of(st.sampled_from(EXTREMES + [None, 0.5, True]).map(repr),
                     st.sampled_from(names + SCOPES + ANN_KEYS).map(repr),
                     *([st.sampled_from(earlier), st.sampled_from(earlier).map(lambda v: f"{v}[-1]")]
                       if earlier else []))
    arg = st.recursive(leaf, lambda inner: st.one_of(
        st.lists(inner, max_size=4).map(lambda xs: "[" + ", ".join(xs) + "]"),
        st.tuples(st.sampled_from(PRIMITIVES[:2]), inner).map(lambda p: f"sch.{p[0]}({p[1]})")), max_leaves=6)
    keyword = st.sampled_from(["block", "loop", "factors", "storage_scope", "read_buffer_index", "name", "ann_key",
                               "ann_val", "write_buffer_index", "tensor_intrin", "preserve_unit_iters", "index"])
    args = st.lists(st.one_of(arg, st.tuples(keyword, arg).map(lambda kv: f"{kv[0]}={kv[1]}")), max_size=4)
    target = st.sampled_from([f"v{i}", f"v{i}, v{i}_b", f"*v{i},", "_"])
    return st.tuples(target, st.sampled_from(PRIMITIVES + UNKNOWN[:3]), args).map(
        lambda t: f"{t[0]} = sch.{t[1]}({', '.join(_ordered(t[2]))})")


def _ordered(args: list[str]) -> list[str]:
    """Positional before keyword arguments, so the text stays Python."""
    return [a for a in args if not re.match(r"\w+=", a)] + [a for a in args if re.match(r"\w+=", a)]


# ---- the known payload classes ---------------------------------------------------------------

def _payloads(programs: list[str], scripts: list[str], c: Canary) -> st.SearchStrategy[tuple[str, str]]:
    program, script = st.sampled_from(programs), st.sampled_from(scripts)
    deep = st.integers(50, 20000)
    return st.one_of(
        st.sampled_from(_syntax_errors()).map(lambda t: ("syntax error", t)),
        st.tuples(program, st.sampled_from(UNKNOWN)).map(
            lambda p: ("unknown primitive", p[0] + f"\nsch.{p[1]}(sch)\n")),
        st.tuples(program, st.sampled_from(PRIMITIVES), st.sampled_from(["'x'", "None", "[[]]", "3.5", "sch", "{}"]))
          .map(lambda p: ("wrong argument types", p[0] + f"\nsch.{p[1]}({p[2]}, {p[2]})\n")),
        st.tuples(program, st.sampled_from(_huge_lists())).map(lambda p: ("huge loop or list", p[0] + "\n" + p[1])),
        st.tuples(program, deep, st.sampled_from(["(", "[", "{1: ", "-", "not ", "f("])).map(
            lambda p: ("deep nesting", p[0] + "\nx = " + p[2] * p[1] + "1" + _closing(p[2]) * p[1])),
        script.flatmap(_huge_allocation).map(lambda t: ("huge allocation", t)),
        st.tuples(script, st.sampled_from([1 << 20, 1 << 30, 1 << 40])).map(
            lambda p: ("hanging kernel", _repeat_body(p[0], p[1]))),
        script.map(lambda t: ("aborting kernel", _wild_index(t))),
        st.tuples(script, st.sampled_from(_extern_calls(c))).map(lambda p: ("extern call", _into_body(p[0], p[1]))),
        st.one_of(
            st.tuples(program, st.sampled_from(ANN_KEYS), st.sampled_from(["0", "'x'", "1 << 40", "None"])).map(
                lambda p: p[0] + f'\nsch.annotate(block_or_loop=sch.get_sblock(name="root"), ann_key="{p[1]}", '
                                 f"ann_val={p[2]})\n"),
            st.tuples(script, st.sampled_from(_forged_attrs())).map(lambda p: _into_body(p[0], p[1])),
        ).map(lambda t: ("forged annotation", t)),
        st.one_of(
            st.tuples(program, st.sampled_from(_program_escapes(c))).map(lambda p: p[0] + "\n" + p[1]),
            st.tuples(script, st.sampled_from(_script_escapes(c))).map(lambda p: _escape_script(p[0], p[1])),
        ).map(lambda t: ("escape", t)),
    )


def _closing(opener: str) -> str:
    return {"(": ")", "[": "]", "{1: ": "}", "f(": ")"}.get(opener, "")


def _syntax_errors() -> list[str]:
    return ["sch.split(", "def f(:\n  pass", "v0 = sch.get_sblock(name='Y'\n", "  v0 = 1\n v1 = 2",
            "@T.prim_func\ndef main(:", "for i in range(3) print(i)", "x = 1 +", "'''", "v0 = = 1", "\x00",
            "import", "class Module:\n    @T.prim_func\n    def main(A: T.Buffer((4,), 'float32'):\n        pass"]


def _huge_lists() -> list[str]:
    return ["v = sch.split(loop=sch.get_loops(block=sch.get_sblock(name='Y'))[0], factors=[1] * 10 ** 8)",
            "v = [0] * (1 << 40)", "v = 'x' * (1 << 40)", "v = list(range(10 ** 10))",
            "v = [" + ", ".join(["1"] * 50000) + "]", "for i in range(10 ** 12):\n    v = i",
            "v = 10 ** 10 ** 10", "v = (1 << 100000) ** 1000", "while True:\n    pass",
            "v = sch.reorder(*([sch.get_loops(block=sch.get_sblock(name='Y'))[0]] * 100000))"]


def _extern_calls(c: Canary) -> list[str]:
    return ['T.evaluate(T.call_extern("int32", "abort"))',
            f'T.evaluate(T.call_extern("int32", "system", "touch {c.path("extern")}"))',
            'T.evaluate(T.call_packed("runtime.SaveParamsToFile", 0, "/tmp/x"))',
            'T.evaluate(T.call_llvm_intrin("int32", "llvm.trap", T.uint32(0)))',
            f'T.evaluate(T.call_packed("rpc.Connect", "127.0.0.1", {c.port}, ""))',
            'T.evaluate(T.call_extern("int32", "exit", 0))']


def _forged_attrs() -> list[str]:
    return ['T.func_attr({"global_symbol": "__libc_start_main"})',
            'T.func_attr({"tir.is_entry_func": T.call_extern("int32", "abort")})',
            'T.func_attr({"hawk.cycles": 1, "target": "llvm"})',
            'T.func_attr({"pragma_import_c": "int main(){return 0;}"})']


def _program_escapes(c: Canary) -> list[str]:
    touch = c.path("program")
    return [f"import os\nos.system('touch {touch}')",
            f"__import__('os').system('touch {touch}')",
            f"open('{touch}', 'w').write('x')",
            f"sch.__class__.__init__.__globals__['os'].system('touch {touch}')",
            "().__class__.__bases__[0].__subclasses__()",
            f"getattr(__builtins__, 'open')('{touch}', 'w')",
            f"import socket\nsocket.create_connection(('127.0.0.1', {c.port}))",
            f"(lambda: __import__('socket').socket(__import__('socket').AF_UNIX).connect('{c.unix}'))()",
            "sch.mod.__class__.__module__",
            f"exec(\"open('{touch}', 'w')\")",
            f"eval(\"__import__('os').system('touch {touch}')\")"]


def _script_escapes(c: Canary) -> list[str]:
    touch = c.path("script")
    return [f"import os\nos.system('touch {touch}')",
            f"__import__('os').system('touch {touch}')",
            f"open('{touch}', 'w').write('x')",
            f"import socket\nsocket.create_connection(('127.0.0.1', {c.port}), timeout=1)",
            f"__import__('socket').socket(__import__('socket').AF_UNIX).connect('{c.unix}')",
            f"import tvm\ntvm.get_global_func('runtime.SaveParamsToFile')({{}}, '{touch}')",
            f"import tvm\ntvm.rpc.connect('127.0.0.1', {c.port})",
            f"import subprocess\nsubprocess.run(['touch', '{touch}'])",
            f"import pathlib\npathlib.Path('{touch}').write_text('x')",
            "import ctypes\nctypes.CDLL(None).abort()"]


def _escape_script(script: str, payload: str) -> str:
    """The payload at module level, inside the class and in a parameter annotation: TVMScript
    parsing evaluates all three."""
    first = payload.splitlines()[0]
    if len(payload.splitlines()) > 1:
        return payload + "\n" + script
    return re.sub(r"(def main\(\w+: )T\.Buffer\(", lambda m: m.group(1) + f"({first}, T.Buffer)[1](", script,
                  count=1) + "\n" + payload


# ---- TVMScript surgery (text level, so whatever comes out is parsed only in the sandbox) --------

def _body_lines(script: str) -> tuple[list[str], int, str]:
    """The lines, the index of the function body's first statement and its indentation."""
    lines = script.splitlines()
    for i, line in enumerate(lines):
        if line.lstrip().startswith("def main("):
            for j in range(i + 1, len(lines)):
                if lines[j].strip():
                    return lines, j, lines[j][: len(lines[j]) - len(lines[j].lstrip())]
    return lines, len(lines), "        "


def _into_body(script: str, statement: str) -> str:
    lines, at, indent = _body_lines(script)
    return "\n".join(lines[:at] + [indent + statement] + lines[at:])


def _repeat_body(script: str, times: int) -> str:
    """Every loop nest of the body run ``times`` times: same result, endless work."""
    lines, at, indent = _body_lines(script)
    first = next((i for i in range(at, len(lines)) if lines[i].startswith(indent + "for ")), None)
    if first is None:
        return script
    return "\n".join(lines[:first] + [f"{indent}for _rep in range({times}):"]
                     + ["    " + ln if ln.strip() else ln for ln in lines[first:]])


def _wild_index(script: str) -> str:
    """The first load on the right of a store gets an index that is data: nothing proves it
    in bounds, and it is not (a wild read, as an aborting kernel's)."""
    lines = script.splitlines()
    for i, line in enumerate(lines):
        store = re.match(r"(\s*\w+\[[^\]]*\] = )(.*)$", line)
        if store is None:
            continue
        load = re.search(r"(\w+)\[(v\w*), ", store.group(2))
        if load is None:
            continue
        name, first = load.group(1), load.group(2)
        wild = f'{name}[T.Cast("int32", {name}[{first}, 0] * T.float32(1.0e9)), '
        lines[i] = store.group(1) + store.group(2).replace(load.group(0), wild, 1)
        return "\n".join(lines)
    return script


def _huge_allocation(script: str) -> st.SearchStrategy[str]:
    return _nth(r"alloc_buffer\(\([^)]*\)", script, st.sampled_from(
        ["alloc_buffer((1 << 20, 1 << 20)", "alloc_buffer((1 << 31,)", "alloc_buffer((65536, 65536)",
         "alloc_buffer((-1, 16)", "alloc_buffer((0,)"]))
