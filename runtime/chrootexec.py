"""The chroot isolation's child: ``python -m runtime.chrootexec --root DIR --spec-fd N
--status-fd M``, started by :mod:`runtime.chroot` with the container's stdio as its own.

It reads the spec, mounts /proc and a read-only /sys in ``DIR`` where this process may
(CAP_SYS_ADMIN: in a mount namespace of its own, so they go with it), enters ``DIR``
with chroot(2), makes the working directory (as the namespace sandbox does), becomes the
user and execs the command (:func:`runtime.command.exec_command`). In a container with
docker's default capabilities nothing is mounted and no namespace is made: /proc and
/sys are then what the image has.
A set-up failure or a command that cannot be run is written as one JSON line to the
close-on-exec status fd; end of file there means the command was exec'd.

Everything this program needs is imported before the chroot: the interpreter's own
files are out of reach afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runtime import linux
from runtime.command import ExecFailure, exec_command
from runtime.errors import RuntimeFailure, SandboxError, SyscallError
from runtime.init import SETUP_FAILED, failure_to_dict
from runtime.rootfs import mount_proc, mount_sys
from runtime.spec import ContainerSpec, spec_from_json


def main(argv: Sequence[str] | None = None) -> int:
    """Enter the root and exec; returns only when that failed (the status says why)."""
    parser = argparse.ArgumentParser(prog="python -m runtime.chrootexec")
    parser.add_argument("--root", required=True)
    parser.add_argument("--spec-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    args = parser.parse_args(argv)
    os.set_inheritable(args.status_fd, False)  # closed by the exec: EOF means started
    try:
        with os.fdopen(args.spec_fd, "rb") as spec_file:
            spec = spec_from_json(spec_file.read().decode())
        _enter(spec, args.root)
        exec_command(spec, None)  # no lock-down: the job container's profile applies
    except ExecFailure as exc:
        _report(args.status_fd, {"exec_error": {"code": exc.code, "message": exc.message}})
        return exc.code
    except RuntimeFailure as exc:
        _report(args.status_fd, {"failure": failure_to_dict(exc)})
    except OSError as exc:
        failure = SandboxError(f"chroot set-up failed: {exc}")
        _report(args.status_fd, {"failure": failure_to_dict(failure)})
    return SETUP_FAILED


def _enter(spec: ContainerSpec, root: str) -> None:
    """Default signal dispositions, dies with pybuild, chroot, the working dir made."""
    # Python ignores SIGPIPE and SIGXFSZ; exec would keep that, so restore defaults.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE, signal.SIGXFSZ):
        signal.signal(signum, signal.SIG_DFL)
    linux.set_pdeathsig(signal.SIGKILL)
    os.umask(0o022)
    mount_kernel_filesystems(Path(root))
    try:
        os.chroot(root)
    except PermissionError as exc:
        raise SandboxError(
            f"chroot into {root}: {exc.strerror}",
            hint="--isolation chroot needs CAP_SYS_CHROOT: run the job as root in its "
            "container, or allow user namespaces so the namespace sandbox works",
        ) from None
    os.chdir("/")
    try:  # as the namespace sandbox does: before the user is taken
        os.makedirs(spec.cwd, mode=0o755, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create working directory {spec.cwd}: {exc.strerror}") from exc


def mount_kernel_filesystems(root: Path) -> bool:
    """/proc (the caller's PIDs: there is no PID namespace) and a read-only /sys in
    ``root``, in a private mount namespace of this process; False, mounting nothing,
    where namespaces or mounts are refused (no CAP_SYS_ADMIN, as in a CI job container).
    An image without them gets them made; one whose /proc or /sys is no plain dir gets
    nothing there."""
    try:
        linux.unshare(linux.CLONE_NEWNS)
        linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)
    except SyscallError:
        return False
    for name, mount in (("proc", mount_proc), ("sys", mount_sys)):
        target = root / name
        if not os.path.lexists(target):
            target.mkdir(mode=0o555)  # a mount point only: private, it never enters a layer
        if target.is_dir() and not target.is_symlink():
            try:
                mount(target)
            except SyscallError:
                return False
    return True


def _report(fd: int, message: dict[str, Any]) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


if __name__ == "__main__":
    raise SystemExit(main())
