"""Try every way out of the sandbox children and report, as JSON, what got through.

Run as a script (``python escape_probe.py``) so that the tests can start it as root or as
an ordinary user, with a secret in its initial environment (what /proc/PID/environ shows).
It attacks both children with their guards beyond the OS switched off: TVMScript parsed
without the prefilter or the audit hook, kernels run on the host without verify.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import tempfile
import uuid
from pathlib import Path

import tvm

sys.path.insert(0, str(Path(__file__).parent))
from payloads import extern_kernel  # noqa: E402 - run as a script, beside it

from hawk.propose.sandbox import _parse_unfiltered  # noqa: E402
from hawk.runtime import HostWorker  # noqa: E402

SECRET_VAR = "HAWK_LLM_API_KEY"


def _listener() -> socket.socket:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen()
    srv.settimeout(0.5)
    return srv


def _accepted(srv: socket.socket) -> bool:
    try:
        conn, _ = srv.accept()
    except TimeoutError:
        return False
    conn.close()
    return True


def _parse_payload(expr: str) -> str:
    """Evaluate ``expr`` as a loop bound in the parse child; returns the child's answer."""
    text = f'''
@T.prim_func(s_tir=True)
def main(A: T.Buffer((4,), "float32")):
    for i in range({expr}):
        A[i] = T.float32(0)
'''
    res = _parse_unfiltered(text, audit=False)
    return res.error.message if res.error else "parsed"


def probe() -> dict:
    secret = os.environ.get(SECRET_VAR, "")
    outside = Path(tempfile.gettempdir())
    canary = lambda: outside / f"hawk-canary-{uuid.uuid4().hex}"  # noqa: E731
    escaped: dict[str, bool] = {}

    worker = HostWorker()
    report = {"uid": os.geteuid(), "host": worker.confinement}

    def host(func, *args) -> int:
        res = worker.run(tvm.ir.save_json(extern_kernel(func, *args)), [[]], [((1,), "int64")], 60)
        if "error" in res:
            return -1
        value = int(res["outputs"][0][0][0])
        return value - (1 << 32) if value >= 1 << 31 else value  # C int results

    path = canary()
    host("system", f"id > {path}")
    escaped["host: system() writes a file"] = path.exists()
    path = canary()
    escaped["host: creat() outside"] = host("creat", str(path), 0o644) >= 0 or path.exists()
    escaped["host: open('/etc/passwd')"] = host("open", "/etc/passwd", 0) >= 0
    escaped["host: open('/proc/self/environ')"] = host("open", "/proc/self/environ", 0) >= 0
    escaped["host: socket()"] = host("socket", 2, 1, 0) >= 0
    escaped["host: fork()"] = host("fork") > 0
    escaped["host: signal the parent"] = host("kill", os.getpid(), 0) == 0
    escaped["host: ptrace the parent"] = host("ptrace", 16, os.getpid(), 0, 0) == 0  # PTRACE_ATTACH
    escaped["host: chdir out"] = host("chdir", "..") == 0 and host("open", "etc/passwd", 0) >= 0
    worker.close()

    parse = HostlessParse()
    path = canary()
    parse(f'__import__("pathlib").Path("{path}").write_text("x") + 4')
    escaped["parse: write a file"] = path.exists()
    answer = parse('len(__import__("pathlib").Path("/etc/passwd").read_text()) + "x"')
    escaped["parse: read /etc/passwd"] = "root:" in answer or "TypeError" in answer
    answer = parse(f'len(__import__("pathlib").Path("/proc/{os.getpid()}/environ").read_bytes()) + "x"')
    escaped["parse: read the parent's environ"] = "TypeError" in answer
    answer = parse(f'__import__("pathlib").Path("/proc/{os.getpid()}/environ").read_bytes() + 1')
    escaped["parse: parent's secret in an error"] = bool(secret) and secret in answer
    answer = parse(f'__import__("os").environ["{SECRET_VAR}"] + 1')
    escaped["parse: secret in its own environment"] = bool(secret) and secret in answer
    path = canary()
    parse(f'__import__("tvm").get_global_func("runtime.SaveParamsToFile")({{}}, "{path}") or 4')
    escaped["parse: TVM global function writes a file"] = path.exists()
    srv = _listener()
    port = srv.getsockname()[1]
    parse(f'__import__("tvm").get_global_func("rpc.Connect")("127.0.0.1", {port}, "") or 4')
    escaped["parse: TVM rpc.Connect to a local port"] = _accepted(srv)
    parse(f'__import__("socket").create_connection(("127.0.0.1", {port})) and 4')
    escaped["parse: socket to a local port"] = _accepted(srv)
    srv.close()
    path = canary()
    parse(f'__import__("os").system("id > {path}") + 4')
    escaped["parse: os.system"] = path.exists()
    report["parse"] = parse.confinement
    report["escaped"] = escaped
    return report


class HostlessParse:
    """Parse payloads, remembering the parse child's confinement report."""

    confinement: dict = {}

    def __call__(self, expr: str) -> str:
        from hawk.sandbox import Limits, SandboxProcess

        if not self.confinement:
            child = SandboxProcess("parse", limits=Limits())
            self.confinement = child.start()
            child.close()
        return _parse_payload(expr)


if __name__ == "__main__":
    print(json.dumps(probe()))
