"""Sandbox child for hawk.propose.sandbox: parse one TVMScript text from stdin.

Run only as ``python -I -B _sandbox_child.py CPU_S MEMORY_MB NOFILE [--no-audit]`` by the
parent. Order matters here:

0. set CPU, address-space, file-size (0: no file can be written), core and fd limits, before
   anything else is imported;
1. import TVM and warm the parser up while still trusted (the text is not read yet);
2. forbid new processes (RLIMIT_NPROC 0) and, when root, become ``nobody`` -- root ignores
   RLIMIT_NPROC, and nobody cannot reach /root, other users' files or the interpreter's
   own install to import anything new;
3. install an audit hook refusing writes, process creation, sockets and ctypes
   (``--no-audit`` leaves it out, so tests can prove the OS limits hold on their own);
4. read the text and parse it; reply with one JSON object on the saved stdout:
   ``{"module": <tvm.ir.save_json>}`` or ``{"error": msg, "line": n, "col": n}``.

Deliberately imports nothing from hawk: the child needs TVM and the standard library only.
"""

import json
import os
import re
import resource
import sys

_NOBODY = 65534
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


def _limit(cpu_s, memory_mb, nofile):
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # CPython ignores SIGXFSZ: writes fail EFBIG
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))


def _drop_privileges():
    # Not set with the others: importing TVM starts a native thread, which counts.
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    if os.getuid() == 0:
        os.setgroups([])
        os.setgid(_NOBODY)
        os.setuid(_NOBODY)  # also clears the saved uid: there is no way back


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


def main():
    _limit(*(int(a) for a in sys.argv[1:4]))
    # The result goes to a private dup of stdout; fd 1 becomes stderr, so nothing printed
    # while parsing can forge or corrupt the reply.
    reply_to = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    import tvm
    import tvm.script

    tvm.script.from_source(_WARMUP)  # loads the lazily imported parser/dialect modules now
    _drop_privileges()
    if "--no-audit" not in sys.argv:
        sys.addaudithook(_audit)
    text = sys.stdin.buffer.read().decode("utf-8", "replace")
    try:
        obj = tvm.script.from_source(text)
        if not isinstance(obj, (tvm.IRModule, tvm.tirx.PrimFunc)):
            reply = {
                "error": f"TVMScript parsed to a {type(obj).__name__}, not a PrimFunc or IRModule"
            }
        else:
            reply = {"module": tvm.ir.save_json(obj)}
    except tvm.error.DiagnosticError as e:
        reply = _diagnostic(e)
    except BaseException as e:  # noqa: BLE001 - MemoryError, RecursionError, ...: all are answers
        reply = {"error": f"{type(e).__name__}: {str(e)[:2000]}"}
    reply_to.write(json.dumps(reply))
    reply_to.flush()


if __name__ == "__main__":
    main()
