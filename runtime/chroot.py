"""RUN steps without namespaces or mounts: ``--isolation chroot`` (see runtime.isolation).

Each run copies the step's layers into a fresh tree (the copy snapshotter,
:mod:`runtime.snapshot`), puts in it what the namespace sandbox would mount (device
nodes made with mknod, /etc/hosts, /etc/resolv.conf) before the baseline is taken,
starts ``python -m runtime.chrootexec`` (chroot, user, working dir, exec) in a session
of its own, and diffs the tree back into the upper dir. The diff leaves out /dev,
/proc, /sys, /etc/hosts and /etc/resolv.conf, which the namespace sandbox covers with
mounts, so the layer holds what it would hold there.

Buildah's chroot isolation binds the host's /dev, /proc and /sys into a private mount
namespace; without CAP_SYS_ADMIN there is none, so /dev holds the nodes runc makes and
/proc and /sys are whatever the image has (usually empty). Not isolated: PIDs (the
command sees, and as root may signal, the job container's processes), the network (the
job container's, whatever ``--network`` says), mounts and the hostname; a RUN step's
root can leave the chroot. The job container is the boundary. The caller's processes
are not exposed through /proc (there is none), and the command gets only the step's
environment, never pybuild's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import sys
import threading
from pathlib import Path

from fstree.tree import remove_tree
from runtime import snapshot
from runtime.errors import SandboxCancelled, SandboxError
from runtime.forkclient import python_environment
from runtime.init import result_from_messages
from runtime.spec import ContainerSpec, RunResult, spec_to_json, validate_spec

# runc's default devices (char, major, minor), mode 0666 as it makes them.
DEVICES = (
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
)
DEV_LINKS = (
    ("fd", "/proc/self/fd"),
    ("stdin", "/proc/self/fd/0"),
    ("stdout", "/proc/self/fd/1"),
    ("stderr", "/proc/self/fd/2"),
)
# What the namespace sandbox mounts over: never part of a chroot step's layer.
PRIVATE = frozenset({"dev", "proc", "sys", "etc/hosts", "etc/resolv.conf"})
# The child's environment: how to find the runtime, nothing of pybuild's own (tokens,
# credentials a CI job holds); the command's own is the spec's.
_CHILD_ENV = ("PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX", "PATH")


class ChrootSandboxes:
    """Runs specs chrooted (the ``runtime.sandboxes.Sandboxes`` interface: ``run``,
    ``cancel``, ``close``), keeping the live ones so that a signal can stop them."""

    def __init__(self) -> None:
        self._lock = threading.RLock()  # cancel() may run in a signal handler
        self._live: set[subprocess.Popen[bytes]] = set()
        self._cancelled = False

    def live_pids(self) -> list[int]:
        with self._lock:
            return [proc.pid for proc in self._live]

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult:
        """Run ``spec`` to completion; its changes land in ``spec.rootfs.upper``."""
        with self._lock:
            if self._cancelled:
                raise SandboxCancelled("not started: the build is being cancelled")
        check_spec(spec)
        copy = snapshot.prepare(
            spec.rootfs, seed=lambda root: seed_root(root, spec), private=PRIVATE, warm=True
        )
        try:
            result = self._exec(spec, copy.merged, (stdin, stdout, stderr))
        except BaseException:
            snapshot.discard(copy)
            raise
        snapshot.finish(spec.rootfs, copy, warm=True)  # kept for the next step, if any
        return result

    def _exec(
        self, spec: ContainerSpec, root: Path, stdio: tuple[int | None, int | None, int | None]
    ) -> RunResult:
        spec_r, spec_w = os.pipe()
        status_r, status_w = os.pipe()
        try:
            proc = _start(root, spec_r, status_w, stdio)
        finally:
            os.close(spec_r)
            os.close(status_w)
        with self._lock:
            self._live.add(proc)
            if self._cancelled:
                _kill_session(proc.pid)
        try:
            with contextlib.suppress(BrokenPipeError), os.fdopen(spec_w, "wb") as spec_file:
                spec_file.write(spec_to_json(spec).encode())
            with os.fdopen(status_r, "rb") as status_file:
                messages = [json.loads(line) for line in status_file.read().splitlines()]
            # Exited but not reaped: its pid cannot name another session yet.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        finally:
            _kill_session(proc.pid)  # what the command left running in the background
            returncode = proc.wait()
            with self._lock:
                self._live.discard(proc)
        if self._cancelled:
            raise SandboxCancelled("killed: the build is being cancelled")
        return result_from_messages(returncode, messages)

    def cancel(self) -> None:
        """Start nothing more and SIGKILL every running command's session."""
        with self._lock:
            self._cancelled = True
            pids = [proc.pid for proc in self._live]
        for pid in pids:
            _kill_session(pid)

    def close_networks(self) -> None:
        """Nothing to close: chroot steps use the caller's network."""

    def close(self) -> None:
        """Nothing to end: no server process is kept between runs."""

    def __enter__(self) -> ChrootSandboxes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def check_spec(spec: ContainerSpec) -> None:
    """Refuse what needs mounts or cgroups, which chroot isolation cannot give."""
    validate_spec(spec)
    needs = []
    if spec.mounts or spec.tmpfs:
        needs.append("RUN --mount (bind, cache, secret, ssh and tmpfs mounts)")
    if spec.readonly_rootfs:
        needs.append("a read-only root")
    if spec.resources.memory or spec.resources.pids or spec.resources.cpus:
        needs.append("resource limits (--memory, --pids-limit, --cpus)")
    if needs:
        raise SandboxError(
            f"--isolation chroot cannot give {' or '.join(needs)}: they need mounts or cgroups",
            hint="drop them from the build, or build where namespaces work (as root with "
            "CAP_SYS_ADMIN, or rootless with user namespaces allowed)",
        )


def seed_root(root: Path, spec: ContainerSpec) -> None:
    """Put in ``root`` what the namespace sandbox mounts: /dev's nodes and links,
    /etc/hosts and /etc/resolv.conf (the paths :data:`PRIVATE` keeps out of the layer)."""
    dev = root / "dev"
    if not os.path.lexists(dev):
        dev.mkdir(mode=0o755)
    if dev.is_symlink() or not dev.is_dir():
        return  # an image whose /dev is no dir gets none of ours
    for name, major, minor in DEVICES:
        _replace(dev / name)
        os.mknod(dev / name, stat.S_IFCHR | 0o666, os.makedev(major, minor))
        os.chmod(dev / name, 0o666)  # whatever the umask
    for name, target in DEV_LINKS:
        _replace(dev / name)
        os.symlink(target, dev / name)
    shm = dev / "shm"
    _replace(shm)
    shm.mkdir()
    os.chmod(shm, 0o1777)
    etc = root / "etc"
    if etc.is_symlink() or not etc.is_dir():
        return
    hostname = os.uname().nodename
    hosts = spec.hosts or (
        f"127.0.0.1\tlocalhost {hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    _write(etc / "hosts", hosts)
    _write(etc / "resolv.conf", spec.resolv_conf or _read("/etc/resolv.conf"))


def _replace(path: Path) -> None:
    """Remove what the image has at ``path`` (only in the copy: it never reaches a layer)."""
    if path.is_dir() and not path.is_symlink():
        remove_tree(path)
    elif os.path.lexists(path):
        path.unlink()


def _write(path: Path, text: str) -> None:
    _replace(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o644)
        f.write(text)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _start(
    root: Path, spec_fd: int, status_fd: int, stdio: tuple[int | None, int | None, int | None]
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "runtime.chrootexec",
        f"--root={root}",
        f"--spec-fd={spec_fd}",
        f"--status-fd={status_fd}",
    ]
    env = {k: v for k, v in python_environment().items() if k in _CHILD_ENV}
    try:
        return subprocess.Popen(
            command,
            stdin=stdio[0],
            stdout=stdio[1],
            stderr=stdio[2],
            pass_fds=(spec_fd, status_fd),
            env=env,
            cwd="/",
            start_new_session=True,  # its own session: cancel kills the command's tree
        )
    except OSError as exc:
        raise SandboxError(f"cannot start the chroot process: {exc}") from exc


def _kill_session(pid: int) -> None:
    """SIGKILL the process group ``pid`` leads (the command and what it started there)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
