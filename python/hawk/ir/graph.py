"""The syntactic axis of retrieval: normalised tokens of a program and its IR, and
Weisfeiler-Lehman fingerprints of the kernel's loop/dataflow graph (networkx).

Names a proposer picks (``v3``, ``b0``) and sizes are normalised away, so two programs that
do the same thing to differently shaped operators share their tokens: a primitive with its
keyword arguments, the scopes and intrinsics it names, the kinds of its numbers (one, a
power of two, other). The graph has a node per loop (kind, extent class), per instruction
(copy/compute/intrinsic, vectorised, dtype, math) and per buffer (scope), with nesting and
read/write edges; its WL subgraph hashes are tokens too, and its WL hash identifies the
loop structure as a whole.
"""

from __future__ import annotations

import ast
import warnings

import networkx as nx

WL_ITERATIONS = 3


def number_class(value) -> str:
    if isinstance(value, bool) or not isinstance(value, int):
        return "x"
    if value in (0, 1):
        return str(value)
    return "pow2" if value > 0 and value & (value - 1) == 0 else "n"


def program_tokens(text: str) -> list[str]:
    """Tokens of a schedule program: ``prim``, ``prim.kw=value`` with values normalised.

    Text that does not parse gives no tokens (it is hostile input; nothing is evaluated)."""
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return []
    out = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        prim = node.func.attr
        out.append(prim)
        for kw in node.keywords:
            out.extend(f"{prim}.{kw.arg}={v}" for v in _values(kw.value))
        for arg in node.args:
            out.extend(f"{prim}={v}" for v in _values(arg))
    return out


def _values(node) -> list[str]:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, str):
            return [node.value]
        return [number_class(node.value)]
    if isinstance(node, (ast.List, ast.Tuple)):
        return [v for elt in node.elts for v in _values(elt)]
    if isinstance(node, ast.Lambda):
        return ["lambda"]
    return []  # names bound by the program: the proposer's choice, not the program's meaning


def kernel_graph(program) -> nx.DiGraph:
    """The loop/dataflow graph of an NPU program (``hawk.runtime.program.Program``)."""
    from ..runtime.program import Instr, Loop, Region

    g = nx.DiGraph()
    counter = [0]

    def node(label: str) -> int:
        counter[0] += 1
        g.add_node(counter[0], label=label)
        return counter[0]

    buffers: dict = {}

    def buffer(acc) -> int:
        key = acc.buffer
        for known, n in buffers.items():
            if known.same_as(key):
                return n
        n = node(f"buf:{acc.scope}")
        buffers[key] = n
        return n

    def visit(nodes, parent):
        for item in nodes:
            if isinstance(item, Loop):
                n = node(f"loop:{item.kind.name if hasattr(item.kind, 'name') else int(item.kind)}:"
                         f"{number_class(item.extent)}")
                if parent is not None:
                    g.add_edge(parent, n)
                visit(item.body, n)
            elif isinstance(item, Region):
                visit(item.body, parent)
            elif isinstance(item, Instr):
                what = item.intrinsic.rsplit(".", 1)[-1] if item.intrinsic else item.kind
                dtypes = ",".join(sorted(item.dtypes))
                label = f"instr:{what}:{'vec' if item.vectorized else 'seq'}:{dtypes}:{'mac' if item.mac else ''}" \
                        f":{','.join(sorted(c.rsplit('.', 1)[-1] for c in item.calls))}"
                n = node(label)
                if parent is not None:
                    g.add_edge(parent, n)
                for acc in item.reads:
                    g.add_edge(buffer(acc), n)
                for acc in item.writes:
                    g.add_edge(n, buffer(acc))

    visit(program.body, None)
    return g


def wl_hash(graph: nx.DiGraph) -> str:
    with warnings.catch_warnings():  # networkx notes that directed hashes changed in 3.5; ours are all 3.5+
        warnings.simplefilter("ignore", UserWarning)
        return nx.weisfeiler_lehman_graph_hash(graph, node_attr="label", iterations=WL_ITERATIONS)


def wl_tokens(graph: nx.DiGraph) -> list[str]:
    """WL subgraph hashes of every node at every depth: the graph's structural vocabulary."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        hashes = nx.weisfeiler_lehman_subgraph_hashes(graph, node_attr="label", iterations=WL_ITERATIONS,
                                                      digest_size=8)
    return sorted(f"wl{depth}:{h}" for per_node in hashes.values() for depth, h in enumerate(per_node))


def kernel_fingerprint(kernel) -> tuple[list[str], str]:
    """(WL tokens, WL hash) of a kernel; ([], '') when it cannot be read."""
    from ..runtime.program import ProgramError, read_program

    try:
        graph = kernel_graph(read_program(kernel))
    except ProgramError:
        return [], ""
    return wl_tokens(graph), wl_hash(graph)
