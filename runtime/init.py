"""The sandbox init: ``python -m runtime.init --spec-fd N --status-fd M --stdio I,O,E``.

``runtime.sandbox`` starts this program through ``subprocess`` because the builder is
multi-threaded and must not fork itself, or has :mod:`runtime.forkserver` fork it and call
:func:`main` (no new interpreter, the seccomp filter compiled once). Two processes come
out of it:

Outer init (this process, still in the caller's namespaces):
  1. reads the spec JSON from ``--spec-fd``, writes /etc/hosts and /etc/resolv.conf to a
     private temp dir (under the spec's ``scratch``); with resource limits, creates the
     container's cgroup (:mod:`runtime.cgroups`);
  2. ``unshare(CLONE_NEWPID)`` and forks: the child is PID 1 of the new PID namespace;
  3. forwards SIGINT, SIGTERM and SIGHUP to it; a second SIGINT/SIGTERM, or SIGUSR1
     (sent by ``sandbox`` on cancellation), kills it;
  4. reads the child's reports (mount stubs created, set-up or exec failure) from a
     close-on-exec pipe, which reaches EOF once the user's command has been exec'd;
  5. waits for it, removes the mount stubs from the upper dir and the cgroup (saying so
     when the OOM killer or the pids limit is why it failed), writes a JSON status to
     ``--status-fd`` and exits with the container's status (125 when set-up failed).

Child: joins the cgroup, unshares mount, UTS, IPC (and network) namespaces itself, so
``pivot_root`` never moves the outer init's root; builds the root
(:func:`runtime.rootsetup.setup_root`), pivots into it, and unless the spec is privileged
locks itself down (:mod:`runtime.security`: capabilities, seccomp, no_new_privs if
asked) around becoming the user; then execs the command, which stays PID 1 as in docker.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import traceback
from collections.abc import Callable, Sequence

from runtime import linux
from runtime.command import ExecFailure, exec_command
from runtime.errors import RuntimeFailure, SandboxError, UserNotFound
from runtime.rootfs import MountStub, remove_stubs, use_copy_snapshotter
from runtime.rootsetup import Staging, pivot, scratch_dir, setup_root, stage
from runtime.seccomp import compile_default_filter, installer
from runtime.security import finish_lock_down, start_lock_down
from runtime.spec import ContainerSpec, RunResult, spec_from_json
from runtime.userns import explain_single_mapping

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without loading typing (the fork server's start)
if TYPE_CHECKING:
    from typing import Any, NoReturn

    from runtime.cgroups import Cgroup

FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
KILL_REQUEST = signal.SIGUSR1
SETUP_FAILED = 125


def failure_to_dict(exc: RuntimeFailure) -> dict[str, Any]:
    """Wire form of a set-up failure, so the caller can re-raise the same type."""
    kind = "user" if isinstance(exc, UserNotFound) else "sandbox"
    return {"kind": kind, "message": exc.message, "hint": exc.hint}


def failure_from_dict(body: dict[str, Any]) -> RuntimeFailure:
    """Inverse of :func:`failure_to_dict`."""
    cls = UserNotFound if body.get("kind") == "user" else SandboxError
    return cls(str(body.get("message")), hint=body.get("hint"))


def main(argv: Sequence[str] | None = None, *, seccomp_program: bytes | None = None) -> int:
    """Run one container as described on ``--spec-fd``; returns its exit status.

    ``seccomp_program``: the default filter already compiled (None: compile it here)."""
    import argparse  # only this command line needs it: the fork server's inits do not

    parser = argparse.ArgumentParser(prog="python -m runtime.init")
    parser.add_argument("--spec-fd", type=int, required=True)
    parser.add_argument("--status-fd", type=int, required=True)
    parser.add_argument("--stdio", required=True, help="three fds: stdin,stdout,stderr")
    args = parser.parse_args(argv)
    try:
        stdio = tuple(int(fd) for fd in args.stdio.split(","))
    except ValueError:
        parser.error(f"--stdio: expected three fds, got {args.stdio!r}")
    return run_from_fds(args.spec_fd, args.status_fd, stdio, seccomp_program=seccomp_program)


def run_from_fds(
    spec_fd: int, status_fd: int, stdio: tuple[int, ...], *, seccomp_program: bytes | None = None
) -> int:
    """``main`` without its command line (the fork server calls this in each child, so
    no step pays for an argument parser): the spec from ``spec_fd``, the status to
    ``status_fd``; returns the container's exit status."""
    os.set_inheritable(status_fd, False)  # the container must not inherit it
    try:
        with os.fdopen(spec_fd, "rb") as spec_file:
            spec = spec_from_json(spec_file.read().decode())
        result = _run(spec, stdio, seccomp_program)
    except RuntimeFailure as exc:
        _write_status(status_fd, {"failure": failure_to_dict(exc)})
        return SETUP_FAILED
    except (OSError, ValueError) as exc:  # e.g. no space for the temp dir, bad arguments
        failure = SandboxError(f"sandbox init failed: {exc}")
        _write_status(status_fd, {"failure": failure_to_dict(failure)})
        return SETUP_FAILED
    _write_status(
        status_fd,
        {"exit_code": result.exit_code, "signal": result.signal, "error": result.error},
    )
    return result.exit_code


def _write_status(fd: int, body: dict[str, Any]) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(json.dumps(body).encode())


def _run(spec: ContainerSpec, stdio: tuple[int, ...], program: bytes | None) -> RunResult:
    """Outer init: fork PID 1 in a new PID namespace, wait, clean up, report."""
    linux.set_pdeathsig(signal.SIGKILL)  # if the builder dies, the whole sandbox goes
    handled = (*FORWARDED_SIGNALS, KILL_REQUEST)
    with contextlib.ExitStack() as stack:
        staging = stage(stack.enter_context(scratch_dir(spec.scratch)), spec)
        copy = None
        if use_copy_snapshotter(spec.rootfs):  # before the fork: the diff needs its baseline
            from runtime import snapshot  # the copy snapshotter, loaded only when used

            copy = snapshot.prepare(spec.rootfs)
            stack.callback(snapshot.discard, copy)
            staging = dataclasses.replace(staging, copy_root=copy.merged)
        group = None
        if spec.resources.limited:
            from runtime import cgroups  # loaded only for resource limits

            name = f"pybuild-{os.getpid()}-{os.urandom(4).hex()}"  # secrets.token_hex(4)
            group = cgroups.create(name, spec.resources)
            stack.callback(cgroups.remove, group)
        linux.unshare(linux.CLONE_NEWPID)
        report_r, report_w = os.pipe()
        # Block until the handlers know the child, so no signal is lost or misdirected.
        signal.pthread_sigmask(signal.SIG_BLOCK, handled)
        pid = os.fork()
        if pid == 0:
            os.close(report_r)
            _child(spec, staging, stdio, report_w, handled, group, program)
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
        if copy is not None:
            snapshot.finish(spec.rootfs, copy)
        remove_stubs(spec.rootfs, [_stub(m["stub"]) for m in messages if "stub" in m])
        result = explain_single_mapping(
            result_from_messages(os.waitstatus_to_exitcode(status), messages)
        )
        return result if group is None else _explain_limits(result, group, spec)


def _explain_limits(result: RunResult, group: Cgroup, spec: ContainerSpec) -> RunResult:
    """Say so when a resource limit is why the container failed."""
    from runtime import cgroups  # imported already: it made the group

    if result.exit_code == 0 or result.error is not None:
        return result
    if cgroups.oom_killed(group):
        limit = spec.resources.memory or 0
        why = f"out of memory: killed by the kernel (memory limit {limit / 2**20:.1f} MiB)"
        return RunResult(result.exit_code, result.signal, why)
    if cgroups.pids_limit_hit(group):
        why = (
            f"exit code {result.exit_code}; the pids limit ({spec.resources.pids}) "
            "was reached: a fork was refused"
        )
        return RunResult(result.exit_code, result.signal, why)
    return result


def _stub(body: dict[str, Any]) -> MountStub:
    return MountStub(tuple(str(p) for p in body["paths"]), bool(body["is_dir"]))


def result_from_messages(code: int, messages: list[dict[str, Any]]) -> RunResult:
    """A run's result from its status messages and exit code (negative: killed by that
    signal, as ``os.waitstatus_to_exitcode`` and ``Popen.returncode`` give it); raises the
    set-up failure a message reports."""
    for message in messages:
        if "failure" in message:
            raise failure_from_dict(message["failure"])
        if "exec_error" in message:
            body = message["exec_error"]
            return RunResult(int(body["code"]), None, str(body["message"]))
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


def _child(
    spec: ContainerSpec,
    staging: Staging,
    stdio: tuple[int, ...],
    report_w: int,
    handled: tuple[int, ...],
    group: Cgroup | None,
    program: bytes | None,
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
        if group is not None:
            from runtime import cgroups  # imported already: the outer init made the group

            cgroups.join(group)  # before anything of the container's can run
        _take_stdio(stdio, keep=report_w)
        _start_session(spec.tty)
        # Compiled now: libseccomp is a host library, gone from view after pivot_root.
        install_filter = None
        if not spec.privileged:
            install_filter = installer(program or compile_default_filter())
        setup_root(spec, staging, report)
        pivot(staging.root)
        if spec.init:
            _fork_under_init(spec, install_filter, report_w)  # returns in the command's fork
        exec_command(spec, install_filter)
    except ExecFailure as exc:
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


INIT_FORWARDED = (
    *FORWARDED_SIGNALS,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
    signal.SIGALRM,
)


def _fork_under_init(
    spec: ContainerSpec, install_filter: Callable[[], None] | None, report_w: int
) -> None:
    """``--init`` (tini's job): fork the command and stay PID 1 to forward signals to it
    and reap every orphaned zombie; exit with its status (128+N if killed by signal N).

    Returns only in the command's process, which gets its own process group (in the
    foreground of the pty with ``tty``) so terminal signals reach it and not PID 1.
    """
    signal.pthread_sigmask(signal.SIG_BLOCK, INIT_FORWARDED)
    child = os.fork()
    if child == 0:
        os.setpgid(0, 0)
        if spec.tty:
            signal.signal(signal.SIGTTOU, signal.SIG_IGN)  # tcsetpgrp from the background
            with contextlib.suppress(OSError):
                os.tcsetpgrp(0, os.getpgrp())
            signal.signal(signal.SIGTTOU, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, [])
        return
    try:
        os.close(report_w)  # the command's copy alone says when it has exec'd
        code = _reap_until(child, install_filter, no_new_privs=spec.no_new_privs)
    except BaseException:  # never return into the set-up code as PID 1
        code = SETUP_FAILED
    os._exit(code)


def _reap_until(
    child: int, install_filter: Callable[[], None] | None, *, no_new_privs: bool
) -> int:
    def forward(signum: int, _frame: object) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    for signum in INIT_FORWARDED:
        signal.signal(signum, forward)
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    if install_filter is not None:  # PID 1 holds no more power than it needs
        start_lock_down(install_filter, no_new_privs=no_new_privs, keep=("CAP_KILL",))
        finish_lock_down(install_filter, no_new_privs=no_new_privs)
    while True:
        pid, status = os.wait()  # any orphan's zombie, until the command's own
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


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
        import termios  # before pivot_root, which hides the host's library

        try:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)
        except OSError as exc:
            raise SandboxError(
                f"cannot make stdin the controlling terminal: {exc.strerror}"
            ) from exc


if __name__ == "__main__":
    raise SystemExit(main())
