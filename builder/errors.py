"""Typed build errors: what went wrong, where (Dockerfile and line), and what to do.

Only the CLI (``builder.cli.main``) turns these into messages and exit codes; library code
raises them.
"""

from __future__ import annotations


class BuildError(Exception):
    """A user-facing build failure.

    ``file`` and ``line`` locate the cause in the Dockerfile when there is one;
    ``hint`` tells the user what to do about it.
    """

    exit_code = 1

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.hint = hint

    def located(self, file: str | None, line: int | None) -> BuildError:
        """Fill in a location when the raiser did not know it; returns self."""
        if self.file is None:
            self.file = file
        if self.line is None:
            self.line = line
        return self

    def __str__(self) -> str:
        where = ""
        if self.file is not None:
            where = f"{self.file}:{self.line}: " if self.line is not None else f"{self.file}: "
        return f"{where}{self.message}"


class DockerfileError(BuildError):
    """The Dockerfile itself is malformed or uses something unsupported."""


class UsageError(BuildError):
    """Bad command-line input."""

    exit_code = 2


class BuildCancelled(BuildError):
    """A step was not started (or was stopped) because the build is being cancelled."""

    exit_code = 130


class BuildInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped the build; the CLI exits with 128 + the signal number.

    A KeyboardInterrupt, so no ``except Exception`` on the way up swallows it."""

    def __init__(self, signum: int) -> None:
        import signal

        self.signum = signum
        self.exit_code = 128 + signum
        name = signal.Signals(signum).name
        super().__init__(
            f"build cancelled by {name}: running steps were killed and nothing they made "
            "was committed; the store is intact"
        )
        self.hint: str | None = None
