"""Standard operators as workloads: TE definitions with independent numpy references.

Suites build their workloads from these; ``op`` keys the reference library, so a
workload made here with a given op has the block structure its reference schedule
expects (documented per function).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx, topi

from .workload import Workload, from_te

def matmul(name, m, n, k, *, dtype="float16", out_dtype="float16", model="", category="matmul") -> Workload:
    """C[m, n] = A[m, k] @ B[k, n], accumulated in float32 (block ``C``); when
    ``out_dtype`` differs from the accumulator a cast block ``D`` follows."""
    acc = "int32" if dtype == "int8" else "float32"
    A = te.placeholder((m, k), dtype, name="A")
    B = te.placeholder((k, n), dtype, name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((m, n), lambda i, j: te.sum(A[i, r].astype(acc) * B[r, j].astype(acc), axis=r), name="C")
    tensors = [A, B, C]
    if out_dtype != acc:
        tensors.append(te.compute((m, n), lambda i, j: C[i, j].astype(out_dtype), name="D"))
        tensors.remove(C)

    def ref(a, b):
        return (a.astype(np.float64) @ b.astype(np.float64)).astype(out_dtype)

    return from_te(name, category, tensors, op="matmul", model=model, reference=ref)


def batch_matmul(name, batch, m, n, k, *, dtype="float16", out_dtype="float16", model="") -> Workload:
    """C[b, m, n] = A[b, m, k] @ B[b, k, n] (block ``C``, cast block ``D``)."""
    A = te.placeholder((batch, m, k), dtype, name="A")
    B = te.placeholder((batch, k, n), dtype, name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((batch, m, n),
                   lambda b, i, j: te.sum(A[b, i, r].astype("float32") * B[b, r, j].astype("float32"), axis=r),
                   name="C")
    D = te.compute((batch, m, n), lambda b, i, j: C[b, i, j].astype(out_dtype), name="D")

    def ref(a, b):
        return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(out_dtype)

    return from_te(name, "matmul", [A, B, D], op="batch_matmul", model=model, reference=ref)


def conv2d_nhwc(name, n, h, w, c, kh, kw, co, *, dtype="float16", out_dtype="float16", model="") -> Workload:
    """Stride-1, unpadded NHWC conv with HWIO weights: block ``C`` (float32), cast ``D``."""
    oh, ow = h - kh + 1, w - kw + 1
    X = te.placeholder((n, h, w, c), dtype, name="X")
    W = te.placeholder((kh, kw, c, co), dtype, name="W")
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    rc = te.reduce_axis((0, c), name="rc")
    C = te.compute(
        (n, oh, ow, co),
        lambda b, y, x, o: te.sum(
            X[b, y + rh, x + rw, rc].astype("float32") * W[rh, rw, rc, o].astype("float32"), axis=[rh, rw, rc]),
        name="C")
    D = te.compute((n, oh, ow, co), lambda b, y, x, o: C[b, y, x, o].astype(out_dtype), name="D")

    def ref(x, wt):
        x64, w64 = x.astype(np.float64), wt.astype(np.float64)
        out = np.zeros((n, oh, ow, co))
        for dy in range(kh):
            for dx in range(kw):
                out += np.einsum("nhwc,co->nhwo", x64[:, dy:dy + oh, dx:dx + ow, :], w64[dy, dx])
        return out.astype(out_dtype)

    return from_te(name, "conv", [X, W, D], op="conv2d", model=model, reference=ref)


_UNARY = {
    "relu": (lambda x: te.max(x, tirx.const(0, x.dtype)), lambda x: np.maximum(x, 0)),
    "silu": (lambda x: x * tirx.sigmoid(x), lambda x: x / (1 + np.exp(-x))),
    "gelu": (
        lambda x: x * tirx.const(0.5, x.dtype) * (tirx.const(1, x.dtype) + tirx.tanh(
            tirx.const(0.7978845608, x.dtype) * (x + tirx.const(0.044715, x.dtype) * x * x * x))),
        lambda x: 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3))),
    ),
    "exp": (tirx.exp, np.exp),
}


def unary(name, fn, rows, cols, *, dtype="float32", model="") -> Workload:
    """Y = fn(X) elementwise over a 2-D tensor (one block ``Y``)."""
    tfn, nfn = _UNARY[fn]
    X = te.placeholder((rows, cols), dtype, name="X")
    Y = te.compute((rows, cols), lambda i, j: tfn(X[i, j]), name="Y")
    return from_te(name, "elementwise", [X, Y], op="unary", model=model, fn=fn,
                   reference=lambda x: nfn(x.astype(np.float64)).astype(dtype))


def binary(name, fn, rows, cols, *, dtype="float32", model="") -> Workload:
    """Z = X (+|*) Y elementwise (one block ``Z``)."""
    ops = {"add": (lambda a, b: a + b), "mul": (lambda a, b: a * b)}
    X = te.placeholder((rows, cols), dtype, name="X")
    Y = te.placeholder((rows, cols), dtype, name="Y")
    Z = te.compute((rows, cols), lambda i, j: ops[fn](X[i, j], Y[i, j]), name="Z")
    return from_te(name, "elementwise", [X, Y, Z], op="binary", model=model, fn=fn,
                   reference=lambda x, y: ops[fn](x.astype(np.float64), y.astype(np.float64)).astype(dtype))


def bias_add(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Z[i, j] = X[i, j] + bias[j] (one block ``Z``)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    b = te.placeholder((cols,), dtype, name="bias")
    Z = te.compute((rows, cols), lambda i, j: X[i, j] + b[j], name="Z")
    return from_te(name, "broadcast", [X, b, Z], op="bias_add", model=model,
                   reference=lambda x, bias: (x + bias[None, :]).astype(dtype))


def row_reduce(name, kind, rows, cols, *, dtype="float32", model="") -> Workload:
    """S[i] = sum_j or max_j X[i, j] (one reduction block ``S``)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    r = te.reduce_axis((0, cols), name="k")
    red = te.sum if kind == "sum" else te.max
    S = te.compute((rows,), lambda i: red(X[i, r], axis=r), name="S")
    nfn = np.sum if kind == "sum" else np.max
    return from_te(name, "reduction", [X, S], op="row_reduce", model=model, kind=kind,
                   reference=lambda x: nfn(x.astype(np.float64), axis=1).astype(dtype))


def softmax(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Row softmax: blocks ``T_softmax_maxelem``, ``T_softmax_exp``, ``T_softmax_expsum``,
    ``T_softmax_norm`` (topi)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    Y = topi.nn.softmax(X, axis=1)

    def ref(x):
        x = x.astype(np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return (e / e.sum(axis=1, keepdims=True)).astype(dtype)

    return from_te(name, "softmax", [X, Y], op="softmax", model=model, reference=ref)


def layernorm(name, rows, cols, *, eps=1e-5, dtype="float32", model="") -> Workload:
    """Y = (X - mean) / sqrt(var + eps) * gamma + beta over the last axis.

    Blocks: ``mean_sum`` (row sum), ``sq_sum`` (row sum of squares), ``Y``."""
    X = te.placeholder((rows, cols), dtype, name="X")
    g = te.placeholder((cols,), dtype, name="gamma")
    b = te.placeholder((cols,), dtype, name="beta")
    r1 = te.reduce_axis((0, cols), name="k1")
    r2 = te.reduce_axis((0, cols), name="k2")
    s1 = te.compute((rows,), lambda i: te.sum(X[i, r1], axis=r1), name="mean_sum")
    s2 = te.compute((rows,), lambda i: te.sum(X[i, r2] * X[i, r2], axis=r2), name="sq_sum")
    inv_n = tirx.const(1.0 / cols, dtype)

    def norm(i, j):
        mean = s1[i] * inv_n
        var = s2[i] * inv_n - mean * mean
        return (X[i, j] - mean) / tirx.sqrt(var + tirx.const(eps, dtype)) * g[j] + b[j]

    Y = te.compute((rows, cols), norm, name="Y")

    def ref(x, gamma, beta):
        x = x.astype(np.float64)
        mu = x.mean(axis=1, keepdims=True)
        var = x.var(axis=1, keepdims=True)
        return ((x - mu) / np.sqrt(var + eps) * gamma + beta).astype(dtype)

    return from_te(name, "norm", [X, g, b, Y], op="layernorm", model=model, reference=ref)


def rmsnorm(name, rows, cols, *, eps=1e-6, dtype="float32", model="") -> Workload:
    """Y = X / sqrt(mean(X^2) + eps) * weight. Blocks: ``sq_sum``, ``Y``."""
    X = te.placeholder((rows, cols), dtype, name="X")
    wt = te.placeholder((cols,), dtype, name="weight")
    r = te.reduce_axis((0, cols), name="k")
    s = te.compute((rows,), lambda i: te.sum(X[i, r] * X[i, r], axis=r), name="sq_sum")
    inv_n = tirx.const(1.0 / cols, dtype)
    Y = te.compute((rows, cols),
                   lambda i, j: X[i, j] / tirx.sqrt(s[i] * inv_n + tirx.const(eps, dtype)) * wt[j], name="Y")

    def ref(x, weight):
        x = x.astype(np.float64)
        return (x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * weight).astype(dtype)

    return from_te(name, "norm", [X, wt, Y], op="rmsnorm", model=model, reference=ref)


def pool2d(name, kind, n, h, w, c, k, stride, *, dtype="float32", model="") -> Workload:
    """NHWC max or average pooling, window k, unpadded (one reduction block ``P``,
    plus ``A`` dividing by the window for average)."""
    oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
    X = te.placeholder((n, h, w, c), dtype, name="X")
    ry = te.reduce_axis((0, k), name="ry")
    rx = te.reduce_axis((0, k), name="rx")
    red = te.max if kind == "max" else te.sum
    P = te.compute((n, oh, ow, c),
                   lambda b, y, x, ch: red(X[b, y * stride + ry, x * stride + rx, ch], axis=[ry, rx]), name="P")
    tensors = [X, P]
    if kind == "avg":
        tensors = [X, te.compute((n, oh, ow, c), lambda b, y, x, ch: P[b, y, x, ch] * tirx.const(1.0 / (k * k), dtype),
                                 name="A")]

    def ref(x):
        x = x.astype(np.float64)
        out = np.full((n, oh, ow, c), -np.inf if kind == "max" else 0.0)
        for dy in range(k):
            for dx in range(k):
                win = x[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride, :]
                out = np.maximum(out, win) if kind == "max" else out + win
        return (out if kind == "max" else out / (k * k)).astype(dtype)

    return from_te(name, "pooling", tensors, op="pool2d", model=model, kind=kind, reference=ref)


def transpose(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Y[j, i] = X[i, j] (one block ``Y``)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    Y = te.compute((cols, rows), lambda j, i: X[i, j], name="Y")
    return from_te(name, "layout", [X, Y], op="transpose", model=model, reference=lambda x: np.ascontiguousarray(x.T))


__all__ = [
    "batch_matmul", "bias_add", "binary", "conv2d_nhwc", "layernorm", "matmul", "pool2d",
    "rmsnorm", "row_reduce", "softmax", "transpose", "unary",
]
