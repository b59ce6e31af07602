"""Entry point of a sandbox child: ``python -I -B -m hawk.sandbox.child ROLE LIMITS``.

Order matters: limits and the network namespace while single-threaded; the role's trusted
start-up (imports, warm-up) while files are still readable; then the lock-down, the
confinement report as the first message, and only then the requests, one reply each.
stdout is kept private for replies (fd 1 becomes stderr), so nothing a payload prints can
forge or corrupt a reply.

Roles are modules with ``prepare()`` (trusted start-up), optionally ``arm(options)`` (extra
guards once locked down) and ``handle(header, blobs) -> (header, blobs)``.
"""

from __future__ import annotations

import importlib
import json
import os
import resource
import sys

from .channel import ChannelError, read_message, write_message
from .confine import Confinement, isolate_early, lock_down

ROLES = {"parse": "hawk.propose._sandbox_child", "host": "hawk.runtime.worker"}
_MAX_REQUEST = 1 << 34  # the parent is trusted; this only stops a corrupt length


def main() -> None:
    role, limits = sys.argv[1], json.loads(sys.argv[2])
    conf = Confinement()
    was_root, parent_pid = os.geteuid() == 0, os.getppid()
    isolate_early(conf, cpu_s=limits["cpu_s"], memory_mb=limits["memory_mb"],
                  nofile=limits["nofile"], fsize_mb=limits["fsize_mb"])
    reply_fd = os.dup(1)
    os.dup2(2, 1)
    module = importlib.import_module(ROLES[role])
    module.prepare()
    lock_down(conf, limits["workdir"], was_root=was_root, parent_pid=parent_pid)
    if hasattr(module, "arm"):
        module.arm(limits)
    write_message(reply_fd, {"confinement": conf.to_dict()})
    while True:
        try:
            header, blobs = read_message(0, max_header=_MAX_REQUEST, max_blobs=_MAX_REQUEST)
        except ChannelError:
            return  # the parent closed the channel
        _renew_cpu_budget(header.get("cpu_s"))
        try:
            reply, out = module.handle(header, blobs)
        except BaseException as err:  # noqa: BLE001 - MemoryError, RecursionError...: all are answers
            reply, out = {"error": f"{type(err).__name__}: {str(err)[:2000]}"}, []
        write_message(reply_fd, reply, out)


def _renew_cpu_budget(seconds) -> None:
    """A long-lived child gets its CPU backstop per request, not per lifetime."""
    if not isinstance(seconds, int) or seconds <= 0:
        return
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime)
    hard = resource.getrlimit(resource.RLIMIT_CPU)[1]
    soft = spent + seconds
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


if __name__ == "__main__":
    main()
