"""TVM IR as JSON from outside this process: bounded before TVM reads it, and content keys.

``tvm.ir.load_json`` decodes the node graph recursively, without a depth limit and without
checking node references: a few thousand nested additions overflow the C++ stack, a
reference cycle recurses forever, an out-of-range index reads past a vector, and some node
types decode through registered hooks (``ffi.Module``, ``ir.EnvFunc``, ...) that reach far
more than IR. :func:`load_ir_json` checks the graph first -- iteratively, so hostile input
cannot exhaust this process either -- and raises :class:`ValueError` with the reason:

* text length, node count, and node kinds (IR objects, containers and scalars only);
* every reference in range, with fields typed from TVM's own reflection registry (an
  ``int`` field is a number, an object field is a node index);
* no cycle, the longest reference chain (the decoder's recursion) within ``max_depth``,
  and the size of the graph unfolded as a tree within ``max_tree``: a DAG of shared
  subterms is small as JSON but exponential to every visitor that does not memoise
  (printing, equality, lowering).

:func:`ir_key` names a module by content in time linear in its nodes, for caches.
"""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import tvm

MAX_CHARS = 16_000_000
MAX_NODES = 200_000  # a printed reference kernel has ~1,400
MAX_DEPTH = 256  # reference kernels: ~40; 2,000 crashed the decoder
MAX_TREE = 4_000_000  # reference kernels unfold to ~6x their node count

# Type indices of tvm-ffi's built-in kinds, as its decoder switches on them.
_NONE, _INT, _BOOL, _FLOAT, _DTYPE, _DEVICE = 0, 1, 2, 3, 5, 6
_STR, _BYTES, _SHAPE, _ARRAY, _MAP, _LIST = 65, 66, 69, 71, 72, 75
_FIRST_OBJECT = 64
# Object fields of these static types hold a JSON value; every other field a node index.
_POD_FIELDS = frozenset({_NONE, _INT, _BOOL, _FLOAT, _DTYPE})
# Objects an IRModule of kernels is built from; the rest of the registry (modules, packed
# functions, tensors, targets, runtime state) has no business in a candidate kernel.
_IR_NAMESPACES = ("ir.", "tirx.", "s_tir.", "prim.", "relax.")
_REFUSED_TYPES = frozenset({"ir.EnvFunc"})  # decodes to a global function by name
# IR types decoded by a registered hook from a name, and nothing else.
_NAMED_TYPES = frozenset({"ir.Op", "ir.SourceName", "tirx.Axis"})
_SCALARS = (str, int, float, bool, type(None))
_INT64 = 1 << 63


def load_ir_json(
    text: str,
    *,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
    max_tree: int = MAX_TREE,
    max_chars: int = MAX_CHARS,
) -> tvm.runtime.Object:
    """``tvm.ir.load_json(text)`` once the graph is proven bounded; ValueError otherwise."""
    from tvm.ir import json_compact
    from tvm_ffi.serialization import from_json_graph_str

    if not isinstance(text, str):
        raise ValueError(f"IR JSON must be text, not {type(text).__name__}")
    if len(text) > max_chars:
        raise ValueError(f"IR JSON is {len(text)} characters; the limit is {max_chars}")
    try:
        # what tvm.ir.load_json does first; checked here is exactly what gets decoded
        upgraded = json_compact.upgrade_json(text)
        graph = json.loads(upgraded)
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:
        raise ValueError(f"IR JSON is malformed: {type(e).__name__}: {str(e)[:200]}") from None
    edges, root = _edges(graph, max_nodes)
    _check_shape(edges, root, max_depth=max_depth, max_tree=max_tree)
    try:
        return from_json_graph_str(upgraded)
    except Exception as e:  # noqa: BLE001 - TVM raises builtin kinds for bad fields
        raise ValueError(f"TVM cannot decode the IR: {type(e).__name__}: {str(e)[:200]}") from None


def ir_key(module: tvm.IRModule) -> str:
    """A content key for caches: sha256 of the serialized graph.

    Linear in the nodes, shared subterms included (``module.script()`` is exponential on
    them), and exact: a 64-bit structural hash is no key for a cache whose hit declares a
    kernel correct, since a crafted kernel can collide with one that passed.
    """
    import tvm

    return hashlib.sha256(tvm.ir.save_json(module).encode()).hexdigest()


def _edges(graph: object, max_nodes: int) -> tuple[list[list[int]], int]:
    """Each node's references, after checking the node kinds and every field's JSON type."""
    if not isinstance(graph, dict) or set(graph) - {"root_index", "nodes", "metadata"}:
        raise ValueError("IR JSON is not a TVM node graph (root_index, nodes, metadata)")
    nodes, root = graph.get("nodes"), graph.get("root_index")
    metadata = graph.get("metadata", {})
    if not isinstance(nodes, list) or not nodes or not _is_index(root, len(nodes)):
        raise ValueError("IR JSON is not a TVM node graph: bad nodes or root_index")
    if not isinstance(metadata, dict) or not all(isinstance(v, _SCALARS) for v in metadata.values()):
        raise ValueError("IR JSON metadata must be a flat object")
    if len(nodes) > max_nodes:
        raise ValueError(f"IR graph has {len(nodes)} nodes; the limit is {max_nodes}")
    edges = []
    for i, node in enumerate(nodes):
        try:
            edges.append(_node_edges(node, len(nodes)))
        except ValueError as e:
            raise ValueError(f"IR JSON node {i}: {e}") from None
    return edges, root


def _node_edges(node: object, n: int) -> list[int]:
    if not isinstance(node, dict) or not isinstance(node.get("type"), str):
        raise ValueError("not a {type, data} object")
    key, data = node["type"], node.get("data")
    kind = _kind(key)
    if kind in _VALUES:
        if not _VALUES[kind](data):
            raise ValueError(f"{key} data is not a {key} value")
        return []
    if kind == "sequence":
        if not isinstance(data, list) or not all(_is_index(r, n) for r in data):
            raise ValueError(f"{key} data must be a list of node indices below {n}")
        if key == "ffi.Map" and len(data) % 2:
            raise ValueError("ffi.Map data must be key, value pairs")
        return data
    if kind == "named":
        if not isinstance(data, str):
            raise ValueError(f"{key} data must be a name")
        return []
    if not isinstance(data, dict):
        raise ValueError(f"{key} data must be an object of fields")
    refs = []
    fields = _fields(key)
    for name, value in data.items():
        if fields.get(name, _NONE) in _POD_FIELDS:  # unknown names are ignored by the decoder
            if not isinstance(value, _SCALARS) or (type(value) is int and not _is_int(value)):
                raise ValueError(f"{key}.{name} must be a value")
        elif _is_index(value, n):
            refs.append(value)
        else:
            raise ValueError(f"{key}.{name} must be a node index below {n}")
    return refs


@cache
def _kind(key: str) -> int | str:
    """How the decoder reads a node of this type: a value index, sequence, named or object."""
    from tvm_ffi import core

    index = core._object_type_key_to_index(key)
    if index is None:
        raise ValueError(f"unknown node type {key!r}")
    if index in _VALUES:
        return index
    if index in (_ARRAY, _MAP, _LIST):
        return "sequence"
    if key in _NAMED_TYPES:
        return "named"
    if (index < _FIRST_OBJECT or key in _REFUSED_TYPES or not key.startswith(_IR_NAMESPACES)
            or core._lookup_type_attr(index, "__data_from_json__") is not None):  # fmt: skip
        raise ValueError(f"node type {key!r} is not IR")
    return "object"


@cache
def _fields(key: str) -> dict[str, int]:
    """Field name -> static type index, the type's own fields and its ancestors'."""
    from tvm_ffi import core

    fields: dict[str, int] = {}
    info = core._type_index_to_type_info(core._object_type_key_to_index(key))
    while info is not None:
        for f in info.fields:
            fields.setdefault(f.name, f.field_static_type_index)
        info = info.parent_type_info
    return fields


def _check_shape(edges: list[list[int]], root: int, *, max_depth: int, max_tree: int) -> None:
    """No cycle; longest chain from the root and the unfolded size within bounds (iterative)."""
    n = len(edges)
    depth, tree = [0] * n, [0] * n
    state = bytearray(n)  # 0 unseen, 1 on the path, 2 done
    nxt = [0] * n
    stack = [root]
    state[root] = 1
    while stack:
        v = stack[-1]
        if nxt[v] < len(edges[v]):
            c = edges[v][nxt[v]]
            nxt[v] += 1
            if state[c] == 1:
                raise ValueError(f"IR graph has a reference cycle through node {c}")
            if state[c] == 0:
                state[c] = 1
                stack.append(c)
            continue
        stack.pop()
        state[v] = 2
        depth[v] = 1 + max((depth[c] for c in edges[v]), default=0)
        tree[v] = min(max_tree + 1, 1 + sum(tree[c] for c in edges[v]))
        if depth[v] > max_depth:
            raise ValueError(f"IR is nested {depth[v]} deep; the limit is {max_depth}")
        if tree[v] > max_tree:
            raise ValueError(
                f"IR unfolds to more than {max_tree} nodes (shared subterms); the limit is {max_tree}"
            )


def _is_int(value: object) -> bool:
    return type(value) is int and -_INT64 <= value < _INT64


# What the decoder casts each value node's data to.
_VALUES = {
    _NONE: lambda d: isinstance(d, _SCALARS),  # ignored, but the C++ parser reads it first
    _INT: _is_int,
    _BOOL: lambda d: type(d) is bool,
    _FLOAT: lambda d: type(d) in (int, float),
    _DTYPE: lambda d: isinstance(d, str),
    _DEVICE: lambda d: isinstance(d, list) and len(d) == 2 and all(_is_int(v) for v in d),
    _STR: lambda d: isinstance(d, str),
    _BYTES: lambda d: isinstance(d, str),
    _SHAPE: lambda d: isinstance(d, list) and all(_is_int(v) for v in d),
}


def _is_index(value: object, n: int) -> bool:
    return type(value) is int and 0 <= value < n

