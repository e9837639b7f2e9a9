"""Thin ctypes bindings for the Linux calls the sandbox needs.

Every wrapper raises :class:`~runtime.errors.SyscallError` naming the call, the path it
acted on and the errno, so a failed set-up says exactly which step broke. Nothing here
keeps state but the libc handle, opened once (``dlopen(NULL)``): a sandbox's set-up makes
a hundred calls, and a new handle per call cost tens of microseconds each.
"""

from __future__ import annotations

import ctypes
import errno as errno_mod
import fcntl
import functools
import os
import struct

from runtime.errors import SyscallError

# Namespace flags (linux/sched.h).
CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWNET = 0x40000000
CLONE_NEWPID = 0x20000000

# mount(2) flags (linux/mount.h).
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_NOATIME = 0x400
MS_NODIRATIME = 0x800
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MS_RELATIME = 0x200000
MS_STRICTATIME = 0x1000000

# umount2(2) flags.
MNT_DETACH = 0x2

# prctl(2) options.
PR_SET_PDEATHSIG = 1
PR_CAPBSET_READ = 23
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4

# capset(2): version 3 takes two 32-bit words per set (capabilities 0-63).
_LINUX_CAPABILITY_VERSION_3 = 0x20080522

# Network interface ioctls (linux/sockios.h) and flags (linux/if.h).
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IFF_UP = 0x1

# pivot_root has no glibc wrapper; its syscall number depends on the architecture.
_SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}

_PERMISSION_HINT = (
    "pybuild needs root, or (rootless) a user namespace where it is root, for namespaces and "
    "mounts; where a container refuses them (docker's default profile, as in CI jobs), "
    "`pybuild build` runs RUN steps with --isolation chroot, but running a container "
    "(`pybuild run`) needs namespaces: run the image outside the job"
)


@functools.cache
def _libc() -> ctypes.CDLL:
    # dlopen(NULL): libc is already loaded. (ctypes.util.find_library would spawn
    # ldconfig, i.e. fork inside the container's PID 1 and cost milliseconds per call.)
    return ctypes.CDLL(None, use_errno=True)


def _fail(call: str, err: int, path: str | None = None, detail: str = "") -> SyscallError:
    """Build the typed error for a failed call; EPERM gets the 'run as root' hint."""
    where = f" {path}" if path else ""
    extra = f" ({detail})" if detail else ""
    name = errno_mod.errorcode.get(err, str(err))
    hint = _PERMISSION_HINT if err in (errno_mod.EPERM, errno_mod.EACCES) else None
    return SyscallError(
        f"{call}{where}{extra}: {os.strerror(err)} ({name})",
        call=call,
        errno=err,
        path=path,
        hint=hint,
    )


def _enc(value: str | None) -> bytes | None:
    return None if value is None else os.fsencode(value)


def unshare(flags: int) -> None:
    """Move this process into new namespaces (``CLONE_NEW*`` flags)."""
    if _libc().unshare(ctypes.c_int(flags)) != 0:
        raise _fail("unshare", ctypes.get_errno(), detail=f"flags={flags:#x}")


OVERLAYFS_SUPER_MAGIC = 0x794C7630
_STATFS_SIZE = 256  # above sizeof(struct statfs) on every 64-bit ABI; f_type comes first


def filesystem_type(path: str) -> int | None:
    """statfs(2)'s ``f_type`` (a ``*_SUPER_MAGIC``) of the filesystem holding ``path``;
    None when it cannot be read."""
    buffer = ctypes.create_string_buffer(_STATFS_SIZE)
    if _libc().statfs(os.fsencode(path), buffer) != 0:
        return None
    return ctypes.c_long.from_buffer(buffer).value & 0xFFFFFFFF


def setns(path: str, nstype: int) -> None:
    """Join the namespace bound at ``path`` (a ``/proc/PID/ns/*`` file or a bind mount of
    one); ``nstype`` is its ``CLONE_NEW*`` flag."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc().setns(ctypes.c_int(fd), ctypes.c_int(nstype)) != 0:
            raise _fail("setns", ctypes.get_errno(), path)
    finally:
        os.close(fd)


def mount(
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int = 0,
    data: str | None = None,
) -> None:
    """mount(2); ``data`` is the filesystem's option string."""
    rc = _libc().mount(_enc(source), _enc(target), _enc(fstype), ctypes.c_ulong(flags), _enc(data))
    if rc != 0:
        kind = fstype or ("bind" if flags & MS_BIND else "propagation/remount")
        raise _fail("mount", ctypes.get_errno(), target, f"{kind} from {source}")


def umount2(target: str, flags: int = 0) -> None:
    """umount2(2); pass ``MNT_DETACH`` for a lazy unmount."""
    if _libc().umount2(_enc(target), ctypes.c_int(flags)) != 0:
        raise _fail("umount2", ctypes.get_errno(), target)


def pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2) through syscall(2), as glibc has no wrapper."""
    machine = os.uname().machine  # what platform.machine() reads, without importing it
    number = _SYS_PIVOT_ROOT.get(machine)
    if number is None:
        raise SyscallError(
            f"pivot_root: unsupported architecture {machine}",
            call="pivot_root",
            errno=errno_mod.ENOSYS,
        )
    if _libc().syscall(ctypes.c_long(number), _enc(new_root), _enc(put_old)) != 0:
        raise _fail("pivot_root", ctypes.get_errno(), new_root)


def sethostname(name: str) -> None:
    """sethostname(2) in the current UTS namespace."""
    raw = name.encode()
    if _libc().sethostname(raw, ctypes.c_size_t(len(raw))) != 0:
        raise _fail("sethostname", ctypes.get_errno(), detail=name)


def set_pdeathsig(signum: int) -> None:
    """Ask the kernel to send ``signum`` to this process when its parent dies."""
    if _libc().prctl(ctypes.c_int(PR_SET_PDEATHSIG), ctypes.c_ulong(signum), 0, 0, 0) != 0:
        raise _fail("prctl", ctypes.get_errno(), detail="PR_SET_PDEATHSIG")


def _prctl(option: int, arg: int, detail: str) -> int:
    rc = int(_libc().prctl(ctypes.c_int(option), ctypes.c_ulong(arg), 0, 0, 0))
    if rc < 0:
        raise _fail("prctl", ctypes.get_errno(), detail=detail)
    return rc


def drop_bounding_capability(cap: int) -> None:
    """Remove ``cap`` from the bounding set: no exec can ever grant it again."""
    _prctl(PR_CAPBSET_DROP, cap, f"PR_CAPBSET_DROP {cap}")


def in_bounding_set(cap: int) -> bool:
    """True when ``cap`` is still in this thread's bounding set."""
    return _prctl(PR_CAPBSET_READ, cap, f"PR_CAPBSET_READ {cap}") == 1


def clear_ambient_capabilities() -> None:
    """Empty the ambient set (kernels before 4.3 have none: nothing to clear)."""
    libc = _libc()
    rc = libc.prctl(ctypes.c_int(PR_CAP_AMBIENT), ctypes.c_ulong(PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0)
    if rc != 0 and ctypes.get_errno() != errno_mod.EINVAL:
        raise _fail("prctl", ctypes.get_errno(), detail="PR_CAP_AMBIENT_CLEAR_ALL")


def set_no_new_privs() -> None:
    """Set no_new_privs: setuid bits and file capabilities no longer grant anything."""
    _prctl(PR_SET_NO_NEW_PRIVS, 1, "PR_SET_NO_NEW_PRIVS")


def capset(effective: int, permitted: int, inheritable: int) -> None:
    """Set this thread's capability sets (bit N = capability N)."""
    header = (ctypes.c_uint32 * 2)(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)(
        effective & 0xFFFFFFFF,
        permitted & 0xFFFFFFFF,
        inheritable & 0xFFFFFFFF,
        effective >> 32,
        permitted >> 32,
        inheritable >> 32,
    )
    if _libc().capset(header, data) != 0:
        raise _fail("capset", ctypes.get_errno())


def set_link_up(name: str) -> None:
    """Bring a network interface up with SIOCSIFFLAGS (no ``ip`` binary needed)."""
    import socket  # here: only a network namespace sets a link up

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        # struct ifreq: 16-byte name, then a union whose first member is short ifr_flags.
        request = struct.pack("16sh22x", name.encode(), 0)
        try:
            reply = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, request)
            flags = struct.unpack("16sh22x", reply)[1]
            fcntl.ioctl(
                sock.fileno(), SIOCSIFFLAGS, struct.pack("16sh22x", name.encode(), flags | IFF_UP)
            )
        except OSError as exc:
            raise _fail(
                "ioctl", exc.errno or errno_mod.EIO, detail=f"SIOCSIFFLAGS {name} up"
            ) from exc
