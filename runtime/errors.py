"""Typed errors of the runtime package; each carries an optional hint for the user.

Library code raises these; only ``builder/cli.py`` turns them into messages and exit codes.
"""

from __future__ import annotations


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


class UserNotFound(RuntimeFailure):
    """A USER name or group is not in the rootfs's /etc/passwd or /etc/group."""
