"""Typed errors of the runtime package; each carries an optional hint for the user.

Library code raises these; only the CLI (``builder.cli.main``) turns them into messages and
exit codes.
"""

from __future__ import annotations

import errno


class RuntimeFailure(Exception):
    """Base of every runtime failure: ``message`` says what, ``hint`` what to do about it."""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class SandboxError(RuntimeFailure):
    """Our own container set-up failed (namespaces, mounts, spec, the init process)."""


class SyscallError(SandboxError):
    """A Linux system call failed; ``call``, ``path`` and ``errno`` say which and why."""

    def __init__(
        self,
        message: str,
        *,
        call: str,
        errno: int,
        path: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.call = call
        self.errno = errno
        self.path = path


class SandboxCancelled(RuntimeFailure):
    """The caller cancelled its sandboxes (a signal): this one was killed or never started."""


class UserNotFound(RuntimeFailure):
    """A USER name or group is not in the rootfs's /etc/passwd or /etc/group."""


def os_error_hint(exc: OSError, where: object) -> str | None:
    """What to do about ``exc`` when it says the disk of ``where`` is full or a path is
    longer than the kernel allows; None for other errors."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"the disk holding {where} is full (or over quota): free space there, or remove "
            "unused cache entries with `pybuild cache prune` (`--all` frees the most)"
        )
    if exc.errno == errno.ENAMETOOLONG:
        return "the step made a path longer than the kernel allows: keep the file tree shallower"
    return None
