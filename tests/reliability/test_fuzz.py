"""The fuzzing campaign, short: hostile proposals through ``hawk tune`` with a replaying
endpoint (the full campaign of 1,000+: ``python bench/reliability.py``)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from .campaign import _files, _Listeners, _token_files, run_campaign
from .fuzz import Canary, draw


def test_a_short_campaign_crashes_nothing_classifies_everything_and_lets_nothing_out(tmp_path):
    result = run_campaign(24, tmp_path, seed=0, exec_timeout=3, time_limit=600)
    assert result.problems == [], result.to_dict()
    assert sum(result.outcomes.values()) == result.proposals == 24


def _bases():
    return ['v0 = sch.get_sblock(name="Y")\nv1, v2 = sch.get_loops(block=v0)',
            ('@I.ir_module\nclass Module:\n    @T.prim_func(s_tir=True)\n'
             '    def main(X: T.Buffer((4,), "float32"), Y: T.Buffer((4,), "float32")):\n'
             '        T.func_attr({"tirx.noalias": True})\n'
             '        X_ub = T.sblock_alloc_buffer((4,), scope="global.npu.ub")\n'
             '        for i in range(4):\n            with T.sblock("Y"):\n                Y[i] = X[i]')]


def test_proposals_are_reproducible(tmp_path):
    canary = Canary(tmp_path, 1, tmp_path / "s", "tok")
    first = [p.answer for p in draw(20, _bases(), canary, seed=3)]
    assert first == [p.answer for p in draw(20, _bases(), canary, seed=3)]


@pytest.mark.slow
def test_proposals_are_drawn_from_every_class(tmp_path):
    kinds = {p.kind for p in draw(600, _bases(), Canary(tmp_path, 1, tmp_path / "s", "tok"), seed=3)}
    assert kinds >= {"mutated program", "mutated tvmscript", "generated program", "syntax error", "unknown primitive",
                     "wrong argument types", "huge loop or list", "deep nesting", "huge allocation", "hanging kernel",
                     "aborting kernel", "extern call", "forged annotation", "escape"}


def test_the_canaries_would_see_an_escape(tmp_path):
    """The checks can fail: a connection is counted and a planted file is found."""
    listeners = _Listeners(tmp_path / "c.sock")
    socket.create_connection(("127.0.0.1", listeners.port)).close()
    unix = socket.socket(socket.AF_UNIX)
    unix.connect(str(tmp_path / "c.sock"))
    unix.close()
    for _ in range(100):
        if listeners.connections == 2:
            break
        time.sleep(0.01)
    listeners.close()
    assert listeners.connections == 2
    (tmp_path / "canary").mkdir()
    (tmp_path / "canary" / "x").write_text("")
    assert _files(tmp_path / "canary")
    planted = Path("/tmp") / "hawkfuzz-test-token-planted"
    planted.write_text("")
    try:
        assert str(planted) in _token_files("hawkfuzz-test-token")
    finally:
        planted.unlink()
