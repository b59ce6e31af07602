"""Standard operators as workloads: TE definitions with independent numpy references.

Suites build their workloads from these; ``op`` keys the reference library, so a
workload made here with a given op has the block structure its reference schedule
expects (documented per function).
"""

from __future__ import annotations

import numpy as np
from tvm import te, tirx, topi

from .workload import Workload, from_te, positive_inputs

def matmul(name, m, n, k, *, dtype="float16", out_dtype="float16", model="", category="matmul",
           op="matmul") -> Workload:
    """C[m, n] = A[m, k] @ B[k, n], accumulated in float32 (block ``C``); when
    ``out_dtype`` differs from the accumulator a cast block ``D`` follows. ``op`` may name
    a distinct kind with the same blocks (``matvec`` for M = 1)."""
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

    return from_te(name, category, tensors, op=op, model=model, reference=ref)


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
    "sigmoid": (tirx.sigmoid, lambda x: 1 / (1 + np.exp(-x))),
    "tanh": (tirx.tanh, np.tanh),
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


# ---------------------------------------------------------------------------
# More single operators (new op names: no vendor reference exists for these yet).
# ---------------------------------------------------------------------------

def _f64(*arrays):
    return [a.astype(np.float64) for a in arrays]


def index_inputs(high: int):
    """A generator of int32 indices in [0, high) (embedding rows, class labels)."""
    def gen(rng, shape, dtype):
        return rng.integers(0, high, size=shape).astype(dtype)
    return gen


def weight_inputs(std: float):
    """A generator of zero-mean weights with standard deviation ``std`` (as trained layers
    have, about 1/sqrt(fan_in)), so that products of two GEMMs stay in fp16 range."""
    def gen(rng, shape, dtype):
        return rng.normal(0.0, std, size=shape).astype(dtype)
    return gen


def matmul_nt(name, m, n, k, *, dtype="float16", out_dtype="float16", model="") -> Workload:
    """C[m, n] = A[m, k] @ B[n, k]^T (B stored row-major as [n, k], as nn.Linear weights):
    block ``C`` (float32), cast block ``D``."""
    A = te.placeholder((m, k), dtype, name="A")
    B = te.placeholder((n, k), dtype, name="B")
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((m, n), lambda i, j: te.sum(A[i, r].astype("float32") * B[j, r].astype("float32"), axis=r),
                   name="C")
    D = te.compute((m, n), lambda i, j: C[i, j].astype(out_dtype), name="D")

    def ref(a, b):
        a, b = _f64(a, b)
        return (a @ b.T).astype(out_dtype)

    return from_te(name, "matmul", [A, B, D], op="matmul_nt", model=model, reference=ref)


def row_scale(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Z[i, j] = X[i, j] * s[i]: a per-row (column-vector) broadcast (one block ``Z``)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    s = te.placeholder((rows,), dtype, name="scale")
    Z = te.compute((rows, cols), lambda i, j: X[i, j] * s[i], name="Z")
    return from_te(name, "broadcast", [X, s, Z], op="row_scale", model=model,
                   reference=lambda x, sc: (x.astype(np.float64) * sc.astype(np.float64)[:, None]).astype(dtype))


def channel_affine(name, n, h, w, c, *, dtype="float32", model="") -> Workload:
    """NHWC Y = X * scale[c] + shift[c] (inference batch norm folded; one block ``Y``)."""
    X = te.placeholder((n, h, w, c), dtype, name="X")
    sc = te.placeholder((c,), dtype, name="scale")
    sh = te.placeholder((c,), dtype, name="shift")
    Y = te.compute((n, h, w, c), lambda b, y, x, ch: X[b, y, x, ch] * sc[ch] + sh[ch], name="Y")

    def ref(x, scale, shift):
        x, scale, shift = _f64(x, scale, shift)
        return (x * scale + shift).astype(dtype)

    return from_te(name, "broadcast", [X, sc, sh, Y], op="channel_affine", model=model, reference=ref)


_NP_RED = {"sum": np.sum, "max": np.max, "mean": np.mean}


def col_reduce(name, kind, rows, cols, *, dtype="float32", model="") -> Workload:
    """S[j] = sum/max/mean_i X[i, j] (one reduction block ``S``; mean sums X / rows)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    r = te.reduce_axis((0, rows), name="k")
    if kind == "max":
        S = te.compute((cols,), lambda j: te.max(X[r, j], axis=r), name="S")
    elif kind == "mean":
        S = te.compute((cols,), lambda j: te.sum(X[r, j] * tirx.const(1.0 / rows, dtype), axis=r), name="S")
    else:
        S = te.compute((cols,), lambda j: te.sum(X[r, j], axis=r), name="S")
    return from_te(name, "reduction", [X, S], op="col_reduce", model=model, kind=kind,
                   reference=lambda x: _NP_RED[kind](x.astype(np.float64), axis=0).astype(dtype))


def row_mean(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """M[i] = mean_j X[i, j] as one reduction block ``M`` summing X / cols."""
    X = te.placeholder((rows, cols), dtype, name="X")
    r = te.reduce_axis((0, cols), name="k")
    M = te.compute((rows,), lambda i: te.sum(X[i, r] * tirx.const(1.0 / cols, dtype), axis=r), name="M")
    return from_te(name, "reduction", [X, M], op="row_mean", model=model,
                   reference=lambda x: x.astype(np.float64).mean(axis=1).astype(dtype))


def log_softmax(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Row log-softmax: blocks ``rmax``, ``esum`` (sum of exp(x - max)) and
    ``Y = x - max - log(esum)``."""
    X = te.placeholder((rows, cols), dtype, name="X")
    r1 = te.reduce_axis((0, cols), name="k1")
    r2 = te.reduce_axis((0, cols), name="k2")
    mx = te.compute((rows,), lambda i: te.max(X[i, r1], axis=r1), name="rmax")
    es = te.compute((rows,), lambda i: te.sum(tirx.exp(X[i, r2] - mx[i]), axis=r2), name="esum")
    Y = te.compute((rows, cols), lambda i, j: X[i, j] - mx[i] - tirx.log(es[i]), name="Y")

    def ref(x):
        x = x.astype(np.float64)
        z = x - x.max(axis=1, keepdims=True)
        return (z - np.log(np.exp(z).sum(axis=1, keepdims=True))).astype(dtype)

    return from_te(name, "softmax", [X, Y], op="log_softmax", model=model, reference=ref)


def groupnorm(name, n, h, w, c, groups, *, eps=1e-5, dtype="float32", model="") -> Workload:
    """NHWC group norm: statistics over (h, w, channels of a group); blocks ``mean_sum``,
    ``sq_sum`` ([n, groups]) and ``Y``; per-channel gamma, beta."""
    cpg = c // groups
    X = te.placeholder((n, h, w, c), dtype, name="X")
    g = te.placeholder((c,), dtype, name="gamma")
    b = te.placeholder((c,), dtype, name="beta")

    def stat(square, nm):
        ry, rx, rc = (te.reduce_axis((0, h), name="ry"), te.reduce_axis((0, w), name="rx"),
                      te.reduce_axis((0, cpg), name="rc"))

        def body(bi, gi):
            v = X[bi, ry, rx, gi * cpg + rc]
            return te.sum(v * v if square else v, axis=[ry, rx, rc])

        return te.compute((n, groups), body, name=nm)

    s1, s2 = stat(False, "mean_sum"), stat(True, "sq_sum")
    inv_n = tirx.const(1.0 / (h * w * cpg), dtype)

    def norm(bi, y, x, ch):
        gi = ch // cpg
        mean = s1[bi, gi] * inv_n
        var = s2[bi, gi] * inv_n - mean * mean
        return (X[bi, y, x, ch] - mean) / tirx.sqrt(var + tirx.const(eps, dtype)) * g[ch] + b[ch]

    Y = te.compute((n, h, w, c), norm, name="Y")

    def ref(x, gamma, beta):
        x = x.astype(np.float64).reshape(n, h, w, groups, cpg)
        mu = x.mean(axis=(1, 2, 4), keepdims=True)
        var = x.var(axis=(1, 2, 4), keepdims=True)
        y = ((x - mu) / np.sqrt(var + eps)).reshape(n, h, w, c)
        return (y * gamma + beta).astype(dtype)

    return from_te(name, "norm", [X, g, b, Y], op="groupnorm", model=model, reference=ref)


def _depthwise_ref(x, wt, stride):
    kh, kw, _ = wt.shape
    n, h, w, c = x.shape
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    out = np.zeros((n, oh, ow, c))
    for dy in range(kh):
        for dx in range(kw):
            out += x[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride, :] * wt[dy, dx]
    return out


def _depthwise_te(X, W, stride):
    n, h, w, c = (int(d) for d in X.shape)
    kh, kw = int(W.shape[0]), int(W.shape[1])
    oh, ow = (h - kh) // stride + 1, (w - kw) // stride + 1
    rh = te.reduce_axis((0, kh), name="rh")
    rw = te.reduce_axis((0, kw), name="rw")
    return te.compute(
        (n, oh, ow, c),
        lambda b, y, x, ch: te.sum(
            X[b, y * stride + rh, x * stride + rw, ch].astype("float32") * W[rh, rw, ch].astype("float32"),
            axis=[rh, rw]),
        name="C")


def depthwise_conv2d(name, n, h, w, c, k, stride=1, *, dtype="float16", out_dtype="float16", model="") -> Workload:
    """Unpadded NHWC depthwise conv, weights [k, k, c]: block ``C`` (float32), cast ``D``."""
    X = te.placeholder((n, h, w, c), dtype, name="X")
    W = te.placeholder((k, k, c), dtype, name="W")
    C = _depthwise_te(X, W, stride)
    D = te.compute(C.shape, lambda *i: C(*i).astype(out_dtype), name="D")
    return from_te(name, "conv", [X, W, D], op="depthwise_conv2d", model=model, stride=stride,
                   reference=lambda x, wt: _depthwise_ref(*_f64(x, wt), stride).astype(out_dtype))


def cross_entropy(name, rows, classes, *, dtype="float32", model="") -> Workload:
    """Per-row cross-entropy L[i, 0] = logsumexp(X[i]) - X[i, label[i]], int32 labels
    (blocks ``rmax``, ``esum``, ``L``; the loss keeps a unit class axis; labels are clamped
    to the classes, which also bounds the logits read)."""
    X = te.placeholder((rows, classes), dtype, name="logits")
    lab = te.placeholder((rows,), "int32", name="labels")
    r1 = te.reduce_axis((0, classes), name="k1")
    r2 = te.reduce_axis((0, classes), name="k2")
    mx = te.compute((rows,), lambda i: te.max(X[i, r1], axis=r1), name="rmax")
    es = te.compute((rows,), lambda i: te.sum(tirx.exp(X[i, r2] - mx[i]), axis=r2), name="esum")
    L = te.compute((rows, 1), lambda i, _: tirx.log(es[i]) + mx[i] - X[i, te.max(te.min(lab[i], classes - 1), 0)],
                   name="L")

    def ref(x, labels):
        x = x.astype(np.float64)
        m = x.max(axis=1)
        lse = np.log(np.exp(x - m[:, None]).sum(axis=1)) + m
        picked = x[np.arange(rows), np.clip(labels.astype(np.int64), 0, classes - 1)]
        return (lse - picked)[:, None].astype(dtype)

    return from_te(name, "loss", [X, lab, L], op="cross_entropy", model=model,
                   generators=[None, index_inputs(classes)], reference=ref)


def mse_loss(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """L[0] = mean((P - T)^2) over a 2-D tensor (one reduction block ``L``)."""
    P = te.placeholder((rows, cols), dtype, name="pred")
    T = te.placeholder((rows, cols), dtype, name="target")
    ri = te.reduce_axis((0, rows), name="ri")
    rj = te.reduce_axis((0, cols), name="rj")
    inv = tirx.const(1.0 / (rows * cols), dtype)
    L = te.compute((1,), lambda _: te.sum((P[ri, rj] - T[ri, rj]) * (P[ri, rj] - T[ri, rj]) * inv, axis=[ri, rj]),
                   name="L")

    def ref(p, t):
        p, t = _f64(p, t)
        return np.array([((p - t) ** 2).mean()]).astype(dtype)

    return from_te(name, "loss", [P, T, L], op="mse_loss", model=model, reference=ref)


def embedding(name, vocab, dim, tokens, *, dtype="float32", model="") -> Workload:
    """Y[t, :] = table[ids[t], :] with int32 ids in [0, vocab) (one block ``Y``). The index
    is clamped to the table (as ``take(mode="clip")``), which also bounds the rows read."""
    W = te.placeholder((vocab, dim), dtype, name="table")
    ids = te.placeholder((tokens,), "int32", name="ids")
    Y = te.compute((tokens, dim), lambda t, d: W[te.max(te.min(ids[t], vocab - 1), 0), d], name="Y")
    return from_te(name, "gather", [W, ids, Y], op="embedding", model=model,
                   generators=[None, index_inputs(vocab)],
                   reference=lambda table, i: np.ascontiguousarray(table[np.clip(i.astype(np.int64), 0, vocab - 1)]))


def resize_nearest(name, n, h, w, c, scale, *, dtype="float32", model="") -> Workload:
    """NHWC nearest-neighbour upsampling by an integer ``scale`` (one block ``Y``)."""
    X = te.placeholder((n, h, w, c), dtype, name="X")
    Y = te.compute((n, h * scale, w * scale, c), lambda b, y, x, ch: X[b, y // scale, x // scale, ch], name="Y")
    return from_te(name, "layout", [X, Y], op="resize_nearest", model=model, scale=scale,
                   reference=lambda x: np.ascontiguousarray(x.repeat(scale, axis=1).repeat(scale, axis=2)))


# ---------------------------------------------------------------------------
# Fused operators (category "fused").
# ---------------------------------------------------------------------------

def _gelu_te(x, dt="float32"):
    return x * tirx.const(0.5, dt) * (tirx.const(1, dt) + tirx.tanh(
        tirx.const(0.7978845608, dt) * (x + tirx.const(0.044715, dt) * x * x * x)))


def _gelu_np(x):
    return 0.5 * x * (1 + np.tanh(0.7978845608 * (x + 0.044715 * x ** 3)))


def _relu6_te(x):
    return te.min(te.max(x, tirx.const(0, "float32")), tirx.const(6, "float32"))


_EPILOGUE = {
    "none": (lambda x: x, lambda x: x),
    "gelu": (_gelu_te, _gelu_np),
    "relu": (lambda x: te.max(x, tirx.const(0, "float32")), lambda x: np.maximum(x, 0)),
    "tanh": (tirx.tanh, np.tanh),
    "silu": (lambda x: x * tirx.sigmoid(x), lambda x: x / (1 + np.exp(-x))),
}


def gemm_bias_act(name, m, n, k, act, *, residual=False, dtype="float16", out_dtype="float16",
                  model="") -> Workload:
    """D = act(A @ B + bias) (+ R when ``residual``): fp16 operands, float32 accumulation
    (block ``C``) and epilogue, one cast block ``D``."""
    A = te.placeholder((m, k), dtype, name="A")
    B = te.placeholder((k, n), dtype, name="B")
    bias = te.placeholder((n,), dtype, name="bias")
    ins = [A, B, bias]
    r = te.reduce_axis((0, k), name="k")
    C = te.compute((m, n), lambda i, j: te.sum(A[i, r].astype("float32") * B[r, j].astype("float32"), axis=r),
                   name="C")
    tfn, nfn = _EPILOGUE[act]
    if residual:
        R = te.placeholder((m, n), dtype, name="R")
        ins.append(R)
        D = te.compute((m, n), lambda i, j: (tfn(C[i, j] + bias[j].astype("float32"))
                                             + R[i, j].astype("float32")).astype(out_dtype), name="D")
    else:
        D = te.compute((m, n), lambda i, j: tfn(C[i, j] + bias[j].astype("float32")).astype(out_dtype), name="D")

    def ref(a, b, bi, *rest):
        a, b, bi = _f64(a, b, bi)
        out = nfn(a @ b + bi)
        if rest:
            out = out + rest[0].astype(np.float64)
        return out.astype(out_dtype)

    op = "gemm_bias" + ("" if act == "none" else f"_{act}") + ("_residual" if residual else "")
    return from_te(name, "fused", ins + [D], op=op, model=model, reference=ref)


def conv_bn_act(name, n, h, w, c, k, co, *, act="relu", depthwise=False, stride=1, residual=False, eps=1e-5,
                dtype="float16", out_dtype="float16", model="") -> Workload:
    """Unpadded NHWC conv (standard HWIO, or depthwise [k, k, c]) + inference batch norm
    (mean, var, gamma, beta per output channel) (+ residual) + relu/relu6, cast to fp16."""
    X = te.placeholder((n, h, w, c), dtype, name="X")
    if depthwise:
        W = te.placeholder((k, k, c), dtype, name="W")
        C = _depthwise_te(X, W, stride)
        co = c
    else:
        W = te.placeholder((k, k, c, co), dtype, name="W")
        oh, ow = (h - k) // stride + 1, (w - k) // stride + 1
        rh, rw, rc = (te.reduce_axis((0, k), name="rh"), te.reduce_axis((0, k), name="rw"),
                      te.reduce_axis((0, c), name="rc"))
        C = te.compute(
            (n, oh, ow, co),
            lambda b, y, x, o: te.sum(X[b, y * stride + rh, x * stride + rw, rc].astype("float32")
                                      * W[rh, rw, rc, o].astype("float32"), axis=[rh, rw, rc]),
            name="C")
    shape = tuple(int(d) for d in C.shape)
    mean, var, gamma, beta = (te.placeholder((co,), "float32", name=nm) for nm in ("mean", "var", "gamma", "beta"))
    ins = [X, W, mean, var, gamma, beta]
    R = None
    if residual:
        R = te.placeholder(shape, dtype, name="R")
        ins.append(R)
    act_te = _relu6_te if act == "relu6" else _EPILOGUE[act][0]

    def body(b, y, x, o):
        v = (C[b, y, x, o] - mean[o]) / tirx.sqrt(var[o] + tirx.const(eps, "float32")) * gamma[o] + beta[o]
        if R is not None:
            v = v + R[b, y, x, o].astype("float32")
        return act_te(v).astype(out_dtype)

    D = te.compute(shape, body, name="D")

    def ref(x, wt, mu, vr, g, bt, *rest):
        x, wt, mu, vr, g, bt = _f64(x, wt, mu, vr, g, bt)
        if depthwise:
            out = _depthwise_ref(x, wt, stride)
        else:
            oh, ow = shape[1], shape[2]
            out = np.zeros(shape)
            for dy in range(k):
                for dx in range(k):
                    win = x[:, dy:dy + stride * (oh - 1) + 1:stride, dx:dx + stride * (ow - 1) + 1:stride, :]
                    out += np.einsum("nhwc,co->nhwo", win, wt[dy, dx])
        out = (out - mu) / np.sqrt(vr + eps) * g + bt
        if rest:
            out = out + rest[0].astype(np.float64)
        out = np.clip(out, 0, 6) if act == "relu6" else _EPILOGUE[act][1](out)
        return out.astype(out_dtype)

    gens = [None, None, None, positive_inputs, None, None] + ([None] if residual else [])
    op = ("dwconv" if depthwise else "conv") + "_bn" + ("_add" if residual else "") + f"_{act}"
    return from_te(name, "fused", ins + [D], op=op, model=model, generators=gens, reference=ref)


def attention(name, batch_heads, seq, head_dim, *, causal=False, dtype="float16", model="") -> Workload:
    """O = softmax(Q K^T / sqrt(d) [+ causal mask]) V per head: Q, K, V [bh, s, d] fp16;
    scores, softmax and accumulation in float32; output fp16."""
    Q = te.placeholder((batch_heads, seq, head_dim), dtype, name="Q")
    K = te.placeholder((batch_heads, seq, head_dim), dtype, name="K")
    V = te.placeholder((batch_heads, seq, head_dim), dtype, name="V")
    scale = 1.0 / float(np.sqrt(head_dim))
    rd = te.reduce_axis((0, head_dim), name="rd")
    S = te.compute((batch_heads, seq, seq),
                   lambda b, i, j: te.sum(Q[b, i, rd].astype("float32") * K[b, j, rd].astype("float32"), axis=rd),
                   name="S")
    neg = tirx.const(-1e30, "float32")

    def scaled(b, i, j):
        v = S[b, i, j] * tirx.const(scale, "float32")
        return tirx.Select(j > i, neg, v) if causal else v

    Z = te.compute((batch_heads, seq, seq), scaled, name="Z")
    r1 = te.reduce_axis((0, seq), name="r1")
    r2 = te.reduce_axis((0, seq), name="r2")
    mx = te.compute((batch_heads, seq), lambda b, i: te.max(Z[b, i, r1], axis=r1), name="rmax")
    E = te.compute((batch_heads, seq, seq), lambda b, i, j: tirx.exp(Z[b, i, j] - mx[b, i]), name="E")
    es = te.compute((batch_heads, seq), lambda b, i: te.sum(E[b, i, r2], axis=r2), name="esum")
    rj = te.reduce_axis((0, seq), name="rj")
    O = te.compute((batch_heads, seq, head_dim),
                   lambda b, i, d: te.sum(E[b, i, rj] * V[b, rj, d].astype("float32"), axis=rj), name="O")
    D = te.compute((batch_heads, seq, head_dim), lambda b, i, d: (O[b, i, d] / es[b, i]).astype(dtype), name="D")

    def ref(q, kk, v):
        q, kk, v = _f64(q, kk, v)
        s = np.matmul(q, kk.transpose(0, 2, 1)) * scale
        if causal:
            s = np.where(np.triu(np.ones((seq, seq), bool), 1), -np.inf, s)
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        p = e / e.sum(axis=-1, keepdims=True)
        return np.matmul(p, v).astype(dtype)

    return from_te(name, "fused", [Q, K, V, D], op="attention_causal" if causal else "attention",
                   model=model, reference=ref)


def residual_norm(name, kind, rows, cols, *, eps=1e-5, dtype="float32", model="") -> Workload:
    """H = X + R, Y = rmsnorm(H) * weight or layernorm(H) * gamma + beta; both H (the new
    residual stream) and Y are outputs."""
    X = te.placeholder((rows, cols), dtype, name="X")
    R = te.placeholder((rows, cols), dtype, name="R")
    g = te.placeholder((cols,), dtype, name="weight" if kind == "rms" else "gamma")
    ins = [X, R, g]
    if kind == "layer":
        b = te.placeholder((cols,), dtype, name="beta")
        ins.append(b)
    H = te.compute((rows, cols), lambda i, j: X[i, j] + R[i, j], name="H")
    r2 = te.reduce_axis((0, cols), name="k2")
    s2 = te.compute((rows,), lambda i: te.sum(H[i, r2] * H[i, r2], axis=r2), name="sq_sum")
    inv_n = tirx.const(1.0 / cols, dtype)
    e = tirx.const(eps, dtype)
    if kind == "rms":
        Y = te.compute((rows, cols), lambda i, j: H[i, j] / tirx.sqrt(s2[i] * inv_n + e) * g[j], name="Y")
    else:
        r1 = te.reduce_axis((0, cols), name="k1")
        s1 = te.compute((rows,), lambda i: te.sum(H[i, r1], axis=r1), name="mean_sum")

        def norm(i, j):
            mean = s1[i] * inv_n
            return (H[i, j] - mean) / tirx.sqrt(s2[i] * inv_n - mean * mean + e) * g[j] + b[j]

        Y = te.compute((rows, cols), norm, name="Y")

    def ref(x, res, gamma, *beta):
        h = x.astype(np.float64) + res.astype(np.float64)
        if kind == "rms":
            y = h / np.sqrt((h * h).mean(axis=1, keepdims=True) + eps) * gamma
        else:
            y = (h - h.mean(axis=1, keepdims=True)) / np.sqrt(h.var(axis=1, keepdims=True) + eps) * gamma + beta[0]
        return h.astype(dtype), y.astype(dtype)

    return from_te(name, "fused", ins + [H, Y], op=f"residual_{kind}norm", model=model, n_outputs=2,
                   reference=ref)


def norm_linear(name, kind, m, n, k, *, eps=1e-5, model="") -> Workload:
    """Y = norm(X) @ W: layernorm (gamma, beta) or rmsnorm (weight) in float32 over X [m, k]
    fp32, the normalised rows cast to fp16 (block ``Xn``) feed an fp16 GEMM with float32
    accumulation (block ``C``) and fp16 output ``D``."""
    X = te.placeholder((m, k), "float32", name="X")
    g = te.placeholder((k,), "float32", name="gamma" if kind == "layer" else "weight")
    ins = [X, g]
    if kind == "layer":
        bt = te.placeholder((k,), "float32", name="beta")
        ins.append(bt)
    W = te.placeholder((k, n), "float16", name="W")
    ins.append(W)
    r1 = te.reduce_axis((0, k), name="k1")
    r2 = te.reduce_axis((0, k), name="k2")
    s1 = te.compute((m,), lambda i: te.sum(X[i, r1], axis=r1), name="mean_sum")
    s2 = te.compute((m,), lambda i: te.sum(X[i, r2] * X[i, r2], axis=r2), name="sq_sum")
    inv_n = tirx.const(1.0 / k, "float32")
    e = tirx.const(eps, "float32")
    if kind == "layer":
        def norm(i, j):
            mean = s1[i] * inv_n
            return ((X[i, j] - mean) / tirx.sqrt(s2[i] * inv_n - mean * mean + e) * g[j] + bt[j]).astype("float16")
    else:
        def norm(i, j):
            return (X[i, j] / tirx.sqrt(s2[i] * inv_n + e) * g[j]).astype("float16")
    Xn = te.compute((m, k), norm, name="Xn")
    rk = te.reduce_axis((0, k), name="k")
    C = te.compute((m, n), lambda i, j: te.sum(Xn[i, rk].astype("float32") * W[rk, j].astype("float32"), axis=rk),
                   name="C")
    D = te.compute((m, n), lambda i, j: C[i, j].astype("float16"), name="D")

    def ref(x, gamma, *rest):
        x = x.astype(np.float64)
        if kind == "layer":
            beta, wt = rest
            xn = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps) * gamma + beta
        else:
            (wt,) = rest
            xn = x / np.sqrt((x * x).mean(axis=1, keepdims=True) + eps) * gamma
        xn = xn.astype(np.float16).astype(np.float64)
        return (xn @ wt.astype(np.float64)).astype(np.float16)

    return from_te(name, "fused", ins + [D], op=f"{kind}norm_linear", model=model, reference=ref)


def swiglu_mlp(name, m, n, k, *, dtype="float16", model="") -> Workload:
    """D = silu(X @ Wg) * (X @ Wu): two fp16 GEMMs (float32 accumulation, blocks ``G`` and
    ``U``) and a fused SwiGLU epilogue cast to fp16."""
    X = te.placeholder((m, k), dtype, name="X")
    Wg = te.placeholder((k, n), dtype, name="Wg")
    Wu = te.placeholder((k, n), dtype, name="Wu")
    r1 = te.reduce_axis((0, k), name="k1")
    r2 = te.reduce_axis((0, k), name="k2")
    G = te.compute((m, n), lambda i, j: te.sum(X[i, r1].astype("float32") * Wg[r1, j].astype("float32"), axis=r1),
                   name="G")
    U = te.compute((m, n), lambda i, j: te.sum(X[i, r2].astype("float32") * Wu[r2, j].astype("float32"), axis=r2),
                   name="U")
    D = te.compute((m, n), lambda i, j: (G[i, j] * tirx.sigmoid(G[i, j]) * U[i, j]).astype(dtype), name="D")

    def ref(x, wg, wu):
        x, wg, wu = _f64(x, wg, wu)
        gg = x @ wg
        return (gg / (1 + np.exp(-gg)) * (x @ wu)).astype(dtype)

    w = weight_inputs(1.0 / float(np.sqrt(k)))
    return from_te(name, "fused", [X, Wg, Wu, D], op="swiglu_mlp", model=model, generators=[None, w, w],
                   reference=ref)


def swiglu(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Y = silu(G) * U elementwise (one block ``Y``)."""
    G = te.placeholder((rows, cols), dtype, name="G")
    U = te.placeholder((rows, cols), dtype, name="U")
    Y = te.compute((rows, cols), lambda i, j: G[i, j] * tirx.sigmoid(G[i, j]) * U[i, j], name="Y")

    def ref(gg, u):
        gg, u = _f64(gg, u)
        return (gg / (1 + np.exp(-gg)) * u).astype(dtype)

    return from_te(name, "fused", [G, U, Y], op="swiglu", model=model, reference=ref)


def bias_gelu(name, rows, cols, *, dtype="float32", model="") -> Workload:
    """Y = gelu(X + bias[j]) (one block ``Y``)."""
    X = te.placeholder((rows, cols), dtype, name="X")
    b = te.placeholder((cols,), dtype, name="bias")
    Y = te.compute((rows, cols), lambda i, j: _gelu_te(X[i, j] + b[j], dtype), name="Y")
    return from_te(name, "fused", [X, b, Y], op="bias_gelu", model=model,
                   reference=lambda x, bias: _gelu_np(x.astype(np.float64) + bias).astype(dtype))


def scale_mask_softmax(name, heads, rows, cols, *, scale=0.125, dtype="float32", model="") -> Workload:
    """Y = softmax(X * scale + mask[j]) over the last axis of [heads, rows, cols], with an
    additive key-padding mask (blocks ``Z``, ``rmax``, ``E``, ``esum``, ``Y``)."""
    X = te.placeholder((heads, rows, cols), dtype, name="X")
    M = te.placeholder((cols,), dtype, name="mask")
    Z = te.compute((heads, rows, cols), lambda h, i, j: X[h, i, j] * tirx.const(scale, dtype) + M[j], name="Z")
    r1 = te.reduce_axis((0, cols), name="r1")
    r2 = te.reduce_axis((0, cols), name="r2")
    mx = te.compute((heads, rows), lambda h, i: te.max(Z[h, i, r1], axis=r1), name="rmax")
    E = te.compute((heads, rows, cols), lambda h, i, j: tirx.exp(Z[h, i, j] - mx[h, i]), name="E")
    es = te.compute((heads, rows), lambda h, i: te.sum(E[h, i, r2], axis=r2), name="esum")
    Y = te.compute((heads, rows, cols), lambda h, i, j: E[h, i, j] / es[h, i], name="Y")

    def mask_gen(rng, shape, dt):
        return np.where(rng.random(shape) < 0.25, -10000.0, 0.0).astype(dt)

    def ref(x, mask):
        z = x.astype(np.float64) * scale + mask.astype(np.float64)
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        return (e / e.sum(axis=-1, keepdims=True)).astype(dtype)

    return from_te(name, "fused", [X, M, Y], op="scale_mask_softmax", model=model,
                   generators=[None, mask_gen], reference=ref)


def rope(name, seq, heads, head_dim, *, dtype="float32", model="") -> Workload:
    """Rotary position embedding (rotate-half form) of X [seq, heads, d] with cos/sin tables
    [seq, d/2] (one block ``Y``)."""
    half = head_dim // 2
    X = te.placeholder((seq, heads, head_dim), dtype, name="X")
    cos = te.placeholder((seq, half), dtype, name="cos")
    sin = te.placeholder((seq, half), dtype, name="sin")

    def body(s, h, d):
        first = d < half
        j = tirx.Select(first, d, d - half)
        partner = tirx.Select(first, X[s, h, d + half] * tirx.const(-1, dtype), X[s, h, d - half])
        return X[s, h, d] * cos[s, j] + partner * sin[s, j]

    Y = te.compute((seq, heads, head_dim), body, name="Y")

    def ref(x, c, sn):
        x, c, sn = _f64(x, c, sn)
        x1, x2 = x[..., :half], x[..., half:]
        c, sn = c[:, None, :], sn[:, None, :]
        return np.concatenate([x1 * c - x2 * sn, x2 * c + x1 * sn], axis=-1).astype(dtype)

    return from_te(name, "fused", [X, cos, sin, Y], op="rope", model=model, reference=ref)


__all__ = [
    "attention", "batch_matmul", "bias_add", "bias_gelu", "binary", "channel_affine", "col_reduce",
    "conv2d_nhwc", "conv_bn_act", "cross_entropy", "depthwise_conv2d", "embedding", "gemm_bias_act",
    "groupnorm", "index_inputs", "layernorm", "log_softmax", "matmul", "matmul_nt", "mse_loss",
    "norm_linear", "pool2d", "resize_nearest", "residual_norm", "rmsnorm", "rope", "row_mean",
    "row_reduce", "row_scale", "scale_mask_softmax", "softmax", "swiglu", "swiglu_mlp", "transpose",
    "unary", "weight_inputs",
]
