"""Bounded loading of TVM JSON: hostile graphs are a ValueError, never a crash or a blow-up."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import tvm
import tvm_ffi

from hawk.ir import ops
from hawk.ir.safe_json import ir_key, load_ir_json


@pytest.fixture(scope="module")
def saved() -> str:
    return tvm.ir.save_json(ops.unary("relu", "relu", 64, 256).module())


def with_attr(saved: str, build) -> str:
    """The module with one more PrimFunc attribute, whose value ``build(nodes)`` appends."""
    graph = json.loads(saved)
    nodes = graph["nodes"]
    func = next(n for n in nodes if n["type"] == "tirx.PrimFunc")
    attrs = nodes[nodes[func["data"]["attrs"]]["data"]["__dict__"]]
    nodes.append({"type": "ffi.String", "data": "hawk.payload"})
    key = len(nodes) - 1
    attrs["data"] += [key, build(nodes)]
    return json.dumps(graph)


def int_imm(nodes: list) -> int:
    nodes.append({"type": "ir.PrimType", "data": {"span": 0, "dtype": "int32"}})
    nodes.append({"type": "int", "data": 1})
    nodes.append({"type": "ir.IntImm", "data": {"span": 0, "ty": len(nodes) - 2, "value": len(nodes) - 1}})
    return len(nodes) - 1


def nested_sum(depth: int):
    def build(nodes):
        ty, e = int_imm(nodes) - 2, int_imm(nodes)
        for _ in range(depth):
            nodes.append({"type": "prim.Add", "data": {"span": 0, "ty": ty, "a": e, "b": int_imm(nodes)}})
            e = len(nodes) - 1
        return e

    return build


def doubling(levels: int):
    def build(nodes):
        e = int_imm(nodes)
        ty = e - 2
        for _ in range(levels):
            nodes.append({"type": "prim.Add", "data": {"span": 0, "ty": ty, "a": e, "b": e}})
            e = len(nodes) - 1
        return e

    return build


def test_real_modules_round_trip(saved):
    module = load_ir_json(saved)
    assert isinstance(module, tvm.IRModule)
    assert tvm_ffi.structural_equal(module, tvm.ir.load_json(saved))
    assert ir_key(module) == ir_key(tvm.ir.load_json(saved))
    shallow = load_ir_json(with_attr(saved, nested_sum(100)))  # deep enough for any kernel
    assert "hawk.payload" in shallow["main"].attrs


def test_deep_nesting_is_refused_before_the_decoder_crashes(saved):
    text = with_attr(saved, nested_sum(2000))
    with pytest.raises(ValueError, match="nested 257 deep; the limit is 256"):
        load_ir_json(text)
    # the same text through the raw decoder kills the process
    crash = subprocess.run(
        [sys.executable, "-c", "import sys, tvm; tvm.ir.load_json(sys.stdin.read())"],
        input=text, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert crash.returncode < 0


def test_shared_subterms_are_refused_in_linear_time(saved):
    text = with_attr(saved, doubling(64))
    start = time.monotonic()
    with pytest.raises(ValueError, match="unfolds to more than"):
        load_ir_json(text)
    assert time.monotonic() - start < 2
    load_ir_json(with_attr(saved, doubling(10)))  # small sharing is fine


def test_ir_key_is_linear_on_shared_subterms(saved):
    dag = tvm.ir.load_json(with_attr(saved, doubling(64)))  # the decoder itself memoises
    start = time.monotonic()
    assert ir_key(dag) == ir_key(tvm.ir.load_json(with_attr(saved, doubling(64))))
    assert ir_key(dag) != ir_key(tvm.ir.load_json(with_attr(saved, doubling(63))))
    assert time.monotonic() - start < 2


def patched(saved: str, edit) -> str:
    graph = json.loads(saved)
    edit(graph, graph["nodes"])
    return json.dumps(graph)


def add_node(node):
    def edit(graph, nodes):
        nodes.append(node)
        graph["root_index"] = len(nodes) - 1

    return edit


@pytest.mark.parametrize("edit, words", [
    (add_node({"type": "prim.Add", "data": {"span": 0, "ty": 0, "a": 10**6, "b": 0}}), "node index below"),
    (add_node({"type": "prim.Add", "data": {"span": 0, "ty": 0, "a": -1, "b": 0}}), "node index below"),
    (add_node({"type": "prim.Add", "data": {"span": 0, "ty": 0, "a": True, "b": 0}}), "node index below"),
    (add_node({"type": "ffi.Array", "data": [0, 1, 99999]}), "list of node indices"),
    (add_node({"type": "ffi.Map", "data": [0]}), "key, value pairs"),
    (add_node({"type": "ffi.Array", "data": [[[0]]]}), "list of node indices"),
    (add_node({"type": "ir.Span", "data": {"source_name": 0, "line": [1], "column": 0, "end_line": 0,
                                           "end_column": 0}}), "ir.Span.line must be a value"),
    (add_node({"type": "int", "data": 2**70}), "not a int value"),
    (add_node({"type": "Device", "data": [1]}), "not a Device value"),
    (add_node({"type": "None", "data": [[[[]]]]}), "not a None value"),
    (add_node({"type": "ffi.Module", "data": "AAAA"}), "'ffi.Module' is not IR"),
    (add_node({"type": "ffi.Function", "data": {}}), "'ffi.Function' is not IR"),
    (add_node({"type": "ir.EnvFunc", "data": "runtime.SaveParamsToFile"}), "'ir.EnvFunc' is not IR"),
    (add_node({"type": "ffi.Tensor", "data": "AAAA"}), "'ffi.Tensor' is not IR"),
    (add_node({"type": "target.Target", "data": {}}), "'target.Target' is not IR"),
    (add_node({"type": "no.such.Type", "data": {}}), "unknown node type"),
    (add_node({"type": "ir.Op", "data": {"name": 0}}), "must be a name"),
    (add_node({"type": "ir.Op", "data": "\ud800"}), "cannot decode the IR: .*surrogate"),
    (add_node("just a string"), "malformed"),
    (add_node({"data": 1}), "not a {type, data} object"),
    (lambda g, nodes: g.update(root_index=len(nodes)), "bad nodes or root_index"),
    (lambda g, nodes: g.update(extra=1), "not a TVM node graph"),
    (lambda g, nodes: g.update(metadata={"x": [[1]]}), "metadata must be a flat object"),
    (lambda g, nodes: nodes[g["root_index"]]["data"].pop("functions"), "cannot decode the IR: .*functions"),
])
def test_malformed_graphs_are_value_errors(saved, edit, words):
    with pytest.raises(ValueError, match=words):
        load_ir_json(patched(saved, edit))


def test_cycles_are_refused(saved):
    def cycle(graph, nodes):
        nodes.append({"type": "prim.Add", "data": {"span": 0, "ty": 0, "a": len(nodes) + 1, "b": 0}})
        nodes.append({"type": "prim.Add", "data": {"span": 0, "ty": 0, "a": len(nodes) - 1, "b": 0}})
        graph["root_index"] = len(nodes) - 1

    with pytest.raises(ValueError, match="reference cycle"):
        load_ir_json(patched(saved, cycle))


@pytest.mark.parametrize("text, words", [
    ("{not json", "malformed"),
    ("[" * 100_000 + "]" * 100_000, "malformed"),
    ('{"root_index": 0, "nodes": [], "metadata": {}}', "bad nodes"),
    ("[1, 2]", "malformed|not a TVM node graph"),
    (b"{}", "must be text"),
])
def test_garbage_is_a_value_error(text, words):
    with pytest.raises(ValueError, match=words):
        load_ir_json(text)


def test_size_limits(saved):
    with pytest.raises(ValueError, match="characters; the limit is 100"):
        load_ir_json(saved, max_chars=100)
    with pytest.raises(ValueError, match="nodes; the limit is 10"):
        load_ir_json(saved, max_nodes=10)
    with pytest.raises(ValueError, match="deep; the limit is 5"):
        load_ir_json(saved, max_depth=5)
