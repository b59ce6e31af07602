"""OS confinement of a sandbox child: what an escaped payload still cannot do.

Called by the child itself, in two steps around its trusted start-up (importing TVM and
warming it up reads the interpreter's own files, so the filesystem closes only after it):

1. :func:`isolate_early`, first thing, while the process has one thread: resource limits
   and a private network namespace (with a user namespace when not root), so that every
   thread created later -- TVM's pool included -- has no network at all;
2. :func:`lock_down`, once the trusted imports are done and before any hostile byte is
   read: chroot into the private empty working directory (all threads share it), drop to
   ``nobody`` when root, no new privileges, Landlock (no filesystem access outside the
   directory, no TCP, no abstract unix sockets or signals outside the sandbox) and a
   seccomp filter on every thread (no sockets, no new processes or programs, no ptrace,
   mounts, namespaces, keyrings, bpf, io_uring).

Each layer is applied where the kernel offers it and reported in a :class:`Confinement`,
so the parent knows -- and tests check -- what actually holds. Python audit hooks are not
one of them: native code (TVM's own global functions) never passes through them.
"""

from __future__ import annotations

import ctypes
import os
import platform
import resource
import struct
from dataclasses import dataclass, field

NOBODY = 65534

_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000
_PR_SET_PDEATHSIG = 1
_PR_SET_NO_NEW_PRIVS = 38

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@dataclass
class Confinement:
    """The layers a child managed to apply, and why any is missing."""

    layers: list[str] = field(default_factory=list)
    missing: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"layers": list(self.layers), "missing": dict(self.missing)}


def _errno_text() -> str:
    return os.strerror(ctypes.get_errno())


def isolate_early(conf: Confinement, *, cpu_s: int, memory_mb: int, nofile: int, fsize_mb: int) -> None:
    """Resource limits and a private network namespace; call while single-threaded."""
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 1))  # SIGXCPU, then SIGKILL
    resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
    # CPython ignores SIGXFSZ, so an oversized write fails with EFBIG instead of killing.
    resource.setrlimit(resource.RLIMIT_FSIZE, (fsize_mb << 20, fsize_mb << 20))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
    conf.layers.append("rlimits")
    flags = _CLONE_NEWNET if os.geteuid() == 0 else _CLONE_NEWUSER | _CLONE_NEWNET
    if _libc.unshare(flags) == 0:
        conf.layers.append("netns" if os.geteuid() == 0 or flags == _CLONE_NEWNET else "userns+netns")
    else:
        conf.missing["netns"] = f"unshare: {_errno_text()}"


def lock_down(conf: Confinement, workdir: str, *, was_root: bool, parent_pid: int) -> None:
    """Close the filesystem, privileges and syscalls; call before reading hostile input."""
    try:
        os.chroot(workdir)
        os.chdir("/")
        conf.layers.append("chroot")
    except OSError as err:
        conf.missing["chroot"] = str(err)
        os.chdir(workdir)
    if was_root:
        os.setgroups([])
        os.setgid(NOBODY)
        os.setuid(NOBODY)  # also clears the saved uid: there is no way back
        conf.layers.append("uid=nobody")
    # Die with the parent (a killed tuner leaves no busy child behind). Set after the uid
    # change, which clears it; a parent already gone shows as a new parent pid.
    _libc.prctl(_PR_SET_PDEATHSIG, 9, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)
    if _libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        conf.missing["no_new_privs"] = _errno_text()
        return  # Landlock and seccomp both require it
    conf.layers.append("no_new_privs")
    _landlock(conf, "/" if "chroot" in conf.layers else workdir)
    _seccomp(conf)


# --- Landlock ---------------------------------------------------------------------------------

_SYS_LANDLOCK_CREATE_RULESET, _SYS_LANDLOCK_ADD_RULE, _SYS_LANDLOCK_RESTRICT_SELF = 444, 445, 446
_LANDLOCK_CREATE_RULESET_VERSION = 1
_LANDLOCK_RULE_PATH_BENEATH = 1
# Filesystem rights by the ABI that introduced them (bit positions of LANDLOCK_ACCESS_FS_*).
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_FS_EXECUTE, _FS_MAKE_CHAR, _FS_MAKE_BLOCK, _FS_IOCTL_DEV = 1 << 0, 1 << 6, 1 << 11, 1 << 15
_NET_BIND_TCP, _NET_CONNECT_TCP = 1 << 0, 1 << 1
_SCOPE_ABSTRACT_UNIX, _SCOPE_SIGNAL = 1 << 0, 1 << 1


def landlock_abi() -> int:
    abi = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, None, 0, _LANDLOCK_CREATE_RULESET_VERSION)
    return max(0, abi)


def _landlock(conf: Confinement, allowed_dir: str) -> None:
    abi = landlock_abi()
    if abi < 1:
        conf.missing["landlock"] = "not supported by this kernel"
        return
    fs = _FS_RIGHTS_BY_ABI[max(a for a in _FS_RIGHTS_BY_ABI if a <= abi)]
    fields = [fs]
    if abi >= 4:
        fields.append(_NET_BIND_TCP | _NET_CONNECT_TCP)  # handled, and no rule allows any port
    if abi >= 6:
        fields.append(_SCOPE_ABSTRACT_UNIX | _SCOPE_SIGNAL)
    attr = struct.pack(f"{len(fields)}Q", *fields)
    ruleset = _libc.syscall(_SYS_LANDLOCK_CREATE_RULESET, attr, len(attr), 0)
    if ruleset < 0:
        conf.missing["landlock"] = f"create_ruleset: {_errno_text()}"
        return
    try:
        dir_fd = os.open(allowed_dir, os.O_PATH | os.O_DIRECTORY)
        try:
            inside = fs & ~(_FS_EXECUTE | _FS_MAKE_CHAR | _FS_MAKE_BLOCK | _FS_IOCTL_DEV)
            rule = struct.pack("=Qi", inside, dir_fd)
            if _libc.syscall(_SYS_LANDLOCK_ADD_RULE, ruleset, _LANDLOCK_RULE_PATH_BENEATH, rule, 0) != 0:
                conf.missing["landlock"] = f"add_rule: {_errno_text()}"
                return
        finally:
            os.close(dir_fd)
        if _libc.syscall(_SYS_LANDLOCK_RESTRICT_SELF, ruleset, 0) != 0:
            conf.missing["landlock"] = f"restrict_self: {_errno_text()}"
            return
        conf.layers.append(f"landlock(abi {abi})")
    finally:
        os.close(ruleset)


# --- seccomp ----------------------------------------------------------------------------------

_AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
# Refused with EPERM: networking, new programs and processes, other processes' memory,
# filesystem/namespace/privilege machinery, kernel keyrings, bpf, perf, io_uring (whose
# operations would bypass this filter), handles that reach outside a chroot.
_DENIED = {
    "x86_64": {
        "socket": 41, "connect": 42, "accept": 43, "bind": 49, "listen": 50, "socketpair": 53,
        "fork": 57, "vfork": 58, "execve": 59, "ptrace": 101, "pivot_root": 155, "chroot": 161,
        "acct": 163, "mount": 165, "umount2": 166, "swapon": 167, "swapoff": 168, "reboot": 169,
        "init_module": 175, "delete_module": 176, "kexec_load": 246, "add_key": 248,
        "request_key": 249, "keyctl": 250, "unshare": 272, "accept4": 288, "perf_event_open": 298,
        "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
        "finit_module": 313, "kexec_file_load": 320, "bpf": 321, "execveat": 322,
        "userfaultfd": 323, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "open_tree": 428, "move_mount": 429, "fsopen": 430,
        "fsconfig": 431, "fsmount": 432, "fspick": 433, "pidfd_getfd": 438, "mount_setattr": 442,
    },
    "aarch64": {
        "socket": 198, "socketpair": 199, "bind": 200, "listen": 201, "accept": 202, "connect": 203,
        "accept4": 242, "execve": 221, "execveat": 281, "ptrace": 117, "chroot": 51, "mount": 40,
        "umount2": 39, "pivot_root": 41, "unshare": 97, "setns": 268, "process_vm_readv": 270,
        "process_vm_writev": 271, "add_key": 217, "request_key": 218, "keyctl": 219, "bpf": 280,
        "perf_event_open": 241, "userfaultfd": 282, "io_uring_setup": 425, "io_uring_enter": 426,
        "io_uring_register": 427, "open_by_handle_at": 265, "kexec_load": 104,
        "init_module": 105, "delete_module": 106, "finit_module": 273, "acct": 89, "reboot": 142,
        "pidfd_getfd": 438, "open_tree": 428, "move_mount": 429, "fsopen": 430, "fsmount": 432,
    },
}
_CLONE = {"x86_64": 56, "aarch64": 220}
_CLONE3 = 435
_SYS_SECCOMP = {"x86_64": 317, "aarch64": 277}
_SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC = 1, 1
_RET_ALLOW, _RET_KILL_PROCESS, _RET_ERRNO = 0x7FFF0000, 0x80000000, 0x00050000
_EPERM, _ENOSYS = 1, 38
_X32_BIT = 0x40000000
# classic BPF opcodes
_LD_ABS_W, _JEQ, _JGE, _JSET, _RET = 0x20, 0x15, 0x35, 0x45, 0x06


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def seccomp_program(arch: str) -> list[tuple[int, int, int, int]]:
    """The filter as (code, jt, jf, k): a wrong arch kills, denied calls get EPERM, clone3
    ENOSYS (libc falls back to clone, whose flags a filter can read), and clone may only
    create threads."""
    denied = sorted(set(_DENIED[arch].values()))
    prog = [(_LD_ABS_W, 0, 0, 4), (_JEQ, 1, 0, _AUDIT_ARCH[arch]), (_RET, 0, 0, _RET_KILL_PROCESS),
            (_LD_ABS_W, 0, 0, 0)]
    if arch == "x86_64":  # x32 numbers alias the 64-bit table
        prog += [(_JGE, 0, 1, _X32_BIT), (_RET, 0, 0, _RET_ERRNO | _EPERM)]
    n = len(denied)
    # each denied number jumps to the shared EPERM return, the last instruction
    prog += [(_JEQ, n - i + 6, 0, nr) for i, nr in enumerate(denied)]
    prog += [
        (_JEQ, 0, 1, _CLONE3), (_RET, 0, 0, _RET_ERRNO | _ENOSYS),
        (_JEQ, 1, 0, _CLONE[arch]), (_RET, 0, 0, _RET_ALLOW),
        (_LD_ABS_W, 0, 0, 16),  # clone's flags: args[0], low word
        (_JSET, 0, 1, _CLONE_THREAD), (_RET, 0, 0, _RET_ALLOW),
        (_RET, 0, 0, _RET_ERRNO | _EPERM),
    ]
    return prog


def _seccomp(conf: Confinement) -> None:
    arch = platform.machine()
    if arch not in _AUDIT_ARCH:
        conf.missing["seccomp"] = f"no syscall table for {arch}"
        return
    prog = seccomp_program(arch)
    filters = (_SockFilter * len(prog))(*[_SockFilter(*ins) for ins in prog])
    fprog = _SockFprog(len(prog), filters)
    rc = _libc.syscall(_SYS_SECCOMP[arch], _SECCOMP_SET_MODE_FILTER, _SECCOMP_FILTER_FLAG_TSYNC,
                       ctypes.byref(fprog))
    if rc != 0:
        conf.missing["seccomp"] = f"seccomp: {_errno_text()}"
        return
    conf.layers.append("seccomp")
