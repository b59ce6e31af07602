"""Ctrl-C or SIGTERM in the middle of ``hawk tune`` or ``hawk bench``: the command stops
within seconds with exit code 130, every process it started (host worker, parse sandboxes,
task processes) is gone, no sandbox directory is left behind, and the knowledge store it
was learning into opens whole, each triple's record equal to its logged applications."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest
from hawk.knowledge import KnowledgeStore

ROOT = Path(__file__).resolve().parents[2]


def _interrupt(args: list[str], tmp_path: Path, sig: int, *, after_lines: int, marker: str,
               settle_s: float = 0.0) -> dict:
    """Run ``hawk ARGS``, send ``sig`` ``settle_s`` after ``after_lines`` lines containing
    ``marker`` have been written, and report what is left."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONFAULTHANDLER": "1"}
    # a shell without job control starts background jobs with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt: the command gets SIGINT as a terminal would give it
    proc = subprocess.Popen([sys.executable, "-m", "hawk.cli", *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    seen: dict[int, psutil.Process] = {}
    ready = threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if sum(marker in ln for ln in lines) >= after_lines:
                ready.set()
        ready.set()

    threading.Thread(target=read, daemon=True).start()
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + 240
    while not ready.is_set() and time.monotonic() < deadline:
        try:
            for p in me.children(recursive=True):
                seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.05)
    settled = time.monotonic() + settle_s
    while time.monotonic() < settled and proc.poll() is None:
        for p in me.children(recursive=True):
            seen.setdefault(p.pid, p)
        time.sleep(0.05)
    assert proc.poll() is None, "the command ended before it could be interrupted:\n" + "".join(lines[-20:])
    for p in me.children(recursive=True):
        seen.setdefault(p.pid, p)
    sent = time.monotonic()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # PYTHONFAULTHANDLER: every thread's stack into the output
        time.sleep(5)
        proc.kill()
        raise AssertionError("still running 60 s after the signal:\n" + "".join(lines[-150:])) from None
    stopped_s = time.monotonic() - sent
    time.sleep(0.5)
    alive = [p for p in seen.values() if _alive(p)]
    return {"code": code, "stopped_s": stopped_s, "children": len(seen), "alive": alive,
            "left": sorted(p.name for p in tmp.iterdir()), "output": "".join(lines)}


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _check_store(path: Path) -> int:
    """Whole and consistent: SQLite's own check, every triple decodes, every logged
    application belongs to a stored triple and is counted in its record (a learned triple's
    record also counts the run it was learned in)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with KnowledgeStore(path) as kb:
        triples = {t.id: t for t in kb.triples(status=None)}
        assert not kb.skipped, kb.skipped
        logged = Counter(app["triple_id"] for app in kb.applications() if app["applied"])
    assert set(logged) <= set(triples), "an application of a triple that is not stored"
    for tid, n in logged.items():
        assert triples[tid].stats.applications >= n, f"{tid}: its record misses logged applications"
    return len(triples)


def _assert_clean(res: dict) -> None:
    assert res["code"] == 130, res["output"][-3000:]
    assert "Traceback" not in res["output"], res["output"][-3000:]
    assert res["children"] >= 1  # it had started its sandboxes: the test interrupted real work
    assert not res["alive"], f"left running: {[p.pid for p in res['alive']]}"
    assert not res["left"], f"left in TMPDIR: {res['left']}"
    assert res["stopped_s"] < 30


@pytest.mark.parametrize("sig", [signal.SIGINT, pytest.param(signal.SIGTERM, marks=pytest.mark.slow)],
                         ids=["ctrl-c", "sigterm"])  # hawk bench below takes SIGTERM in CI
def test_interrupting_hawk_tune_leaves_nothing_running_and_the_store_whole(tmp_path, sig):
    kb = tmp_path / "kb.sqlite"
    res = _interrupt(["tune", "--target", "davinci-like", "--suite", "smoke", "--budget", "30", "--kb", str(kb),
                      "--json", "out.json"], tmp_path, sig, after_lines=6, marker="/30]")
    _assert_clean(res)
    assert "interrupted" in res["output"]
    _check_store(kb)
    assert (tmp_path / "out.json").exists()  # what finished is still reported


def test_terminating_hawk_bench_leaves_nothing_running_and_the_store_whole(tmp_path):
    kb = tmp_path / "kb.sqlite"
    res = _interrupt(["bench", "--suite", "smoke", "--target", "davinci-like", "--baselines", "reference,loop",
                      "--budget", "30", "--seeds", "0", "--knowledge", "cold", "--kb", str(kb)],
                     tmp_path, signal.SIGTERM, after_lines=1, marker="matmul_f16: loop", settle_s=3)
    _assert_clean(res)
    _check_store(kb)


@pytest.mark.slow
def test_terminating_hawk_tune_of_a_model_stops_its_task_processes(tmp_path):
    kb = tmp_path / "kb.sqlite"
    res = _interrupt(["tune", "--model-file", str(ROOT / "examples" / "small_cnn.py"), "--target", "davinci-like",
                      "--work-dir", "work", "--jobs", "2", "--budget", "30", "--kb", str(kb)],
                     tmp_path, signal.SIGTERM, after_lines=1, marker="cycles")
    _assert_clean(res)
    assert res["children"] >= 4  # two task processes, each with its sandboxes
    _check_store(kb)
