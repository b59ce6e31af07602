"""The sandbox children hold by OS mechanisms alone, as root and as an ordinary user."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
import tvm

from hawk.propose.sandbox import _parse_unfiltered
from hawk.sandbox import Limits, SandboxProcess
from hawk.sandbox.channel import ChannelError, ChannelTimeout, encode, read_message
from hawk.sandbox.confine import landlock_abi

from .payloads import extern_kernel

HERE = Path(__file__).parent
PROBE = HERE / "escape_probe.py"
SECRET = "sk-canary-" + uuid.uuid4().hex


def _expected_layers(root: bool) -> set[str]:
    layers = {"rlimits", "chroot", "no_new_privs", "seccomp", "netns" if root else "userns+netns"}
    if root:
        layers.add("uid=nobody")
    if landlock_abi():
        layers.add(f"landlock(abi {landlock_abi()})")
    return layers


def _run_probe(argv_prefix: list[str], env: dict) -> dict:
    out = subprocess.run([*argv_prefix, str(PROBE)], capture_output=True, text=True, env=env,
                         timeout=600, cwd=HERE.parent.parent)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def _check(report: dict) -> None:
    root = report["uid"] == 0
    for child in ("host", "parse"):
        assert _expected_layers(root) <= set(report[child]["layers"]), report[child]
    assert not any(report["escaped"].values()), {k: v for k, v in report["escaped"].items() if v}
    assert len(report["escaped"]) >= 18


def test_nothing_escapes_when_hawk_runs_as_this_user():
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HAWK_LLM_API_KEY": SECRET}
    _check(_run_probe([sys.executable], env))


_AS_NOBODY = """
set -e
# Give nobody a way to the interpreter (it lives under root's private home here), privately.
if [ -d /root ] && [ "$(stat -c %a /root)" = 700 ]; then
  keep=$(mktemp -d)
  for d in /root/.pyenv /root/.local; do
    [ -d "$d" ] && mkdir -p "$keep/$(basename $d)" && mount --bind "$d" "$keep/$(basename $d)"
  done
  mount -t tmpfs -o mode=755 tmpfs /root
  for d in "$keep"/.??*; do mkdir -p "/root/$(basename $d)" && mount --move "$d" "/root/$(basename $d)"; done
fi
exec setpriv --reuid=65534 --regid=65534 --clear-groups "$@"
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="already covered: Hawk runs as an ordinary user here")
def test_nothing_escapes_when_hawk_runs_as_an_ordinary_user():
    if not (shutil.which("unshare") and shutil.which("setpriv")):
        pytest.skip("needs unshare and setpriv (util-linux) to become an ordinary user")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "HAWK_LLM_API_KEY": SECRET}
    prefix = ["unshare", "-m", "--propagation", "private", "sh", "-c", _AS_NOBODY, "sh", sys.executable]
    report = _run_probe(prefix, env)
    assert report["uid"] == 65534
    _check(report)


def test_the_payloads_do_escape_without_the_sandbox(tmp_path):
    """Control: the host payload really writes a file when run unconfined, so the probe's
    'nothing escaped' means something."""
    target = tmp_path / "written"
    lib = tvm.compile(extern_kernel("creat", str(target), 0o644), target="llvm")
    out = tvm.runtime.tensor(np.zeros(1, "int64"))
    lib["main"](out)
    assert target.exists()


# --- bounds on what comes back --------------------------------------------------------------


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_a_child_flooding_its_output_costs_the_parent_a_bounded_buffer():
    before = _maxrss_mb()
    # 1 GiB to stderr, then a forged reply on every descriptor: a length of 2**62.
    flood = ('[__import__("os").write(2, b"x" * (1 << 24)) for _ in [0] * 64] and '
             '[__import__("os").write(fd, b"\\x40" * 8) for fd in range(3, 12)] and 4')
    flood = flood.replace("[__import__", "len([__import__").replace("] and", "]) and")
    res = _parse_unfiltered(f'''
@T.prim_func(s_tir=True)
def main(A: T.Buffer((4,), "float32")):
    for i in range({flood}):
        A[i] = T.float32(0)
''', audit=False, timeout_s=60)
    assert res.error is not None
    assert _maxrss_mb() - before < 200


def test_channel_refuses_oversized_garbage_and_truncated_messages():
    r, w = os.pipe()
    try:
        parts = encode({"x": 1}, [b"abc"])
        os.write(w, b"".join(bytes(p) for p in parts))
        header, blobs = read_message(r, max_header=100, max_blobs=3)
        assert header["x"] == 1 and blobs == [b"abc"]
        os.write(w, b"".join(bytes(p) for p in parts))
        with pytest.raises(ChannelError, match="payload"):
            read_message(r, max_header=100, max_blobs=2)
        os.write(w, (1 << 40).to_bytes(8, "big"))
        with pytest.raises(ChannelError, match="header of"):
            read_message(r, max_header=1 << 20, max_blobs=0)
        os.write(w, (5).to_bytes(8, "big") + b"\xff\xfe{]x")
        with pytest.raises(ChannelError, match="unreadable"):
            read_message(r, max_header=100, max_blobs=0)
        os.write(w, (50).to_bytes(8, "big") + b"{")
        with pytest.raises(ChannelTimeout):
            read_message(r, max_header=100, max_blobs=0, deadline=0)
    finally:
        os.close(w)
        os.close(r)
    r, w = os.pipe()
    os.write(w, (50).to_bytes(8, "big") + b"{")
    os.close(w)
    with pytest.raises(ChannelError, match="closed"):
        read_message(r, max_header=100, max_blobs=0)
    os.close(r)


_SPIN_AND_REPORT = """
import sys, tvm
from tvm.script import tirx as T
from hawk.runtime import HostWorker

@T.prim_func(s_tir=True)
def spin(X: T.Buffer((1,), "int64")):
    for i in range(1 << 62):
        X[0] = X[0] + T.int64(1)

w = HostWorker()
w.confinement
print(w._child.pid, flush=True)
w.run(tvm.ir.save_json(tvm.IRModule({"main": spin})), [[]], [((1,), "int64")], 600)
"""


def test_a_busy_child_dies_with_a_killed_parent(tmp_path):
    script = tmp_path / "spin.py"  # TVMScript reads its source: not a -c string
    script.write_text(_SPIN_AND_REPORT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    for _ in range(50):
        if not Path(f"/proc/{child}").exists():
            break
        time.sleep(0.1)
    assert not Path(f"/proc/{child}").exists()
    # the killed parent could not remove the child's directory; the next sandbox start does
    left = list(Path(tempfile.gettempdir()).glob(f"hawk-sandbox-{parent.pid}-*"))
    assert left
    fresh = SandboxProcess("parse", limits=Limits())
    fresh.start()
    fresh.close()
    assert not any(p.exists() for p in left)
