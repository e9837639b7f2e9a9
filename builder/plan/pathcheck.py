"""NUL bytes in what a step hands to the kernel, refused when the step is planned.

Paths, arguments and environment entries reach the kernel as C strings, which end at
the first NUL byte, so no step can honour one: BuildKit fails such a step when it runs
it. Refusing it at plan time gives the Dockerfile line and keeps the error out of the
sandbox. Contents are not checked: a heredoc body may hold any byte.
"""

from __future__ import annotations

from collections.abc import Iterator

from builder.plan.specs import CopySpec, RunSpec, Spec, WorkdirSpec


def nul_problem(spec: Spec | None) -> str | None:
    """What in ``spec`` holds a NUL byte (e.g. "the destination '/a\\x00b'"), or None."""
    if spec is None:
        return None
    for what, text in _strings(spec):
        if "\0" in text:
            return f"{what} {_shown(text)}"
    return None


def _strings(spec: Spec) -> Iterator[tuple[str, str]]:
    if isinstance(spec, CopySpec):
        yield from (("the source", s) for s in spec.sources)
        yield from (("the source", r.source) for r in spec.remote)
        yield "the destination", spec.dest
        yield from (("the heredoc name", name) for name, _ in spec.heredocs)
    elif isinstance(spec, WorkdirSpec):
        yield "the working directory", spec.path
    elif isinstance(spec, RunSpec):
        yield "the working directory", spec.cwd
        yield from (("the command", arg) for arg in spec.args)
        yield from (("the environment entry", entry) for entry in spec.env)
        for mount in spec.mounts:
            yield f"the --mount=type={mount.kind} target", mount.target
            yield f"the --mount=type={mount.kind} source", mount.source
            yield f"the --mount=type={mount.kind} id", mount.id


def _shown(text: str) -> str:
    shown = repr(text)
    return shown if len(shown) <= 80 else shown[:77] + "..."
