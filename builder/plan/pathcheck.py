"""NUL bytes in what a step hands to the kernel, refused when the step is planned.

Paths, arguments and environment entries reach the kernel as C strings, which end at
the first NUL byte, so no step can honour one: BuildKit fails such a step when it runs
it. Refusing it at plan time gives the Dockerfile line and keeps the error out of the
sandbox. Contents are not checked: a heredoc body may hold any byte.
"""

from __future__ import annotations

from collections.abc import Iterator

from builder.ops.copy import CopyAction
from builder.ops.run import Action, RunAction, WorkdirAction


def nul_problem(action: Action | None) -> str | None:
    """What in ``action`` holds a NUL byte (e.g. "the destination '/a\\x00b'"), or None."""
    if action is None:
        return None
    for what, text in _strings(action):
        if "\0" in text:
            return f"{what} {_shown(text)}"
    return None


def _strings(action: Action) -> Iterator[tuple[str, str]]:
    if isinstance(action, CopyAction):
        yield from (("the source", s) for s in action.sources)
        if action.remote is not None:
            yield from (("the source", r.source) for r in action.remote.entries)
        yield "the destination", action.dest
        yield from (("the heredoc name", name) for name, _ in action.heredocs)
    elif isinstance(action, WorkdirAction):
        yield "the working directory", action.path
    elif isinstance(action, RunAction):
        yield "the working directory", action.cwd
        yield from (("the command", arg) for arg in action.args)
        yield from (("the environment entry", entry) for entry in action.env)
        for mount in action.run_mounts:
            yield f"the --mount=type={mount.kind} target", mount.target
            yield f"the --mount=type={mount.kind} source", mount.source
            yield f"the --mount=type={mount.kind} id", mount.id


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."
