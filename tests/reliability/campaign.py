"""The fuzzing campaign: hostile proposals through ``hawk tune`` with a replaying endpoint.

The tuner runs as a user runs it (its own process, ``--llm replay:FILE``), in a scratch
home, temp and working directory, beside canaries: a directory and two listening sockets
that nothing it runs may reach. What is checked, not assumed: the tuner exits normally
with a report, every proposal ends in a named outcome and none in an internal error, no
file appears in the canary, home or temp directory (and the working directory holds only
the report), nothing connects to the canaries or holds an internet socket, no process of
the tuner outlives it, and its resident memory stays within the bound.
"""

from __future__ import annotations

import json
import math
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from .fuzz import Canary, draw

SUITE = "smoke"
TARGET = "davinci-like"
MEMORY_BOUND_MB = 1024  # the tuner process itself; its sandboxed children have their own limits
OUTCOMES = {"ok", "no_proposal", "admission", "signature", "fault", "wrong", "timing_error", "flagged",
            "timeout", "crash", "build_error", "runtime_error", "reference_error", "internal_error"}


@dataclass
class CampaignResult:
    proposals: int
    exit_code: int
    wall_s: float
    peak_rss_mb: float
    outcomes: Counter = field(default_factory=Counter)  # outcome -> count
    by_class: dict = field(default_factory=dict)  # class -> Counter of outcomes
    unclassified: int = 0
    files_outside: list = field(default_factory=list)
    connections: int = 0
    sockets_seen: list = field(default_factory=list)
    survivors: list = field(default_factory=list)
    traceback: str = ""

    @property
    def problems(self) -> list[str]:
        found = []
        if self.exit_code not in (0, 1):
            found.append(f"hawk tune exited {self.exit_code}")
        if self.traceback:
            found.append(f"a traceback: {self.traceback}")
        if self.unclassified:
            found.append(f"{self.unclassified} proposals without a known outcome")
        if self.outcomes.get("internal_error"):
            found.append(f"{self.outcomes['internal_error']} internal errors")
        if self.files_outside:
            found.append(f"files written outside the sandbox: {self.files_outside[:5]}")
        if self.connections:
            found.append(f"{self.connections} connections to the canaries")
        if self.sockets_seen:
            found.append(f"internet sockets held: {self.sockets_seen[:5]}")
        if self.survivors:
            found.append(f"processes outlived the tuner: {self.survivors}")
        if self.peak_rss_mb > MEMORY_BOUND_MB:
            found.append(f"tuner RSS {self.peak_rss_mb:.0f} MB over the {MEMORY_BOUND_MB} MB bound")
        return found

    def to_dict(self) -> dict:
        return {"proposals": self.proposals, "exit_code": self.exit_code, "wall_s": round(self.wall_s, 1),
                "peak_rss_mb": round(self.peak_rss_mb, 1), "memory_bound_mb": MEMORY_BOUND_MB,
                "outcomes": dict(self.outcomes.most_common()),
                "by_class": {k: dict(v.most_common()) for k, v in sorted(self.by_class.items())},
                "unclassified": self.unclassified, "files_outside": self.files_outside,
                "connections": self.connections, "sockets_seen": self.sockets_seen,
                "survivors": self.survivors, "problems": self.problems}


def real_texts(target: str = TARGET, suite: str = SUITE) -> dict[str, list[str]]:
    """What a mutation starts from, per workload of the suite: the offline proposer's
    programs and the reference kernel as TVMScript."""
    from hawk.bench.reference import reference_kernel
    from hawk.bench.suites import load_suite
    from hawk.npu import load_spec, register_intrinsics
    from hawk.propose.offline import OfflineProposer
    from hawk.propose.prompt import Task

    spec = load_spec(target)
    register_intrinsics(spec)
    texts = {}
    for wl in load_suite(suite):
        task = Task.for_target(wl, spec, None, ())
        proposals = [OfflineProposer().propose(task, seed=0, iteration=i) for i in range(3)]
        texts[wl.name] = [p.text for p in proposals if p.text] + [reference_kernel(wl, spec).script()]
    return texts


class _Listeners:
    """A TCP port and a unix socket that count every connection made to them."""

    def __init__(self, unix_path: Path):
        self.connections = 0
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(str(unix_path))
        self.unix.listen()
        self.port = self.tcp.getsockname()[1]
        for s in (self.tcp, self.unix):
            threading.Thread(target=self._accept, args=(s,), daemon=True).start()

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        for s in (self.tcp, self.unix):
            s.close()


def run_campaign(n: int, work: Path, *, seed: int = 0, exec_timeout: float = 5.0, target: str = TARGET,
                 suite: str = SUITE, time_limit: float = 3600.0) -> CampaignResult:
    """Draw ``n`` proposals (rounded up to whole budgets per workload) and tune with them."""
    work = Path(work)
    dirs = {name: work / name for name in ("run", "home", "tmp", "canary")}
    for d in dirs.values():
        d.mkdir(parents=True, exist_ok=True)
    listeners = _Listeners(work / "canary.sock")  # beside the canary directory, which must stay empty
    canary = Canary(dirs["canary"], listeners.port, work / "canary.sock", "hawkfuzz" + secrets.token_hex(4))

    bases = real_texts(target, suite)
    budget = math.ceil(n / len(bases))
    total = budget * len(bases)
    # in the order the tuner asks: workload by workload, each from its own real texts
    drawn = [p for i, texts in enumerate(bases.values()) for p in draw(budget, texts, canary, seed=seed + i)]
    transcript = work / "transcript.jsonl"
    transcript.write_text("".join(json.dumps({"reply": {"text": p.answer}}) + "\n" for p in drawn))

    report = dirs["run"] / "report.json"
    env = {**os.environ, "HOME": str(dirs["home"]), "TMPDIR": str(dirs["tmp"])}
    cmd = [sys.executable, "-m", "hawk.cli", "tune", "--target", target, "--suite", suite, "--budget", str(budget),
           "--llm", f"replay:{transcript}", "--exec-timeout", str(exec_timeout), "--json", str(report), "-q"]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=dirs["run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    stderr_tail: list[bytes] = []
    threading.Thread(target=_tail, args=(proc.stderr, stderr_tail), daemon=True).start()
    peak, seen, sockets_seen = _watch(proc, time_limit)
    wall = time.perf_counter() - start
    listeners.close()

    result = CampaignResult(total, proc.returncode, wall, peak / 2**20, connections=listeners.connections,
                            sockets_seen=sockets_seen)
    err = b"".join(stderr_tail).decode(errors="replace")
    if "Traceback" in err:
        result.traceback = err[err.index("Traceback"):][-2000:]
    _classify(result, report, drawn)
    result.files_outside = _files(dirs["canary"]) + _files(dirs["home"]) + _files(dirs["tmp"]) + [
        p for p in _files(dirs["run"]) if p != str(report)] + _token_files(canary.token)
    result.survivors = [f"{p.pid} {command}" for p, command in seen if _alive(p)]
    return result


def _tail(stream, out: list[bytes], keep: int = 1 << 16) -> None:
    for line in stream:
        out.append(line)
        while sum(map(len, out)) > keep and len(out) > 1:
            out.pop(0)


def _watch(proc: subprocess.Popen, time_limit: float):
    """Peak RSS of the tuner, every process of its tree seen (with its command), and the
    internet sockets any held."""
    peak, seen, sockets = 0, {}, []
    me = psutil.Process(proc.pid)
    deadline = time.monotonic() + time_limit
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            break
        try:
            peak = max(peak, me.memory_info().rss)
            for p in [me, *me.children(recursive=True)]:
                seen.setdefault(p.pid, (p, " ".join(p.cmdline()[:4])))
                sockets += [f"{p.pid}: {c.laddr} -> {c.raddr}" for c in p.net_connections(kind="inet")]
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
        time.sleep(0.05)
    proc.wait()
    return peak, list(seen.values()), sockets


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _classify(result: CampaignResult, report: Path, drawn) -> None:
    try:
        entries = json.loads(report.read_text())["workloads"]
    except (OSError, ValueError, KeyError) as err:
        result.traceback = result.traceback or f"no report: {err}"
        result.unclassified = result.proposals
        return
    history = [h for e in entries for h in e["fault_history"]]
    result.unclassified = result.proposals - len(history)
    for proposal, h in zip(drawn, history):
        outcome = h["outcome"] if h["outcome"] in OUTCOMES else "?"
        result.unclassified += outcome == "?"
        result.outcomes[outcome] += 1
        result.by_class.setdefault(proposal.kind, Counter())[outcome] += 1


def _files(root: Path) -> list[str]:
    return [str(p) for p in root.rglob("*")]


def _token_files(token: str) -> list[str]:
    """Anything a payload named, wherever a confused path could have put it."""
    places = {Path("/tmp"), Path.cwd(), Path.home()}
    return [str(p) for d in places if d.is_dir() for p in d.glob(f"*{token}*")]
