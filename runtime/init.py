"""The sandbox init: ``python -m runtime.init --spec-fd N --status-fd M --stdio I,O,E``.

``runtime.sandbox`` starts this program through ``subprocess`` because the builder is
multi-threaded and must not fork itself. Two processes come out of it:

Outer init (this process, still in the caller's namespaces):
  1. reads the spec JSON from ``--spec-fd``, writes /etc/hosts and /etc/resolv.conf to a
     private temp dir;
  2. ``unshare(CLONE_NEWPID)`` and forks: the child is PID 1 of the new PID namespace;
  3. forwards SIGINT, SIGTERM and SIGHUP to it; a second SIGINT/SIGTERM, or SIGUSR1
     (sent by ``sandbox`` on cancellation), kills it;
  4. reads the child's reports (mount stubs created, set-up or exec failure) from a
     close-on-exec pipe, which reaches EOF once the user's command has been exec'd;
  5. waits for it, removes the mount stubs from the upper dir, writes a JSON status to
     ``--status-fd`` and exits with the container's status (125 when set-up failed).

Child: unshares mount, UTS, IPC (and network) namespaces itself, so ``pivot_root`` never
moves the outer init's root; builds the root (:func:`_setup_root`), pivots into it,
becomes the user and execs the command, which stays PID 1 as in docker.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import signal
import sys
import tempfile
import termios
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from runtime import linux
from runtime.errors import RuntimeFailure, SandboxError, UserNotFound
from runtime.rootfs import (
    MountStub,
    bind,
    make_mountpoint,
    mount_overlay,
    mount_proc,
    mount_sys,
    populate_dev,
    remount_readonly,
    remove_stubs,
    resolve_in_root,
)
from runtime.spec import ContainerSpec, RunResult, spec_from_json
from runtime.users import resolve_user

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
KILL_REQUEST = signal.SIGUSR1
SETUP_FAILED = 125
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)

Report = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class _Staging:
    """Host-side scratch for one run, removed when the run ends."""

    root: Path
    empty: Path
    hosts: Path
    resolv: Path


class _ExecFailure(Exception):
    """The command could not be started: docker's 126 (cannot run) or 127 (not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def failure_to_dict(exc: RuntimeFailure) -> dict[str, Any]:
    """Wire form of a set-up failure, so the caller can re-raise the same type."""
    kind = "user" if isinstance(exc, UserNotFound) else "sandbox"
    return {"kind": kind, "message": exc.message, "hint": exc.hint}


def failure_from_dict(body: dict[str, Any]) -> RuntimeFailure:
    """Inverse of :func:`failure_to_dict`."""
    cls = UserNotFound if body.get("kind") == "user" else SandboxError
    return cls(str(body.get("message")), hint=body.get("hint"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run one container as described on ``--spec-fd``; returns its exit status."""
    parser = argparse.ArgumentParser(prog="python -m runtime.init")
    parser.add_argument("--spec-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--stdio", required=True, help="three fds: stdin,stdout,stderr")
    args = parser.parse_args(argv)
    os.set_inheritable(args.status_fd, False)  # the container must not inherit it
    try:
        with os.fdopen(args.spec_fd, "rb") as spec_file:
            spec = spec_from_json(spec_file.read().decode())
        stdio = tuple(int(fd) for fd in args.stdio.split(","))
        result = _run(spec, stdio)
    except RuntimeFailure as exc:
        _write_status(args.status_fd, {"failure": failure_to_dict(exc)})
        return SETUP_FAILED
    except (OSError, ValueError) as exc:  # e.g. no space for the temp dir, bad arguments
        failure = SandboxError(f"sandbox init failed: {exc}")
        _write_status(args.status_fd, {"failure": failure_to_dict(failure)})
        return SETUP_FAILED
    _write_status(
        args.status_fd,
        {"exit_code": result.exit_code, "signal": result.signal, "error": result.error},
    )
    return result.exit_code


def _write_status(fd: int, body: dict[str, Any]) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(body).encode())


def _run(spec: ContainerSpec, stdio: tuple[int, ...]) -> RunResult:
    """Outer init: fork PID 1 in a new PID namespace, wait, clean up, report."""
    linux.set_pdeathsig(signal.SIGKILL)  # if the builder dies, the whole sandbox goes
    handled = (*FORWARDED_SIGNALS, KILL_REQUEST)
    with tempfile.TemporaryDirectory(prefix="pybuild-sandbox-") as tmp:
        staging = _stage(Path(tmp), spec)
        linux.unshare(linux.CLONE_NEWPID)
        report_r, report_w = os.pipe()
        # Block until the handlers know the child, so no signal is lost or misdirected.
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        pid = os.fork()
        if pid == 0:
            os.close(report_r)
            _child(spec, staging, stdio, report_w, handled)
        os.close(report_w)
        for fd in {fd for fd in stdio if fd > 2}:  # only the container may hold them now
            os.close(fd)
        pidfd = os.pidfd_open(pid)
        _forward_signals(pidfd, handled)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, handled)
        with os.fdopen(report_r, "rb") as reports:
            messages = [json.loads(line) for line in reports.read().splitlines()]
        _, status = os.waitpid(pid, 0)
        for signum in handled:
            signal.signal(signum, signal.SIG_IGN)
        os.close(pidfd)
        remove_stubs(spec.rootfs, [_stub(m["stub"]) for m in messages if "stub" in m])
    return _result(status, messages)


def _stub(body: dict[str, Any]) -> MountStub:
    return MountStub(tuple(str(p) for p in body["paths"]), bool(body["is_dir"]))


def _result(status: int, messages: list[dict[str, Any]]) -> RunResult:
    for message in messages:
        if "failure" in message:
            raise failure_from_dict(message["failure"])
        if "exec_error" in message:
            body = message["exec_error"]
            return RunResult(int(body["code"]), None, str(body["message"]))
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return RunResult(128 - code, -code, None)
    return RunResult(code, None, None)


def _forward_signals(pidfd: int, handled: tuple[int, ...]) -> None:
    """Relay signals to PID 1 through its pidfd (immune to pid reuse).

    As PID 1 of its namespace, the command ignores signals it has no handler for, as
    in docker; so a second SIGINT/SIGTERM escalates to SIGKILL, and so does SIGUSR1.
    """
    received: list[int] = []

    def forward(signum: int, _frame: object) -> None:
        terminating = signum in (signal.SIGINT, signal.SIGTERM)
        again = terminating and any(s in (signal.SIGINT, signal.SIGTERM) for s in received)
        received.append(signum)
        target = signal.SIGKILL if signum == KILL_REQUEST or again else signum
        with contextlib.suppress(ProcessLookupError):
            signal.pidfd_send_signal(pidfd, target)

    for signum in handled:
        signal.signal(signum, forward)


def _stage(tmp: Path, spec: ContainerSpec) -> _Staging:
    staging = _Staging(tmp / "root", tmp / "empty", tmp / "hosts", tmp / "resolv.conf")
    staging.root.mkdir()
    staging.empty.mkdir()
    hosts = spec.hosts or (
        f"127.0.0.1\tlocalhost {spec.hostname}\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    _write_readable(staging.hosts, hosts)
    _write_readable(staging.resolv, spec.resolv_conf or _host_resolv_conf())
    return staging


def _write_readable(path: Path, text: str) -> None:
    """Write ``text``; mode 0644 so every container user can read the bound file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        os.fchmod(f.fileno(), 0o644)  # regardless of umask
        f.write(text)


def _host_resolv_conf() -> str:
    try:
        return Path("/etc/resolv.conf").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _child(
    spec: ContainerSpec,
    staging: _Staging,
    stdio: tuple[int, ...],
    report_w: int,
    handled: tuple[int, ...],
) -> NoReturn:
    """PID 1: set up, exec; reports what went wrong on ``report_w`` and never returns."""
    code = SETUP_FAILED

    def report(message: dict[str, Any]) -> None:
        data = (json.dumps(message) + "\n").encode()
        while data:
            data = data[os.write(report_w, data) :]

    try:
        # Python ignores SIGPIPE and SIGXFSZ; exec would keep that, so restore defaults.
        for signum in (*handled, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        linux.set_pdeathsig(signal.SIGKILL)
        os.umask(0o022)
        _take_stdio(stdio, keep=report_w)
        _start_session(spec.tty)
        _setup_root(spec, staging, report)
        _pivot(staging.root)
        _exec(spec)
    except _ExecFailure as exc:
        code = exc.code
        report({"exec_error": {"code": exc.code, "message": exc.message}})
    except RuntimeFailure as exc:
        report({"failure": failure_to_dict(exc)})
    except BaseException as exc:  # a bug of ours: say so rather than die silently
        detail = "".join(traceback.format_exception(exc))
        report(
            {
                "failure": {
                    "kind": "sandbox",
                    "message": f"sandbox set-up crashed: {exc!r}",
                    "hint": detail,
                }
            }
        )
    finally:
        os._exit(code)


def _take_stdio(stdio: tuple[int, ...], keep: int) -> None:
    """Make ``stdio`` the fds 0, 1, 2 and close every other fd except ``keep``."""
    # Copy above the range first: a target number may be one of the sources.
    high = [fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in stdio]
    for number, fd in enumerate(high):
        os.dup2(fd, number, inheritable=True)
    os.closerange(3, keep)
    os.closerange(keep + 1, os.sysconf("SC_OPEN_MAX"))


def _start_session(tty: bool) -> None:
    """Own session, so the caller's terminal signals reach us only through the outer init;
    with ``tty`` the terminal on stdin becomes our controlling terminal."""
    os.setsid()
    if tty:
        try:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        except OSError as exc:
            raise SandboxError(
                f"cannot make stdin the controlling terminal: {exc.strerror}"
            ) from exc


def _setup_root(spec: ContainerSpec, staging: _Staging, report: Report) -> None:
    """New namespaces, overlay root with /proc /dev /sys, bind mounts, hosts, resolv.conf."""
    network = linux.CLONE_NEWNET if spec.network == "none" else 0
    linux.unshare(linux.CLONE_NEWNS | linux.CLONE_NEWUTS | linux.CLONE_NEWIPC | network)
    linux.mount(None, "/", None, linux.MS_REC | linux.MS_PRIVATE)  # nothing leaks to the host
    root = staging.root
    mount_overlay(spec.rootfs, root, empty_lower=staging.empty)

    def point(target: str, is_dir: bool) -> Path:
        path, stub = make_mountpoint(root, target, is_dir=is_dir, upper=spec.rootfs.upper)
        if stub is not None:  # reported at once, so a later failure still gets it cleaned
            report({"stub": {"paths": list(stub.paths), "is_dir": stub.is_dir}})
        return path

    mount_proc(point("/proc", True))
    populate_dev(point("/dev", True), os.ttyname(0) if spec.tty else None)
    mount_sys(point("/sys", True))
    user_targets = {m.target.rstrip("/") for m in spec.mounts}
    for target, source in (("/etc/hosts", staging.hosts), ("/etc/resolv.conf", staging.resolv)):
        if target not in user_targets:
            bind(str(source), point(target, False), recursive=False)
    # Parents before children, so a nested target lands inside its parent mount.
    for mount in sorted(spec.mounts, key=lambda m: m.target.rstrip("/").count("/")):
        if not os.path.exists(mount.source):
            raise SandboxError(f"bind mount source {mount.source} does not exist")
        bind(str(mount.source), point(mount.target, mount.source.is_dir()), readonly=mount.readonly)
    try:
        resolve_in_root(root, spec.cwd).mkdir(mode=0o755, parents=True, exist_ok=True)
    except OSError as exc:
        raise SandboxError(f"cannot create working directory {spec.cwd}: {exc.strerror}") from exc
    linux.sethostname(spec.hostname)
    if spec.network == "none":
        linux.set_link_up("lo")
    if spec.readonly_rootfs:
        remount_readonly(root)


def _pivot(root: Path) -> None:
    """Make ``root`` the root and detach the old one: the host fs becomes unreachable."""
    os.chdir(root)
    linux.pivot_root(".", ".")  # stacks the old root on top of the new one at "/"
    linux.umount2(".", linux.MNT_DETACH)
    os.chdir("/")


def _exec(spec: ContainerSpec) -> None:
    """Become the user, enter the working dir and exec; raises :class:`_ExecFailure`."""
    user = resolve_user(Path("/"), spec.user)
    # Lock-down goes here, while still root and before exec: drop capabilities to
    # docker's default set, set no_new_privs, mask /proc paths, load seccomp, join cgroups.
    os.setgroups(list(user.groups))
    os.setgid(user.gid)
    os.setuid(user.uid)
    linux.set_pdeathsig(signal.SIGKILL)  # the kernel clears it when credentials change
    env: dict[str, str] = {}
    for entry in spec.env:
        key, _, value = entry.partition("=")
        env[key] = value
    env.setdefault("HOME", user.home)  # as runc does
    try:
        os.chdir(spec.cwd)
    except OSError as exc:
        code = 126 if exc.errno in (errno.EPERM, errno.EACCES) else 127
        raise _ExecFailure(code, f'chdir to cwd ("{spec.cwd}"): {_lower(exc.strerror)}') from exc
    path = _look_up(spec.args[0], env.get("PATH", DEFAULT_PATH))
    try:
        os.execve(path, list(spec.args), env)
    except OSError as exc:
        code = 127 if exc.errno in _NOT_FOUND else 126  # ENOENT also: no interpreter
        raise _ExecFailure(code, f'exec: "{spec.args[0]}": {_lower(exc.strerror)}') from exc


def _look_up(name: str, search_path: str) -> str:
    """Find ``name`` like Go's exec.LookPath (runc), with docker's messages and codes."""
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as exc:
            code = 127 if exc.errno in _NOT_FOUND else 126
            raise _ExecFailure(
                code, f'exec: "{name}": stat {name}: {_lower(exc.strerror)}'
            ) from exc
        if os.path.isdir(name):
            raise _ExecFailure(126, f'exec: "{name}": is a directory')
        if not st.st_mode & 0o111:
            raise _ExecFailure(126, f'exec: "{name}": permission denied')
        return name
    for directory in search_path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if not os.path.isdir(candidate) and st.st_mode & 0o111:
            return candidate
    raise _ExecFailure(127, f'exec: "{name}": executable file not found in $PATH')


def _lower(text: str | None) -> str:
    """Go-style error text: 'no such file or directory'."""
    text = text or "unknown error"
    return text[:1].lower() + text[1:]


if __name__ == "__main__":
    sys.exit(main())
