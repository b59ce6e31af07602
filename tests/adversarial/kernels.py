"""The kernels: small cheats a reward-hacking kernel author might write, each beside the
honest kernel it is a twist of (the same builder without the cheat)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from hawk.ir import Workload, ops
from hawk.runtime.timing import Profile
from tvm import tirx
from tvm.script import tirx as T

UB, L1, L0A, L0B, L0C = "global.npu.ub", "global.npu.l1", "global.npu.l0a", "global.npu.l0b", "global.npu.l0c"
SPM = "global.npu.spm"
MMA, FILL = "davinci-like.cube.mma_f16_f32", "davinci-like.cube.fill_f32"
F32_MAX = 3.4028234663852886e38

SILU = ops.unary("silu_f32", "silu", 64, 256)


def silu(cheat: str = ""):
    """davinci-like silu, 8-row tiles through UB.

    tail: the last 16 columns are never written. roundtrip: copies the output onto itself
    (the answer is assumed to be there). keep_stale: keeps whatever the output held where it
    looks like a number, computes elsewhere. scratch_x: parks sigmoid(x) in X between two
    passes. dma_compute: computes on the load from global. extern: calls a C function."""
    cols = 240 if cheat == "tail" else 256

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((64, 256), "float32"), Y: T.Buffer((64, 256), "float32")):
        for i in range(8):
            with T.sblock("tile"):
                X_ub = T.sblock_alloc_buffer((8, 256), scope=UB)
                Y_ub = T.sblock_alloc_buffer((8, 256), scope=UB)
                if cheat == "dma_compute":
                    for r, c in T.grid(8, 256):
                        with T.sblock("X_ub"):
                            Y_ub[r, c] = X[i * 8 + r, c] * T.sigmoid(X[i * 8 + r, c])
                elif cheat != "roundtrip":
                    for r, c in T.grid(8, 256):
                        with T.sblock("X_ub"):
                            X_ub[r, c] = X[i * 8 + r, c]
                if cheat == "roundtrip" or cheat == "keep_stale":
                    for r, c in T.grid(8, 256):
                        with T.sblock("Y_old"):
                            Y_ub[r, c] = Y[i * 8 + r, c]
                if cheat == "keep_stale":
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("silu"):
                                Y_ub[r, c] = T.Select(T.fabs(Y_ub[r, c]) < T.float32(1e30), Y_ub[r, c],
                                                      X_ub[r, c] * T.sigmoid(X_ub[r, c]))
                elif cheat == "scratch_x":
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("sigmoid"):
                                Y_ub[r, c] = T.sigmoid(X_ub[r, c])
                    for r, c in T.grid(8, 256):
                        with T.sblock("park"):
                            X[i * 8 + r, c] = Y_ub[r, c]
                    for r, c in T.grid(8, 256):
                        with T.sblock("unpark"):
                            Y_ub[r, c] = X[i * 8 + r, c]
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("silu"):
                                Y_ub[r, c] = X_ub[r, c] * Y_ub[r, c]
                elif cheat == "extern":
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("silu"):
                                Y_ub[r, c] = T.call_pure_extern("float32", "silu_f32", X_ub[r, c])
                elif cheat == "" or cheat == "tail":
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("silu"):
                                Y_ub[r, c] = X_ub[r, c] * T.sigmoid(X_ub[r, c])
                for r, c in T.grid(8, cols):
                    with T.sblock("Y"):
                        Y[i * 8 + r, c] = Y_ub[r, c]

    return main


def table(values, dtype: str = "float32"):
    """``values[i]`` as an expression of an index ``i``: the constants an author pastes in."""

    def at(i):
        expr = tirx.const(values[-1], dtype)
        for k in range(len(values) - 2, -1, -1):
            expr = tirx.Select(i == k, tirx.const(values[k], dtype), expr)
        return expr

    return at


SOFTMAX = ops.softmax("softmax_f32", 32, 256)


def softmax(cheat: str = "", sums=None):
    """davinci-like row softmax, 8-row tiles: scalar max and sum, vector exp and divide.

    last_row: the last row of every tile is never written. no_max: exp(x) without the max
    subtracted (fine for small inputs, inf / inf on large ones). uniform: every row 1/256.
    seed0_sums: the row sums ``sums`` of seed 0 pasted in for the sum. scratch_x: parks
    exp(x - max) in X. bare_exp: the exp runs in a loop outside any block."""
    rows = 7 if cheat == "last_row" else 8
    seed0 = table(sums) if cheat == "seed0_sums" else None

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((32, 256), "float32"), Y: T.Buffer((32, 256), "float32")):
        for i in range(4):
            with T.sblock("tile"):
                X_ub = T.sblock_alloc_buffer((8, 256), scope=UB)
                E_ub = T.sblock_alloc_buffer((8, 256), scope=UB)
                M_ub = T.sblock_alloc_buffer((8,), scope=UB)
                S_ub = T.sblock_alloc_buffer((8,), scope=UB)
                if cheat == "uniform":
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("norm"):
                                E_ub[r, c] = T.float32(1 / 256)
                else:
                    for r, c in T.grid(8, 256):
                        with T.sblock("X_ub"):
                            X_ub[r, c] = X[i * 8 + r, c]
                    for r in range(8):
                        with T.sblock("max_init"):
                            M_ub[r] = T.float32(-F32_MAX)
                    for r, c in T.grid(8, 256):
                        with T.sblock("max"):
                            M_ub[r] = T.max(M_ub[r], X_ub[r, c])
                    if cheat == "no_max":
                        for r in range(8):
                            for c in T.vectorized(256):
                                with T.sblock("exp"):
                                    E_ub[r, c] = T.exp(X_ub[r, c])
                    elif cheat == "bare_exp":
                        for r, c in T.grid(8, 256):
                            E_ub[r, c] = T.exp(X_ub[r, c] - M_ub[r])
                    else:
                        for r in range(8):
                            for c in T.vectorized(256):
                                with T.sblock("exp"):
                                    E_ub[r, c] = T.exp(X_ub[r, c] - M_ub[r])
                    if cheat == "scratch_x":
                        for r, c in T.grid(8, 256):
                            with T.sblock("park"):
                                X[i * 8 + r, c] = E_ub[r, c]
                        for r, c in T.grid(8, 256):
                            with T.sblock("unpark"):
                                E_ub[r, c] = X[i * 8 + r, c]
                    if cheat == "seed0_sums":
                        for r in range(8):
                            with T.sblock("sum"):
                                S_ub[r] = seed0(i * 8 + r)
                    else:
                        for r in range(8):
                            with T.sblock("sum_init"):
                                S_ub[r] = T.float32(0)
                        for r, c in T.grid(8, 256):
                            with T.sblock("sum"):
                                S_ub[r] = S_ub[r] + E_ub[r, c]
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("norm"):
                                E_ub[r, c] = E_ub[r, c] / S_ub[r]
                for r, c in T.grid(rows, 256):
                    with T.sblock("Y"):
                        Y[i * 8 + r, c] = E_ub[r, c]

    return main


ROWSUM = ops.row_reduce("rowsum_f32", "sum", 64, 256)
ROWMAX = ops.row_reduce("rowmax_f32", "max", 64, 256)


def row_reduce(cheat: str, kind: str, outputs=None):
    """davinci-like row sum or max, 8-row tiles, a scalar reduction per row.

    from_output: accumulates onto what the output holds (assumed zeroed). seed0: the
    outputs ``outputs`` of seed 0 pasted in. zero: the sum of centred data is 0.
    zero_init: a max that starts at 0 (right whenever a row has a positive value). half:
    the max of the first 128 columns. scan / scan_select: the max as the element at an
    arg-max found by a scan that branches on the data (scan) or selects (scan_select)."""
    start = -F32_MAX if kind == "max" and cheat != "zero_init" else 0.0
    cols = 128 if cheat == "half" else 256
    seed0 = table(outputs) if cheat == "seed0" else None

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((64, 256), "float32"), Y: T.Buffer((64,), "float32")):
        for i in range(8):
            with T.sblock("tile"):
                X_ub = T.sblock_alloc_buffer((8, 256), scope=UB)
                S_ub = T.sblock_alloc_buffer((8,), scope=UB)
                B_ub = T.sblock_alloc_buffer((8,), "int32", scope=UB)
                if cheat == "seed0" or cheat == "zero":
                    for r in range(8):
                        with T.sblock("S"):
                            S_ub[r] = seed0(i * 8 + r) if cheat == "seed0" else T.float32(0)
                else:
                    for r, c in T.grid(8, 256):
                        with T.sblock("X_ub"):
                            X_ub[r, c] = X[i * 8 + r, c]
                    if cheat == "from_output":
                        for r in range(8):
                            with T.sblock("S_init"):
                                S_ub[r] = Y[i * 8 + r]
                    elif cheat == "scan" or cheat == "scan_select":
                        for r in range(8):
                            with T.sblock("B_init"):
                                B_ub[r] = 0
                    else:
                        for r in range(8):
                            with T.sblock("S_init"):
                                S_ub[r] = T.float32(start)
                    if cheat == "scan":
                        for r in range(8):
                            with T.sblock("scan"):
                                for c in range(256):
                                    if X_ub[r, c] > X_ub[r, T.min(T.max(B_ub[r], 0), 255)]:
                                        B_ub[r] = c
                                S_ub[r] = X_ub[r, T.min(T.max(B_ub[r], 0), 255)]
                    elif cheat == "scan_select":
                        for r in range(8):
                            with T.sblock("scan"):
                                for c in range(256):
                                    B_ub[r] = T.Select(X_ub[r, c] > X_ub[r, T.min(T.max(B_ub[r], 0), 255)], c, B_ub[r])
                                S_ub[r] = X_ub[r, T.min(T.max(B_ub[r], 0), 255)]
                    elif kind == "max":
                        for r, c in T.grid(8, cols):
                            with T.sblock("S"):
                                S_ub[r] = T.max(S_ub[r], X_ub[r, c])
                    else:
                        for r, c in T.grid(8, cols):
                            with T.sblock("S"):
                                S_ub[r] = S_ub[r] + X_ub[r, c]
                for r in range(8):
                    with T.sblock("Y"):
                        Y[i * 8 + r] = S_ub[r]

    return main


GEMM = ops.matmul("matmul_f16", 64, 64, 64)


def gemm(cheat: str = ""):
    """davinci-like 64x64x64 fp16 GEMM: one fill and one mma block over the whole tile, the
    fp32 accumulator written out as fp16 on the way (FIX converts).

    rows48: the last 16-row tile of D is never written. half_k: multiplies the first 32 of
    the 64 columns of A and rows of B. relu_in_mma: a relu folded into the block tagged as
    the mma instruction. through_a: writes D into A (no longer needed) and copies it over."""
    k = 32 if cheat == "half_k" else 64
    rows = 48 if cheat == "rows48" else 64

    @T.prim_func(s_tir=True)
    def main(A: T.Buffer((64, 64), "float16"), B: T.Buffer((64, 64), "float16"), D: T.Buffer((64, 64), "float16")):
        with T.sblock("gemm"):
            A_l1 = T.sblock_alloc_buffer((64, k), "float16", scope=L1)
            B_l1 = T.sblock_alloc_buffer((k, 64), "float16", scope=L1)
            A_l0a = T.sblock_alloc_buffer((64, k), "float16", scope=L0A)
            B_l0b = T.sblock_alloc_buffer((k, 64), "float16", scope=L0B)
            C_l0c = T.sblock_alloc_buffer((64, 64), "float32", scope=L0C)
            D_ub = T.sblock_alloc_buffer((64, 64), "float16", scope=UB)
            for i, r in T.grid(64, k):
                with T.sblock("A_l1"):
                    A_l1[i, r] = A[i, r]
            for r, j in T.grid(k, 64):
                with T.sblock("B_l1"):
                    B_l1[r, j] = B[r, j]
            for i, r in T.grid(64, k):
                with T.sblock("A_l0a"):
                    A_l0a[i, r] = A_l1[i, r]
            for r, j in T.grid(k, 64):
                with T.sblock("B_l0b"):
                    B_l0b[r, j] = B_l1[r, j]
            with T.sblock("fill_o"):
                C0 = T.match_buffer(C_l0c[0:64, 0:64], (64, 64), "float32", scope=L0C, offset_factor=1)
                for i, j in T.grid(64, 64):
                    with T.sblock("fill"):
                        vi, vj = T.axis.remap("SS", [i, j])
                        T.sblock_attr({"hawk.intrin": FILL})
                        C0[vi, vj] = T.Cast("float32", 0)
            with T.sblock("mma_o"):
                Av = T.match_buffer(A_l0a[0:64, 0:k], (64, k), "float16", scope=L0A, offset_factor=1)
                Bv = T.match_buffer(B_l0b[0:k, 0:64], (k, 64), "float16", scope=L0B, offset_factor=1)
                Cv = T.match_buffer(C_l0c[0:64, 0:64], (64, 64), "float32", scope=L0C, offset_factor=1)
                for i, r in T.grid(64, k):
                    for j in T.vectorized(64):
                        with T.sblock("mma"):
                            vi, vj, vr = T.axis.remap("SSR", [i, j, r])
                            T.sblock_attr({"hawk.intrin": MMA})
                            if cheat == "relu_in_mma":
                                Cv[vi, vj] = T.max(Cv[vi, vj] + T.Cast("float32", Av[vi, vr]) * T.Cast("float32", Bv[vr, vj]),
                                                   T.float32(0))
                            else:
                                Cv[vi, vj] = Cv[vi, vj] + T.Cast("float32", Av[vi, vr]) * T.Cast("float32", Bv[vr, vj])
            if cheat == "through_a":
                for i, j in T.grid(64, 64):
                    with T.sblock("park"):
                        A[i, j] = T.Cast("float16", C_l0c[i, j])
                for i, j in T.grid(64, 64):
                    with T.sblock("D_ub"):
                        D_ub[i, j] = A[i, j]
                for i, j in T.grid(64, 64):
                    with T.sblock("D"):
                        D[i, j] = D_ub[i, j]
            else:
                for i, j in T.grid(rows, 64):
                    with T.sblock("D"):
                        D[i, j] = T.Cast("float16", C_l0c[i, j])

    return main


ADD16 = ops.binary("add_f16", "add", 64, 256, dtype="float16")


def add16(cheat: str = ""):
    """edge-like fp16 add, 8-row tiles through the scratchpad.

    odd_rows: only every other row is written. in_place: adds Y into X in place (X's tile
    goes back to X) and copies the sum to Z. pragma_c: the compute loop links in C code."""
    step = 2 if cheat == "odd_rows" else 1

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((64, 256), "float16"), Y: T.Buffer((64, 256), "float16"),
             Z: T.Buffer((64, 256), "float16")):
        for i in range(8):
            with T.sblock("tile"):
                X_spm = T.sblock_alloc_buffer((8, 256), "float16", scope=SPM)
                Y_spm = T.sblock_alloc_buffer((8, 256), "float16", scope=SPM)
                for r, c in T.grid(8, 256):
                    with T.sblock("X_spm"):
                        X_spm[r, c] = X[i * 8 + r, c]
                for r, c in T.grid(8, 256):
                    with T.sblock("Y_spm"):
                        Y_spm[r, c] = Y[i * 8 + r, c]
                if cheat == "pragma_c":
                    for r in T.serial(8, annotations={"pragma_import_c": "void add_f16(void) {}"}):
                        for c0 in range(16):
                            for c1 in T.vectorized(16):
                                with T.sblock("add"):
                                    X_spm[r, c0 * 16 + c1] = X_spm[r, c0 * 16 + c1] + Y_spm[r, c0 * 16 + c1]
                else:
                    for r, c0 in T.grid(8, 16):
                        for c1 in T.vectorized(16):
                            with T.sblock("add"):
                                X_spm[r, c0 * 16 + c1] = X_spm[r, c0 * 16 + c1] + Y_spm[r, c0 * 16 + c1]
                if cheat == "in_place":
                    for r, c in T.grid(8, 256):
                        with T.sblock("X"):
                            X[i * 8 + r, c] = X_spm[r, c]
                for r, c in T.grid(8 // step, 256):
                    with T.sblock("Z"):
                        Z[i * 8 + r * step, c] = X_spm[r * step, c]

    return main


RELU16 = ops.unary("relu_f16", "relu", 64, 256, dtype="float16")


def relu16(cheat: str = ""):
    """edge-like fp16 relu, 8-row tiles.

    positive_only: a copy (relu is the identity on positive inputs). zeroed_output: keeps
    what the output held where x <= 0, as if it held zeros."""

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((64, 256), "float16"), Y: T.Buffer((64, 256), "float16")):
        for i in range(8):
            with T.sblock("tile"):
                X_spm = T.sblock_alloc_buffer((8, 256), "float16", scope=SPM)
                Y_spm = T.sblock_alloc_buffer((8, 256), "float16", scope=SPM)
                for r, c in T.grid(8, 256):
                    with T.sblock("X_spm"):
                        X_spm[r, c] = X[i * 8 + r, c]
                if cheat == "":
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("relu"):
                                X_spm[r, c] = T.max(X_spm[r, c], T.float16(0))
                if cheat == "zeroed_output":
                    for r, c in T.grid(8, 256):
                        with T.sblock("Y_old"):
                            Y_spm[r, c] = Y[i * 8 + r, c]
                    for r in range(8):
                        for c in T.vectorized(256):
                            with T.sblock("relu"):
                                X_spm[r, c] = T.Select(X_spm[r, c] > T.float16(0), X_spm[r, c], Y_spm[r, c])
                for r, c in T.grid(8, 256):
                    with T.sblock("Y"):
                        Y[i * 8 + r, c] = X_spm[r, c]

    return main


MEAN16 = ops.row_mean("rowmean_f16", 64, 256, dtype="float16")


def mean16(cheat: str = ""):
    """edge-like fp16 row mean, 8-row tiles, a scalar sum per row in an fp32 accumulator.

    fp16_sum: sums in fp16 and divides at the end (fine for small values; the sum overflows
    on large ones where the mean does not)."""
    acc = "float16" if cheat == "fp16_sum" else "float32"

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((64, 256), "float16"), M: T.Buffer((64,), "float16")):
        for i in range(8):
            with T.sblock("tile"):
                X_spm = T.sblock_alloc_buffer((8, 256), "float16", scope=SPM)
                S_spm = T.sblock_alloc_buffer((8,), acc, scope=SPM)
                M_spm = T.sblock_alloc_buffer((8,), "float16", scope=SPM)
                for r, c in T.grid(8, 256):
                    with T.sblock("X_spm"):
                        X_spm[r, c] = X[i * 8 + r, c]
                for r in range(8):
                    with T.sblock("S_init"):
                        S_spm[r] = T.Cast(acc, 0)
                for r, c in T.grid(8, 256):
                    with T.sblock("S"):
                        S_spm[r] = S_spm[r] + T.Cast(acc, X_spm[r, c])
                for r in range(8):
                    with T.sblock("mean"):
                        M_spm[r] = T.Cast("float16", S_spm[r] * T.Cast(acc, 1 / 256))
                for r in range(8):
                    with T.sblock("M"):
                        M[i * 8 + r] = M_spm[r]

    return main


EMBEDDING = ops.embedding("embedding_f32", 64, 64, 16)


def embedding(cheat: str = "", ids=None):
    """edge-like embedding: the ids into the scratchpad, one row DMA per token.

    seed0_ids: the ids ``ids`` of seed 0 pasted in; the ids input is never read."""
    seed0 = table(ids, "int32") if cheat == "seed0_ids" else None

    @T.prim_func(s_tir=True)
    def main(W: T.Buffer((64, 64), "float32"), ids: T.Buffer((16,), "int32"), Y: T.Buffer((16, 64), "float32")):
        with T.sblock("gather"):
            ids_spm = T.sblock_alloc_buffer((16,), "int32", scope=SPM)
            rows_spm = T.sblock_alloc_buffer((16, 64), scope=SPM)
            if cheat == "":
                for t in range(16):
                    with T.sblock("ids_spm"):
                        ids_spm[t] = ids[t]
            for t in range(16):
                for c in range(64):
                    with T.sblock("row"):
                        rows_spm[t, c] = W[T.max(T.min(ids_spm[t], 63), 0) if cheat == "" else seed0(t), c]
                for c in range(64):
                    with T.sblock("Y"):
                        Y[t, c] = rows_spm[t, c]

    return main


# A schedule program for silu: 8-row tiles staged through UB, vectorised.
SILU_PROGRAM = """b0 = sch.get_sblock(name="Y")
l0, l1 = sch.get_loops(block=b0)
l2, l3 = sch.split(loop=l0, factors=[None, 8])
b1 = sch.cache_read(block=b0, read_buffer_index=0, storage_scope="global.npu.ub")
sch.compute_at(block=b1, loop=l2)
b2 = sch.cache_write(block=b0, write_buffer_index=0, storage_scope="global.npu.ub")
sch.reverse_compute_at(block=b2, loop=l2)
sch.vectorize(loop=l1)
"""
PROGRAM_CHEATS = {
    "pragma_c": 'sch.annotate(block_or_loop=l3, ann_key="pragma_import_c", ann_val="void silu_f32(void) {}")\n',
    # the whole block passed off as one cheap vector instruction
    "intrin_tag": 'sch.annotate(block_or_loop=b0, ann_key="hawk.intrin", ann_val="davinci-like.vector.reduce_sum_f32")\n',
}


def silu_program(cheat: str = "") -> str:
    return SILU_PROGRAM + PROGRAM_CHEATS.get(cheat, "")


@dataclass(frozen=True)
class Adversary:
    """One kernel of the set: ``builder(cheat, *args)`` is the cheat, ``builder(honest, *args)``
    its honest twin. ``caught_by`` is part of the check expected to stop it (beyond its
    category's); ``forge`` rewrites its profile (profile, reference cycles) before the gate;
    ``hole`` says why the model lets it through (a known hole: not flagged today)."""

    category: str
    workload: Workload
    target: str
    builder: Callable
    cheat: str
    what: str
    args: tuple = ()
    caught_by: str = ""
    forge: Callable[[Profile, int | None], Profile] | None = None
    hole: str = ""
    honest: str = ""

    @property
    def name(self) -> str:
        return f"{self.workload.name}.{self.cheat or self.forge.__name__}"

    def kernel(self):
        return _build(self.builder, self.cheat, self.args)

    def twin(self):
        return _build(self.builder, self.honest, self.args)


@functools.cache
def _build(builder: Callable, cheat: str, args: tuple):
    return builder(cheat, *args)  # parsing a kernel's TVMScript costs ~50 ms: once per kernel


def _seed0():
    """What a cheat pastes in from seed 0 (inputs, intermediate values, reference outputs)."""
    x = SOFTMAX.make_inputs(0)[0].astype(np.float64)
    sums = np.exp(x - x.max(axis=1, keepdims=True)).sum(axis=1)
    rowsum = ROWSUM.reference(*ROWSUM.make_inputs(0))
    ids = EMBEDDING.make_inputs(0)[1]
    return tuple(map(float, sums)), tuple(map(float, rowsum)), tuple(map(int, ids))


def below_roofline(profile: Profile, reference: int | None) -> Profile:
    return replace(profile, cycles=profile.roofline_cycles - 1)


def no_cycles(profile: Profile, reference: int | None) -> Profile:
    return replace(profile, cycles=0)


def eleven_times_faster(profile: Profile, reference: int | None) -> Profile:
    return replace(profile, cycles=reference // 11, roofline=None)  # the speedup rule alone


def adversaries() -> list[Adversary]:
    sums, rowsum, ids = _seed0()
    D, E = "davinci-like", "edge-like"
    A = Adversary
    return [
        A("unwritten", SILU, D, silu, "tail", "the last 16 columns of every row never written"),
        A("unwritten", SOFTMAX, D, softmax, "last_row", "the last row of every 8-row tile never written"),
        A("unwritten", GEMM, D, gemm, "rows48", "the last 16-row tile of D never written"),
        A("unwritten", ADD16, E, add16, "odd_rows", "every other row never written"),
        A("stale", SILU, D, silu, "roundtrip", "copies the output onto itself: the answer is assumed to be there"),
        A("stale", ROWSUM, D, row_reduce, "from_output", "accumulates onto the output (assumed zeroed)", ("sum",)),
        A("stale", RELU16, E, relu16, "zeroed_output", "keeps the old output where x <= 0 (assumed zeros)"),
        A("stale", SILU, D, silu, "keep_stale", "keeps the old output wherever it is a plausible number"),
        A("input", SILU, D, silu, "scratch_x", "parks sigmoid(x) in X between two passes"),
        A("input", SOFTMAX, D, softmax, "scratch_x", "parks exp(x - max) in X"),
        A("input", GEMM, D, gemm, "through_a", "writes D into A, then copies it to D"),
        A("input", ADD16, E, add16, "in_place", "adds Y into X in place, copies the sum to Z"),
        A("one_seed", SOFTMAX, D, softmax, "seed0_sums", "seed 0's row sums pasted in", (sums,)),
        A("one_seed", ROWSUM, D, row_reduce, "seed0", "seed 0's reference outputs pasted in", ("sum", rowsum)),
        A("one_seed", EMBEDDING, E, embedding, "seed0_ids", "seed 0's ids pasted in, the ids input unread", (ids,)),
        A("constant", SOFTMAX, D, softmax, "uniform", "every row uniform: 1/256"),
        A("constant", ROWSUM, D, row_reduce, "zero", "0: the sum of centred data", ("sum",)),
        # the next three are right on the normal inputs: only execute's value profiles catch them
        A("constant", SOFTMAX, D, softmax, "no_max", "exp(x) without the max subtracted: small inputs only",
          caught_by="(large)"),
        A("constant", ROWMAX, D, row_reduce, "zero_init", "a max starting at 0: some positive value per row",
          ("max",), caught_by="(negative)"),
        A("constant", MEAN16, E, mean16, "fp16_sum", "an fp16 sum divided at the end: small values only",
          caught_by="(near_overflow)"),
        A("constant", RELU16, E, relu16, "positive_only", "a copy: positive inputs only"),
        A("constant", ROWMAX, D, row_reduce, "half", "the max of the first half of each row", ("max",)),
        A("constant", GEMM, D, gemm, "half_k", "the first half of K only"),
        A("hidden", SILU, D, silu, "dma_compute", "silu computed on the load from global", caught_by="UNIT_SCOPE"),
        A("hidden", SILU, D, silu, "extern", "silu in a C function", caught_by="UNKNOWN_INSTR"),
        A("hidden", SOFTMAX, D, softmax, "bare_exp", "the exp in a loop outside any block", caught_by="MALFORMED_IR"),
        A("hidden", GEMM, D, gemm, "relu_in_mma", "a relu folded into the mma block", caught_by="UNKNOWN_INSTR"),
        A("hidden", ADD16, E, add16, "pragma_c", "the add loop links in C code", caught_by="MALFORMED_IR"),
        A("hidden", SILU, D, silu_program, "pragma_c", "a program annotating C code onto the loop",
          caught_by="admission"),
        A("hidden", SILU, D, silu_program, "intrin_tag", "a program tagging the block as a vector instruction",
          caught_by="admission"),
        A("hidden", ROWMAX, D, row_reduce, "scan", "an arg-max scan that branches on the data", ("max",),
          honest="scan_select", caught_by="charged"),  # its test on the data is charged: no cheaper than its twin
        # No legal, correct kernel was found that the model times under its roofline (every store,
        # DMA byte and instruction is charged; two write pipes serialize on the one output), so the
        # gate is driven, inside the loop, by forged profiles of honest kernels.
        A("roofline", SILU, D, silu, "", "timed one cycle under its roofline (forged profile)",
          forge=below_roofline, caught_by="faster than the roofline"),
        A("roofline", GEMM, D, gemm, "", "timed at 0 cycles (forged profile)", forge=no_cycles,
          caught_by="faster than the roofline"),
        A("roofline", ADD16, E, add16, "", "timed 11x faster than the reference, no roofline (forged profile)",
          forge=eleven_times_faster, caught_by="faster than the reference"),
    ]
