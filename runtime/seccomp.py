"""docker's default seccomp profile, loaded through libseccomp (Debian's ``libseccomp2``).

We bind the C library with ctypes rather than take a Python wrapper: libseccomp is the
maintained piece (it knows every architecture's syscall numbers), while the PyPI bindings
for it are unmaintained and Debian's ``python3-seccomp`` is built for the system Python.

The rules follow moby's ``profiles/seccomp/default.json`` for a container holding docker's
default capabilities: an allow list, everything else fails with EPERM; ``clone`` only
without namespace flags, ``clone3`` fails with ENOSYS (so libcs fall back to ``clone``,
which we can inspect), ``socket`` for every family but AF_VSOCK, ``personality`` for the
harmless personas only.
"""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Callable

from runtime.errors import SandboxError

LIBSECCOMP = "libseccomp.so.2"

SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_CMP_NE = 1
SCMP_CMP_EQ = 4
SCMP_CMP_MASKED_EQ = 7
_NR_SCMP_ERROR = -1
# enum scmp_filter_attr: whether seccomp_load sets no_new_privs itself (libseccomp's
# default is yes); runtime.security decides that, so the filter never does.
SCMP_FLTATR_CTL_NNP = 3

# Audit architecture tokens (linux/audit.h) of the native arch and its compat modes.
_ARCHES = {
    "x86_64": (0xC000003E, 0x40000003, 0x4000003E),  # x86_64, x86 (i386), x32
    "aarch64": (0xC00000B7, 0x40000028),  # aarch64, arm
}

# The unconditional allow list of moby's default profile (plus chroot, which it allows
# because CAP_SYS_CHROOT is in the default capability set; ptrace and process_vm_* as
# on kernels >= 4.8; arch_prctl and modify_ldt on x86).
_ALLOWED_TEXT = """
accept accept4 access adjtimex alarm bind brk capget capset chdir chmod chown chown32
clock_adjtime clock_adjtime64 clock_getres clock_getres_time64 clock_gettime
clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir
fchmod fchmodat fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr
flock fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync
ftruncate ftruncate64 futex futex_time64 futex_waitv futimesat getcpu getcwd getdents
getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname
getsockopt get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch
inotify_init inotify_init1 inotify_rm_watch io_cancel ioctl io_destroy io_getevents
io_pgetevents io_pgetevents_time64 ioprio_get ioprio_set io_setup io_submit
io_uring_enter io_uring_register io_uring_setup ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat
listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64 madvise
membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat
_newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc
pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readlink readlinkat readv recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages
removexattr rename renameat renameat2 restart_syscall rmdir rseq rt_sigaction
rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend rt_sigtimedwait
rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr sched_getparam
sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam
sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto setfsgid setfsgid32
setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid setpriority
setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32
setrlimit set_robust_list setsid setsockopt set_thread_area set_tid_address setuid
setuid32 setxattr shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times
tkill truncate truncate64 ugetrlimit umask uname unlink unlinkat utime utimensat
utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write writev
chroot ptrace process_vm_readv process_vm_writev arch_prctl modify_ldt
"""
ALLOWED = tuple(_ALLOWED_TEXT.split())

# Namespace flags clone may not carry: NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET.
CLONE_NAMESPACE_FLAGS = 0x7E020000
AF_VSOCK = 40
PERSONAS = (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)


# prctl(2) and struct sock_fprog (linux/seccomp.h, linux/filter.h) to load a program.
PR_SET_SECCOMP = 22
SECCOMP_MODE_FILTER = 2
_SOCK_FILTER_SIZE = 8  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class _ArgCmp(ctypes.Structure):
    """libseccomp's ``struct scmp_arg_cmp``."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def act_errno(err: int) -> int:
    """``SCMP_ACT_ERRNO(err)``: fail the call with ``err``."""
    return 0x00050000 | (err & 0xFFFF)


def build_default_profile() -> Callable[[], None]:
    """Compile docker's default filter; return the function that installs it.

    Build it before ``pivot_root`` (libseccomp is loaded from the host); call the result
    as the last step before exec: the filter applies to this thread and everything it
    execs or forks. Installing needs no_new_privs (or CAP_SYS_ADMIN); it never sets
    no_new_privs itself. Raises
    :class:`SandboxError` when libseccomp is missing or a rule or the load is refused.
    """
    return installer(compile_default_filter())


def compile_default_filter() -> bytes:
    """docker's default filter as a classic BPF program (``struct sock_filter`` array).

    Compiling costs milliseconds; the program is plain data, so a process that starts
    many sandboxes (``runtime.forkserver``) compiles it once and hands it to each.
    """
    lib = _library()
    ctx = lib.seccomp_init(act_errno(errno.EPERM))
    if not ctx:
        raise SandboxError("seccomp_init failed")
    try:
        if lib.seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0) != 0:
            raise SandboxError("libseccomp refused to leave no_new_privs alone")
        for arch in _ARCHES.get(os.uname().machine, ())[1:]:  # platform.machine()
            lib.seccomp_arch_add(ctx, arch)  # unsupported: native only, which is stricter
        _add_rules(lib, ctx)
        return _export(lib, ctx)
    finally:
        lib.seccomp_release(ctx)


def installer(program: bytes) -> Callable[[], None]:
    """The function installing ``program`` (from :func:`compile_default_filter`) on the
    calling thread, as ``seccomp_load`` would with no filter flags: prctl(2)
    ``PR_SET_SECCOMP``. Needs only libc, so it works after ``pivot_root``; it may be
    called in several processes (``--init`` installs it in PID 1 and in the command)."""
    if not program or len(program) % _SOCK_FILTER_SIZE:
        raise SandboxError(f"seccomp program of {len(program)} bytes is not BPF")
    count = len(program) // _SOCK_FILTER_SIZE
    buffer = ctypes.create_string_buffer(program, len(program))
    libc = ctypes.CDLL(None, use_errno=True)  # loaded now: no dlopen after pivot_root

    def install() -> None:
        prog = _SockFprog(count, ctypes.cast(buffer, ctypes.c_void_p))
        rc = libc.prctl(
            ctypes.c_int(PR_SET_SECCOMP),
            ctypes.c_ulong(SECCOMP_MODE_FILTER),
            ctypes.byref(prog),
            ctypes.c_ulong(0),
            ctypes.c_ulong(0),
        )
        if rc != 0:
            raise SandboxError(f"seccomp_load failed: {os.strerror(ctypes.get_errno())}")

    return install


def _export(lib: ctypes.CDLL, ctx: int) -> bytes:
    """The BPF libseccomp generates for ``ctx`` (what ``seccomp_load`` would load)."""
    fd = os.memfd_create("pybuild-seccomp", os.MFD_CLOEXEC)
    try:
        rc = lib.seccomp_export_bpf(ctx, fd)
        if rc != 0:
            raise SandboxError(f"seccomp_export_bpf failed: {os.strerror(-rc)}")
        size = os.lseek(fd, 0, os.SEEK_END)
        return os.pread(fd, size, 0)
    finally:
        os.close(fd)


def _library() -> ctypes.CDLL:
    try:
        lib = ctypes.CDLL(LIBSECCOMP, use_errno=True)
    except OSError as exc:
        raise SandboxError(
            f"cannot load {LIBSECCOMP}: {exc}",
            hint="install Debian's libseccomp2 (scripts/install does)",
        ) from exc
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    lib.seccomp_arch_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_attr_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgCmp),
    ]
    return lib


def _add_rules(lib: ctypes.CDLL, ctx: int) -> None:
    def rule(action: int, name: str, *cmps: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number == _NR_SCMP_ERROR:
            return  # libseccomp does not know this call on any of our arches
        array = (_ArgCmp * max(len(cmps), 1))(*(_ArgCmp(*c) for c in cmps))
        rc = lib.seccomp_rule_add_array(ctx, action, number, len(cmps), array)
        if rc not in (0, -errno.EDOM, -errno.EOPNOTSUPP):  # EDOM: not on this arch
            raise SandboxError(f"seccomp rule for {name} refused: {os.strerror(-rc)}")

    for name in ALLOWED:
        rule(SCMP_ACT_ALLOW, name)
    rule(SCMP_ACT_ALLOW, "clone", (0, SCMP_CMP_MASKED_EQ, CLONE_NAMESPACE_FLAGS, 0))
    rule(act_errno(errno.ENOSYS), "clone3")
    rule(SCMP_ACT_ALLOW, "socket", (0, SCMP_CMP_NE, AF_VSOCK, 0))
    for persona in PERSONAS:
        rule(SCMP_ACT_ALLOW, "personality", (0, SCMP_CMP_EQ, persona, 0))
