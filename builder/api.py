"""One build, end to end: Dockerfile -> plan -> solve -> image in the store -> outputs."""

from __future__ import annotations

import os
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from builder.errors import BuildError, DockerfileError
from builder.exporters.cache_transfer import CacheSpec, export_caches, import_caches
from builder.exporters.image import commit_image
from builder.exporters.outputs import Output, write_output
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.images.namedcontexts import NamedContext, resolve_context
from builder.images.store import Storage
from builder.ops.base import ExecContext, Sandbox
from builder.ops.context import BuildContext
from builder.ops.rootpath import leads_out, resolve_beside
from builder.ops.runsettings import RunSettings
from builder.ops.secrets import BuildSecrets
from builder.plan.planner import Plan, PlanRequest, make_plan
from builder.solve import Events, SolveOptions, Solver, StepResult, count_sandbox_runs
from cache.fscache import open_stat_cache
from cache.gc import build_guard
from cache.images import StoredImage
from cache.index import BuildRecord, BuildStep
from runtime.spec import ContainerSpec, Resources, RunResult


@dataclass(frozen=True)
class BuildRequest:
    context: Path
    dockerfile: Path | None = None  # default: <context>/Dockerfile
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    network: str = "host"
    outputs: tuple[Output, ...] = ()
    resources: Resources = field(default_factory=Resources)  # every RUN step's limits
    solve: SolveOptions = field(default_factory=SolveOptions)
    # --secret/--ssh sources and --allow (never the secrets' bytes: they are read per RUN)
    secrets: BuildSecrets = field(default_factory=BuildSecrets)
    # --cache-from (imported before the solve) and --cache-to (exported after it)
    cache_from: tuple[CacheSpec, ...] = ()
    cache_to: tuple[CacheSpec, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()  # --label: on the image config
    annotations: tuple[tuple[str, str], ...] = ()  # --annotation: on the manifest
    run_settings: RunSettings = field(default_factory=RunSettings)  # --add-host, ...
    contexts: tuple[NamedContext, ...] = ()  # --build-context
    dockerfile_text: str | None = None  # -f -: the Dockerfile read from stdin


@dataclass(frozen=True)
class BuildOutcome:
    image: StoredImage
    plan: Plan
    steps: tuple[StepResult, ...]
    sandbox_runs: int
    duration: float
    build_id: str = ""  # the build's record in the index

    @property
    def cached_steps(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    @property
    def time_saved(self) -> float:
        """Seconds the hits saved: what those steps took when they ran."""
        return sum(s.saved for s in self.steps if s.cached)

    @property
    def bytes_reused(self) -> int:
        """Bytes of layer blobs the hits reused instead of making again."""
        return sum(s.layer.size for s in self.steps if s.cached and s.layer)

    def summary(self) -> str:
        total = len(self.steps)
        rate = 100 * self.cached_steps / total if total else 100.0
        return f"{self.cached_steps}/{total} steps cached ({rate:.0f}%)"


@dataclass(frozen=True)
class LimitedSandbox:
    """A sandbox giving every RUN step the build's ``--memory``/``--pids-limit``/``--cpus``.

    Limits are not part of any cache key, as in docker: they bound how a step runs, not
    what it makes.
    """

    inner: Sandbox
    resources: Resources

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult:
        limited = replace(spec, resources=self.resources)
        return self.inner.run(limited, stdin=stdin, stdout=stdout, stderr=stderr)


def dockerfile_path(request: BuildRequest) -> Path:
    """The request's Dockerfile (``find_dockerfile``)."""
    return find_dockerfile(request.context, request.dockerfile)


def find_dockerfile(context: Path, file: Path | None) -> Path:
    """The Dockerfile to read: ``-f``'s file, else ``<context>/Dockerfile``. A missing
    file named ``Dockerfile`` falls back to ``dockerfile`` beside it (BuildKit
    frontend/dockerui/config.go: ``strings.ToLower(DefaultDockerfileName)``)."""
    path = file or context / "Dockerfile"
    lower = path.with_name("dockerfile")
    if path.name == "Dockerfile" and not path.exists() and lower.is_file():
        return lower
    return path


def read_dockerfile(
    request: BuildRequest, warn: Callable[[str], None] | None = None
) -> ins.Dockerfile:
    """The request's Dockerfile (``-f -``: the text read from stdin), parsed. On a parse
    error, ``warn`` first gets the build checks BuildKit runs while parsing
    (instructions.Parse: StageNameCasing, FromAsCasing, MaintainerDeprecated) for the
    instructions before the failing one, as BuildKit prints the warnings it found
    before the error."""
    if request.dockerfile_text is not None:
        return parse_dockerfile(request.dockerfile_text, "Dockerfile (stdin)")
    path = dockerfile_path(request)
    try:
        return parse_dockerfile_at(path)
    except DockerfileError as exc:
        if warn is not None and exc.line:
            for message in _warnings_before(path, exc.line):
                warn(message)
        raise


_PARSE_TIME_RULES = ("StageNameCasing", "FromAsCasing", "MaintainerDeprecated")


def _warnings_before(path: Path, line: int) -> list[str]:
    from builder.frontend.checks.directive import check_warnings  # only after a parse error

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        prefix = "".join(text.splitlines(True)[: line - 1])
        checked = check_warnings(parse_dockerfile(prefix, str(path)))
    except (BuildError, OSError, UnicodeDecodeError):
        return []  # the part before the error does not parse on its own either
    return [w for w in checked if any(f": {rule}: " in w for rule in _PARSE_TIME_RULES)]


def parse_dockerfile_at(path: Path) -> ins.Dockerfile:
    """Parse the Dockerfile at ``path``, its symlinks followed only inside its own
    directory: a link out of it (``Dockerfile -> /etc/shadow``) is refused before
    anything is read, so no line of the target can reach an error message or a CI log.
    """
    found = resolve_beside(path)
    try:
        fd = os.open(found, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        # Invalid UTF-8 becomes U+FFFD, as BuildKit's parser (Go strings) reads it.
        with open(fd, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except FileNotFoundError:
        if leads_out(path):
            raise BuildError(
                f"the Dockerfile {path} is a symlink to {os.readlink(path)}, outside "
                f"{path.parent}; like BuildKit, pybuild follows it only inside that "
                "directory and reads nothing outside it",
                hint="move or copy the Dockerfile into the build context, or name a "
                "regular file with -f PATH",
            ) from None
        raise BuildError(
            f"no Dockerfile at {path}",
            hint="pass the build context directory, or name the file with -f",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    return parse_dockerfile(text, str(path))


def run_build(
    request: BuildRequest,
    storage: Storage,
    events: Events,
    sandbox: Sandbox,
    warn: Events | None = None,
    stop: threading.Event | None = None,
) -> BuildOutcome:
    """Build the request against ``storage``; every step is reported through ``events``.
    Once ``stop`` is set no further step starts (the build is being cancelled)."""
    started = time.time()
    dockerfile = read_dockerfile(request, lambda m: _warn(events, m))
    context = BuildContext(request.context, dockerfile=request.dockerfile)
    plan = make_plan(
        PlanRequest(
            dockerfile,
            dict(request.build_args),
            request.target,
            request.network,
            allow_insecure=request.secrets.allow_insecure,
            ignore_patterns=context.matcher.patterns,
        ),
        _BaseResolver(storage, request),
    )
    for warning in plan.warnings:
        _warn(events, warning)
    _check_stage_names(dockerfile, request.solve.no_cache_stages)
    scratch = storage.blobs.tmp_dir
    if request.resources != Resources():
        sandbox = LimitedSandbox(sandbox, request.resources)
    exec_ctx = ExecContext(
        context,
        sandbox,
        scratch,
        store_root=storage.root,
        secrets=request.secrets,
        run_settings=request.run_settings,
    )
    # Held until the image is tagged and exported: a concurrent prune never takes blobs
    # we made but have not recorded yet.
    with build_guard(storage.root), open_stat_cache(storage.root) as stat_cache:
        solver = Solver(storage, exec_ctx, events, request.solve, stat_cache, stop=stop)
        context.hash_file = stat_cache.cached(context.hash_file)  # unchanged files: no read
        import_caches(storage, request.cache_from, lambda m: _warn(events, m))
        result = solver.solve(plan)
        image = commit_image(
            storage,
            result,
            request.tags,
            request.labels,
            request.annotations,
            request.solve.source_date_epoch,
        )
        build_id = uuid.uuid4().hex
        shown = (
            "-" if request.dockerfile_text is not None else str(dockerfile_path(request).resolve())
        )
        record = build_record(build_id, Path(shown), started, solver.steps)
        made = replace(
            record,
            image=str(image.digest),
            image_id=str(image.config_digest),
            tags=request.tags,
            labels=request.labels,
        )
        storage.index.record_build(made)
        for output in request.outputs:
            if not output.to_stdout:  # the CLI streams those once progress is done
                write_output(storage, output, image.digest, request.tags)
        note = storage.pull_events or (lambda _m: None)
        export_caches(storage, request.cache_to, plan, solver.steps, note)
    return BuildOutcome(
        image,
        plan,
        tuple(solver.steps),
        count_sandbox_runs(solver.steps, plan),
        time.time() - started,
        build_id,
    )


def build_record(
    build_id: str, dockerfile: Path, started: float, steps: Sequence[StepResult]
) -> BuildRecord:
    """The index's record of a finished build (what `pybuild cache stats` reads)."""
    return BuildRecord(
        id=build_id,
        dockerfile=str(dockerfile),
        started=started,
        finished=time.time(),
        steps=tuple(
            BuildStep(
                step_id=s.step_id,
                key=s.key,
                cached=s.cached,
                reason=s.reason,
                duration=s.duration,
                layer_size=s.layer.size if s.layer else 0,
                saved=s.saved if s.cached else 0.0,
            )
            for s in steps
        ),
    )


def _check_stage_names(dockerfile: ins.Dockerfile, names: frozenset[str]) -> None:
    """--no-cache-filter names stages: a name no stage has is a typo, said clearly."""
    known = {s.name.lower() for s in dockerfile.stages if s.name}
    unknown = sorted(names - known)
    if unknown:
        raise BuildError(
            f"--no-cache-filter: no stage named {', '.join(unknown)} in {dockerfile.file}",
            hint="stages: " + (", ".join(sorted(known)) or "(none is named: use FROM ... AS name)"),
        )


def _warn(events: Events, message: str) -> None:
    warn = getattr(events, "warning", None)
    if callable(warn):
        warn(message)


class _BaseResolver:
    """FROM and ``--from`` images: a ``--build-context`` of that name first, else the
    store (which pulls what is missing); each named context is made once per build."""

    def __init__(self, storage: Storage, request: BuildRequest) -> None:
        self.storage = storage
        self.request = request
        self.contexts = {c.name: c for c in request.contexts}
        self.made: dict[str, StoredImage] = {}

    def __call__(self, name: str, instr: ins.From) -> StoredImage:
        try:
            if name in self.contexts:
                if name not in self.made:
                    opts = self.request.solve
                    self.made[name] = resolve_context(
                        self.storage, self.contexts[name], opts.compression, opts.source_date_epoch
                    )
                return self.made[name]
            return self.storage.get_image(name)
        except BuildError as exc:
            raise exc.located(instr.location.file, instr.location.line) from None


def parse_build_args(values: Mapping[str, str] | list[str]) -> tuple[tuple[str, str], ...]:
    """``K=V`` strings to pairs; ``K`` alone takes the value from our environment (docker)."""
    import os

    pairs: list[tuple[str, str]] = []
    for item in values:
        key, sep, value = item.partition("=")
        if not key:
            raise BuildError(f"--build-arg {item!r}: expected KEY=VALUE")
        if not sep:
            if key not in os.environ:
                continue
            value = os.environ[key]
        pairs.append((key, value))
    return tuple(pairs)


def git_source_date_epoch(context: Path) -> int | None:
    """The HEAD commit time when ``context`` is in a git work tree with commits, else None.

    A fresh checkout gives every file a new mtime; the commit time is the same on every
    machine, so it makes a reproducible default for SOURCE_DATE_EPOCH.
    """
    try:
        done = subprocess.run(
            ["git", "-C", str(context), "log", "-1", "--format=%ct"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.strip()
    return int(text) if done.returncode == 0 and text.isdigit() else None
