"""Schedule programs are bounded before TVM sees them, and every failure is a positioned
AdmissionError: TVM trusts its caller (a split with 8,000 factors crashed the tuner,
sample_perfect_tile(n=20000000) allocated 8 GB), and ast reports deep nesting without a
position (RecursionError, MemoryError) or not at all (a lone surrogate is a UnicodeError)."""

from __future__ import annotations

import pytest

from hawk.ir import ops
from hawk.propose.admission import AdmissionError, parse_source
from hawk.propose.program import apply_program

HEAD = 'b0 = sch.get_sblock(name="Y")\nl1, l2 = sch.get_loops(block=b0)\n'


@pytest.fixture(scope="module")
def relu():
    return ops.unary("relu", "relu", 64, 256).module()


@pytest.mark.parametrize("line, col, words", [
    (f"l3 = sch.split(loop=l2, factors=[{', '.join(['1'] * 8000)}])", 33, "8000 items; the limit is 64"),
    ("l3, l4 = sch.split(loop=l2, factors=[2**62, 4])", 38, "not BinOp"),
    ("l3, l4 = sch.split(loop=l2, factors=[4611686018427387904, 4])", 38, "at most 2147483647"),
    ("l3, l4 = sch.split(loop=l2, factors=[-4611686018427387904, 4])", 38, "at most 2147483647"),
    ("v = sch.sample_perfect_tile(loop=l2, n=20000000)", 5, "n must be an integer from 1 to 16"),
    ("v = sch.sample_perfect_tile(l2, 20000000)", 5, "n must be an integer from 1 to 16"),
    ("v = sch.sample_perfect_tile(loop=l2, n=2, decision=[99999999999, 1])", 53, "at most 2147483647"),
    ("v = sch.sample_perfect_tile(loop=l2, n=2, decision=[1] * 99)", 52, "not BinOp"),
    ("v = sch.sample_categorical(candidates=[1, 2], probs=[1e999, 0.5])", 54, "at most 2147483647"),
    ('b1 = sch.get_sblock(name="' + "Y" * 300 + '")', 26, "at most 256 characters"),
    ('b1 = sch.get_sblock(name="Y\\x00")', 26, "printable"),
    ('b1 = sch.get_sblock(name="\\ud800")', 26, "printable"),
    ("sch.reorder([[[[l1]]]])", 16, "nest 3 deep at most"),
    (", ".join(f"a{i}" for i in range(100)) + " = sch.get_loops(block=b0)", 1, "100 items"),
    ("sch.transform_layout(block=b0, buffer=('write', 0), index_map=lambda i, j: (i, "
     + " + ".join(["j"] * 200) + "))", 63, "at most 64 parameters and 128 terms"),
    ("l3 = sch.split(loop=l2, factors=l1[~0])", 33, "index with an integer literal"),
    ("l3 = sch.split(loop=l2, factors=-'x')", 33, "argument must be"),
    ("sch.vectorize(loop=l2, extra=1)", 1, "unexpected keyword argument 'extra'"),
    ("sch.fuse(" + "1+" * 19000 + "1)", 1, "nested too deeply to parse (RecursionError)"),
    ("sch.fuse(" + "-" * 39000 + "1)", 1, "nested too deeply to parse"),
])
def test_bounds_are_refused_with_a_position(relu, line, col, words):
    text = HEAD + line + "\n"
    applied = apply_program(text, relu)
    err = applied.error
    assert not applied.ok and words in err.message, err.render()
    assert (err.line, err.col) == (3, col), err.render()
    assert err.render().rstrip().endswith("^") and len(err.render()) < 500  # long lines are quoted in part


def test_a_lone_surrogate_in_the_text_is_positioned(relu):
    err = apply_program(HEAD + 'b1 = sch.get_sblock(name="\ud800")\n', relu).error
    assert "not valid Unicode" in err.message and (err.line, err.col) == (3, 27)
    err.render().encode()  # printable: a lone surrogate would fail to encode


def test_lines_are_numbered_as_the_tokenizer_numbers_them(relu):
    # \x85, \u2028, \f and \v end a line for str.splitlines, not for Python
    text = '# note\x85\u2028\f\v more\nb0 = sch.get_sblock(name="Nope")\n'
    err = apply_program(text, relu).error
    assert err.line == 2 and err.source_line == 'b0 = sch.get_sblock(name="Nope")'
    assert AdmissionError.at("a\u2028b\nc", "m", 2, 1).source_line == "c"
    assert AdmissionError.at("a\rb\r\nc", "m", 3, 1).source_line == "c"


def test_columns_count_characters_not_utf8_bytes(relu):
    err = apply_program('b0 = sch.get_sblock(name="Yé", func_name=n9)\n', relu).error
    assert "'n9' is not bound" in err.message and err.col == 42
    assert err.render().splitlines()[-1] == "    " + " " * 41 + "^"


def test_control_characters_in_a_quoted_line_do_not_reach_the_terminal(relu):
    err = apply_program('b0 = sch.get_sblock(name="Nope")  # \x1b[2J\tend\n', relu).error
    assert "\x1b" not in err.render() and "\t" not in err.render()
    assert err.source_line.endswith("# \ufffd[2J end")


@pytest.mark.parametrize("text", ["x = (" * 150 + "1" + ")" * 150, "x = " + "[" * 250 + "]" * 250,
                                  "x = 1\x00", "x = '\udcff'", "x = " + "not " * 30000 + "1"])
def test_parse_source_never_raises(text):
    tree, err = parse_source(text)
    assert (tree is None) == (err is not None)
    if err is not None:
        assert err.line >= 1 and err.col >= 1
