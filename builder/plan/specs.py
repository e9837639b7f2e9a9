"""What the planner hands the solver for each filesystem step: pure, frozen data.

A spec says what a step does, never how: ``builder.ops`` keys and executes each kind
(BuildKit's split between the frontend's LLB and the solver's ops). A spec holds only
values the planner computed from the Dockerfile and the build's options.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.plan.chmod import Chmod
from builder.plan.remote import RemoteSource

DEFAULT_HOSTNAME = "pybuild"  # RUN's hostname unless BUILDKIT_SANDBOX_HOSTNAME says
SHARING_MODES = ("shared", "private", "locked")  # RUN --mount=type=cache,sharing=


@dataclass(frozen=True)
class MountSpec:
    """One ``RUN --mount``: ``from_stage`` None means the build context (bind) or none
    (cache). ``target`` may be empty only for a secret exposed through ``env`` alone."""

    kind: str  # "bind" | "tmpfs" | "cache" | "secret" | "ssh"
    target: str
    source: str = ""
    from_stage: int | None = None
    readonly: bool = True
    size: int | None = None
    id: str = ""
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    required: bool = False
    env: str = ""
    # A cache given mode=, uid= or gid= (and no source=) is a cache of its own per
    # setting: BuildKit seeds it from a "/cache" dir made with them (dockerfile2llb
    # convert_runmount.go setCacheUIDGID), and keys the cache on that parent.
    owner_set: bool = False

    def describe(self) -> str:
        """The mount as the cache key sees it: its definition, never its content."""
        common = f"type={self.kind},target={self.target}"
        if self.kind in ("bind", "tmpfs"):
            return (
                f"{common},source={self.source},"
                f"from={self.from_stage},ro={self.readonly},size={self.size}"
            )
        owner = f"mode={self.mode:o},uid={self.uid},gid={self.gid}"
        if self.kind == "cache":
            return (
                f"{common},id={self.id},sharing={self.sharing},source={self.source},"
                f"from={self.from_stage},ro={self.readonly},{owner}"
            )
        return f"{common},id={self.id},env={self.env},required={self.required},{owner}"


@dataclass(frozen=True)
class RunSpec:
    """RUN: a command in the sandbox over the parent's layers."""

    args: tuple[str, ...]
    env: tuple[str, ...]
    key_env: tuple[tuple[str, str], ...]  # what the key sees (proxy ARGs left out)
    user: str
    cwd: str
    network: str
    text: str  # the command as the user wrote it, for messages
    scripts: tuple[tuple[str, str], ...] = ()  # heredoc scripts: (container path, content)
    mounts: tuple[MountSpec, ...] = ()  # RUN --mount
    privileged: bool = False  # RUN --security=insecure (with --allow security.insecure)
    hostname: str = DEFAULT_HOSTNAME  # --build-arg BUILDKIT_SANDBOX_HOSTNAME sets it


@dataclass(frozen=True)
class CopySpec:
    """COPY/ADD: sources from the context, a stage (``from_stage``), heredocs or, for
    ADD, URLs and git repositories (``remote``, never extracted)."""

    sources: tuple[str, ...]
    dest: str  # absolute container path; a trailing "/" kept
    from_stage: int | None
    chown: str | None
    chmod: Chmod | None
    excludes: tuple[str, ...] = ()
    heredocs: tuple[tuple[str, str], ...] = ()  # (file name, content after expansion)
    parents: bool = False
    unpack: bool = False  # ADD: extract sources that are tar archives
    remote: tuple[RemoteSource, ...] = ()  # ADD: URL and git sources


@dataclass(frozen=True)
class WorkdirSpec:
    """WORKDIR: create the directory (owned by the current USER, as BuildKit does)."""

    path: str
    user: str


Spec = RunSpec | CopySpec | WorkdirSpec


def stages_read(spec: Spec | None) -> frozenset[int]:
    """The stages a step's spec reads: COPY --from, RUN --mount=from."""
    if isinstance(spec, CopySpec) and spec.from_stage is not None:
        return frozenset((spec.from_stage,))
    if isinstance(spec, RunSpec):
        return frozenset(m.from_stage for m in spec.mounts if m.from_stage is not None)
    return frozenset()
