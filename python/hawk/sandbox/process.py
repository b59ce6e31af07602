"""The parent's side of a sandbox child: start it confined, talk to it within bounds, kill it.

A child is ``python -I -B -m hawk.sandbox.child ROLE LIMITS`` with a scrubbed environment,
a private empty working directory (owned by ``nobody`` when Hawk runs as root) and its own
process group. It confines itself (:mod:`hawk.sandbox.confine`) after its trusted start-up
and says which layers hold in its first message; every later reply is read with a size
bound and a deadline, and its stderr is drained into a bounded tail, so no child output
can grow the parent.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
import weakref
from dataclasses import dataclass

from .channel import ChannelError, ChannelTimeout, read_message, write_message
from .confine import NOBODY

STDERR_TAIL_BYTES = 16 << 10
HELLO_BYTES = 64 << 10


@dataclass(frozen=True)
class Limits:
    """Resource limits of a child; CPU time is a backstop behind the parent's deadlines."""

    cpu_s: int = 60
    memory_mb: int = 2048
    nofile: int = 32
    fsize_mb: int = 1

    def to_dict(self) -> dict:
        return {"cpu_s": self.cpu_s, "memory_mb": self.memory_mb, "nofile": self.nofile,
                "fsize_mb": self.fsize_mb}


class SandboxError(Exception):
    """The child could not be started, died, timed out or answered out of bounds."""


class SandboxProcess:
    """One confined child serving requests of its role until closed."""

    def __init__(self, role: str, *, limits: Limits, startup_timeout: float = 120.0,
                 options: dict | None = None):
        self.role = role
        self.limits = limits
        self.options = options or {}
        self.startup_timeout = startup_timeout
        self.confinement: dict = {}
        self._proc: subprocess.Popen | None = None
        self._workdir: str | None = None
        self._tail: collections.deque[bytes] = collections.deque()
        self._tail_lock = threading.Lock()
        _open.add(self)

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self) -> dict:
        """Start the child; returns its confinement report."""
        self.close()
        remove_stale_workdirs()
        self._workdir = tempfile.mkdtemp(prefix=f"{_WORKDIR_PREFIX}{os.getpid()}-{self.role}-")
        if os.geteuid() == 0:  # the child becomes nobody and must still own its directory
            os.chown(self._workdir, NOBODY, NOBODY)
        env = {"PATH": "/usr/bin:/bin", "HOME": self._workdir, "TMPDIR": self._workdir,
               "LANG": "C.UTF-8"}
        argv = [sys.executable, "-I", "-B", "-m", "hawk.sandbox.child", self.role,
                json.dumps({**self.options, **self.limits.to_dict(), "workdir": self._workdir})]
        try:
            self._proc = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                cwd=self._workdir, env=env, close_fds=True, process_group=0, bufsize=0,
            )  # fmt: skip
        except OSError as err:
            self.close()
            raise SandboxError(f"could not start the {self.role} sandbox: {err}") from None
        self._tail.clear()
        threading.Thread(target=self._drain, args=(self._proc.stderr,), daemon=True).start()
        try:
            hello, _ = self._read(time.monotonic() + self.startup_timeout, HELLO_BYTES, 0)
        except SandboxError:
            self.close()
            raise
        self.confinement = hello.get("confinement") or {}
        _warn_missing(self.role, self.confinement.get("missing") or {})
        return self.confinement

    def request(self, header: dict, blobs=(), *, timeout: float, max_header: int,
                max_blobs: int) -> tuple[dict, list[bytes]]:
        """Send one request and read its reply; any failure kills the child."""
        if not self.alive:
            self.start()
        try:
            write_message(self._proc.stdin.fileno(), header, blobs)
        except OSError as err:
            self.close()
            raise SandboxError(f"the {self.role} sandbox is gone: {err}") from None
        return self._read(time.monotonic() + timeout, max_header, max_blobs)

    def _read(self, deadline: float, max_header: int, max_blobs: int):
        try:
            return read_message(self._proc.stdout.fileno(), max_header=max_header,
                                max_blobs=max_blobs, deadline=deadline)
        except ChannelTimeout:
            self.close()
            raise SandboxTimeout("no reply in time") from None
        except (ChannelError, OSError) as err:
            died = self._wait_exit()
            self.close()
            raise SandboxError(f"{died or err}{self._tail_text()}") from None

    def _wait_exit(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=2)
        code = self._proc.returncode
        if code is None:
            return ""
        if code < 0:
            sig = signal.Signals(-code)
            why = {signal.SIGXCPU: "CPU time limit exceeded",
                   signal.SIGKILL: "killed (CPU or memory limit)"}.get(sig, "crashed")  # fmt: skip
            return f"the {self.role} sandbox {why} ({sig.name})"
        return f"the {self.role} sandbox exited with status {code}"

    def _drain(self, pipe) -> None:
        """Keep only the last STDERR_TAIL_BYTES of everything the child writes to stderr."""
        kept = 0
        while chunk := pipe.read(65536):
            with self._tail_lock:
                self._tail.append(chunk)
                kept += len(chunk)
                while kept - len(self._tail[0]) >= STDERR_TAIL_BYTES:
                    kept -= len(self._tail.popleft())

    def stderr_tail(self, limit: int = 800) -> str:
        with self._tail_lock:
            data = b"".join(self._tail)
        return data.decode(errors="replace").strip()[-limit:]

    def _tail_text(self) -> str:
        time.sleep(0.05)  # let the drain thread catch the last words
        tail = self.stderr_tail()
        return f": {tail}" if tail else ""

    def close(self) -> None:
        """Kill the child's whole process group and remove its directory."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError):
                    pipe.close()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


_warned: set[tuple[str, str]] = set()
_WORKDIR_PREFIX = "hawk-sandbox-"
_open: weakref.WeakSet[SandboxProcess] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    """A tuner that exits without closing its workers leaves no child or directory behind."""
    for proc in list(_open):
        proc.close()


def remove_stale_workdirs() -> None:
    """Directories left by a parent that was killed (it could not clean up after itself)."""
    base = tempfile.gettempdir()
    for name in os.listdir(base):
        if not name.startswith(_WORKDIR_PREFIX):
            continue
        pid = name[len(_WORKDIR_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _warn_missing(role: str, missing: dict) -> None:
    """Say once per process which layer this machine does not give, and why."""
    for layer, why in sorted(missing.items()):
        if (role, layer) not in _warned:
            _warned.add((role, layer))
            warnings.warn(f"hawk sandbox ({role}): no {layer} on this machine ({why}); "
                          "the other layers still hold", RuntimeWarning, stacklevel=3)


class SandboxTimeout(SandboxError):
    """The child gave no complete reply before the deadline (it has been killed)."""
