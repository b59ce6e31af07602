"""Kernels and texts that try to leave the sandbox: each reports what it managed in its output."""

from __future__ import annotations

import tvm
from tvm.script import tirx as T


def extern_kernel(func: str, *args) -> tvm.IRModule:
    """A kernel whose single int64 output is ``func(*args)``, called outside any block."""

    @T.prim_func(s_tir=True)
    def main(X: T.Buffer((1,), "int64")):
        X[0] = T.call_extern("int64", func, *args)

    return tvm.IRModule({"main": main})
