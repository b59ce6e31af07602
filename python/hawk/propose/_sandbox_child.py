"""The ``parse`` role of a sandbox child (hawk.sandbox.child): parse one TVMScript text.

``prepare`` imports TVM and warms the parser up while still trusted; the child then locks
itself down (chroot, nobody, Landlock, seccomp, no network); ``arm`` adds an audit hook
as a last Python-level layer; ``handle`` parses the text of a request and answers
``{"module": <tvm.ir.save_json>}`` or ``{"error": msg, "line": n, "col": n}``.
"""

from __future__ import annotations

import os
import re
import sys

_WARMUP = """
@I.ir_module
class Module:
    @T.prim_func(s_tir=True)
    def main(A: T.Buffer((4, 4), "float32"), B: T.Buffer((4, 4), "float32")):
        for i, j in T.grid(4, 4):
            with T.sblock("B"):
                vi, vj = T.axis.remap("SS", [i, j])
                T.reads(A[vi, vj])
                T.writes(B[vi, vj])
                B[vi, vj] = T.max(A[vi, vj], T.float32(0))
"""
# Audit events refused once hostile text runs (prefixes). Imports and eval/exec/compile stay
# allowed: the TVMScript parser itself needs them.
_DENIED = (
    "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.fork", "os.forkpty", "subprocess.",
    "pty.", "os.kill", "os.killpg", "os.remove", "os.unlink", "os.rmdir", "os.rename", "os.replace",
    "os.mkdir", "os.link", "os.symlink", "os.truncate", "os.chmod", "os.chown", "os.utime",
    "os.mkfifo", "os.mknod", "os.putenv", "os.unsetenv", "os.setxattr", "os.removexattr",
    "shutil.", "socket.", "ctypes.", "sys.addaudithook", "sys.settrace", "sys.setprofile",
    "webbrowser.",
)  # fmt: skip
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_DIAG_POS = re.compile(r"-->\s*<str>:(\d+):(\d+)")


def _audit(event, args):
    if event.startswith(_DENIED):
        raise PermissionError(f"sandbox: {event} is not allowed")
    if event == "open":  # args: path, mode (None for os.open), flags
        mode, flags = args[1], args[2] or 0
        if (isinstance(mode, str) and any(c in mode for c in "wax+")) or flags & _WRITE_FLAGS:
            raise PermissionError("sandbox: opening a file for writing is not allowed")


def prepare() -> None:
    import tvm.script

    tvm.script.from_source(_WARMUP)  # loads the lazily imported parser/dialect modules now


def arm(options: dict) -> None:
    if options.get("audit", True):  # tests turn it off to prove the OS layers alone
        sys.addaudithook(_audit)


def _diagnostic(err):
    """Split a TVMScript diagnostic into message, line, col (positions are 1-based)."""
    text = str(err)
    pos = _DIAG_POS.search(text)
    message = text[: pos.start()] if pos else text
    message = message.strip().removeprefix("error:").strip()
    if not message:  # e.g. a MemoryError under the address-space limit has no text
        cause = err.__cause__ or err.__context__
        message = f"{type(cause or err).__name__} while evaluating this expression"
    reply = {"error": message[:2000]}
    if pos:
        reply.update(line=int(pos.group(1)), col=int(pos.group(2)))
    return reply


def handle(header: dict, blobs: list[bytes]) -> tuple[dict, list]:
    import tvm
    import tvm.script

    text = blobs[0].decode("utf-8", "replace")
    try:
        obj = tvm.script.from_source(text)
        if not isinstance(obj, (tvm.IRModule, tvm.tirx.PrimFunc)):
            reply = {"error": f"TVMScript parsed to a {type(obj).__name__}, not a PrimFunc or IRModule"}
        else:
            reply = {"module": tvm.ir.save_json(obj)}
    except tvm.error.DiagnosticError as e:
        reply = _diagnostic(e)
    return reply, []
