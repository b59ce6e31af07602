"""A kernel that hangs is killed within its time limit plus one second; one that allocates
without bound is stopped by the worker's memory limit; either way the next kernel runs
normally on the same worker and the tuner's own memory does not move."""

from __future__ import annotations

import resource

import pytest
import tvm
from hawk.bench.suites import find_workload
from hawk.runtime import HostWorker, execute
from tvm.script import tirx as T

LIMIT_S = 2.0


@T.prim_func(s_tir=True)
def silu(X: T.Buffer((256, 1024), "float32"), Y: T.Buffer((256, 1024), "float32")):
    for i, j in T.grid(256, 1024):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            Y[vi, vj] = X[vi, vj] * T.sigmoid(X[vi, vj])


@T.prim_func(s_tir=True)
def silu_forever(X: T.Buffer((256, 1024), "float32"), Y: T.Buffer((256, 1024), "float32")):
    # right answer, 2^30 times over
    for _rep, i, j in T.grid(1 << 30, 256, 1024):
        with T.sblock("Y"):
            _vr, vi, vj = T.axis.remap("RSS", [_rep, i, j])
            Y[vi, vj] = X[vi, vj] * T.sigmoid(X[vi, vj])


@T.prim_func(s_tir=True)
def silu_via_8_gib(X: T.Buffer((256, 1024), "float32"), Y: T.Buffer((256, 1024), "float32")):
    big = T.sblock_alloc_buffer((1 << 30,), "int64")  # 2^30 elements: indices stay int32
    for k in range(1 << 30):
        with T.sblock("fill"):
            vk = T.axis.remap("S", [k])
            big[vk] = T.Cast("int64", X[vk % 256, vk % 1024])
    for i, j in T.grid(256, 1024):
        with T.sblock("Y"):
            vi, vj = T.axis.remap("SS", [i, j])
            # adds big[...] - big[...]: zero, but only a run can tell, so nothing is optimised away
            Y[vi, vj] = X[vi, vj] * T.sigmoid(X[vi, vj]) + T.Cast(
                "float32", big[vi * 1024 + vj] - T.Cast("int64", X[vj % 256, vj]))


@pytest.fixture(scope="module")
def worker():
    w = HostWorker()
    yield w
    w.close()


def _run(func, worker, **kw):
    return execute(tvm.IRModule({"main": func}), find_workload("silu_f32"), worker=worker, trials=2, **kw)


def test_a_hanging_kernel_is_killed_in_time_and_the_next_one_runs(worker):
    assert _run(silu, worker).correct  # the worker is up: what follows is the kernel's time only
    hung = _run(silu_forever, worker, timeout=LIMIT_S)
    assert hung.status == "timeout"
    assert hung.wall_s <= LIMIT_S + 1.0, f"stopped after {hung.wall_s:.2f} s"
    again = _run(silu, worker)
    assert again.correct, again.message


def test_an_unbounded_allocation_is_stopped_by_the_memory_limit(worker):
    assert _run(silu, worker).correct
    tuner_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = _run(silu_via_8_gib, worker, timeout=60)
    assert res.status in ("runtime_error", "crash"), res
    assert res.status == "crash" or "alloc" in res.message, res.message  # the limit, not something else
    assert res.wall_s < 30
    again = _run(silu, worker)
    assert again.correct, again.message
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - tuner_before) / 1024
    assert grew_mb < 64, f"the tuner's peak memory grew {grew_mb:.0f} MB"
