"""The last part of starting a container's command, shared by every isolation.

Once the root is in place (``runtime.init`` after ``pivot_root``, ``runtime.chrootexec``
after ``chroot``): become the user, set the rlimits, enter the working dir and exec,
with docker's exit codes and messages (126: cannot run, 127: not found).
"""

from __future__ import annotations

import errno
import os
import resource
import signal
from collections.abc import Callable
from pathlib import Path

from runtime import linux
from runtime.security import finish_lock_down, start_lock_down
from runtime.spec import ContainerSpec
from runtime.userns import become
from runtime.users import resolve_user

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_NOT_FOUND = (errno.ENOENT, errno.ENOTDIR)


class ExecFailure(Exception):
    """The command could not be started: docker's 126 (cannot run) or 127 (not found)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def exec_command(spec: ContainerSpec, install_filter: Callable[[], None] | None) -> None:
    """Become the user, lock down, enter the working dir and exec; raises
    :class:`ExecFailure`. ``install_filter`` None: no lock-down (privileged, or
    a chroot whose container already applies one)."""
    user = resolve_user(Path("/"), spec.user)
    set_rlimits(spec)  # as root, before the capabilities to raise a hard limit go
    if install_filter is not None:  # as root: the bounding set needs CAP_SETPCAP to shrink
        start_lock_down(install_filter, no_new_privs=spec.no_new_privs)
    become(user.uid, user.gid, user.groups, spec.user)
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
        raise ExecFailure(code, f'chdir to cwd ("{spec.cwd}"): {_lower(exc.strerror)}') from exc
    path = _look_up(spec.args[0], env.get("PATH", DEFAULT_PATH))
    if install_filter is not None:
        finish_lock_down(install_filter, no_new_privs=spec.no_new_privs)  # only execve left
    try:
        os.execve(path, list(spec.args), env)
    except OSError as exc:
        code = 127 if exc.errno in _NOT_FOUND else 126  # ENOENT also: no interpreter
        raise ExecFailure(code, f'exec: "{spec.args[0]}": {_lower(exc.strerror)}') from exc


def set_rlimits(spec: ContainerSpec) -> None:
    """docker's --ulimit: each limit before the exec, so the command and its children get it."""
    for limit in spec.rlimits:
        which = getattr(resource, f"RLIMIT_{limit.name.upper()}", None)
        if which is None:
            raise ExecFailure(126, f"unknown ulimit {limit.name!r}")
        soft = resource.RLIM_INFINITY if limit.soft < 0 else limit.soft
        hard = resource.RLIM_INFINITY if limit.hard < 0 else limit.hard
        try:
            resource.setrlimit(which, (soft, hard))
        except (OSError, ValueError) as exc:
            raise ExecFailure(126, f"setting ulimit {limit.name}: {exc}") from exc


def _look_up(name: str, search_path: str) -> str:
    """Find ``name`` like Go's exec.LookPath (runc), with docker's messages and codes."""
    if "/" in name:
        try:
            st = os.stat(name)
        except OSError as exc:
            code = 127 if exc.errno in _NOT_FOUND else 126
            raise ExecFailure(code, f'exec: "{name}": stat {name}: {_lower(exc.strerror)}') from exc
        if os.path.isdir(name):
            raise ExecFailure(126, f'exec: "{name}": is a directory')
        if not st.st_mode & 0o111:
            raise ExecFailure(126, f'exec: "{name}": permission denied')
        return name
    for directory in search_path.split(":"):
        candidate = os.path.join(directory or ".", name)
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if not os.path.isdir(candidate) and st.st_mode & 0o111:
            return candidate
    raise ExecFailure(127, f'exec: "{name}": executable file not found in $PATH')


def _lower(text: str | None) -> str:
    """Go-style error text: 'no such file or directory'."""
    text = text or "unknown error"
    return text[:1].lower() + text[1:]
