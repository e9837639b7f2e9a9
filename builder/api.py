"""Build an image from Python: ``build(BuildRequest(context=...), root=...)``.

The embedding entry point; ``pybuild build`` is one caller of it. ``build`` does all a
build needs around the solve: it enters a private mount namespace (and, as a non-root
user, a user namespace as its root: rootless mode), cleans what killed builds left in
the store, resolves base images with the request's pull policy, runs the build, writes
its outputs (registry pushes and ``--cache-to`` included) and its metadata file. Errors
are typed (``builder.errors``, ``cache.errors``, ``runtime.errors``); nothing here
prints or exits.

Progress goes to ``events`` (``builder.solve.Events``); an events object may also have
``warning(message)`` (build checks, shown as warnings) and ``note(message)`` (status
lines: pulls, pushes, cache exports, a store made private).

SIGINT and SIGTERM cancel a build run on the main thread (``BuildInterrupted``).
"""

from __future__ import annotations

import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from builder.dockerfiles import find_dockerfile, read_dockerfile
from builder.errors import BuildCancelled, BuildError, UsageError
from builder.exporters.image import commit_image
from builder.frontend import instructions as ins
from builder.images.names import normalize
from builder.images.store import Storage, default_root
from builder.ops.base import ExecContext, Sandbox
from builder.ops.runsettings import RunSettings
from builder.ops.scancache import RememberingContext
from builder.ops.secrets import BuildSecrets
from builder.outcome import BuildOutcome
from builder.plan.planner import Plan, PlanRequest, make_plan
from builder.process import enter_isolation
from builder.registry.options import RemoteOptions
from builder.solve import (
    Events,
    SolveOptions,
    Solver,
    StageResult,
    StepResult,
    count_sandbox_runs,
)
from cache.digest import Digest
from cache.fscache import StatCache, open_stat_cache
from cache.gclock import build_guard
from cache.images import StoredImage
from cache.index import BuildRecord, BuildStep
from cache.oci import Platform, host_platform
from cache.platforms import parse_platform
from runtime.spec import ContainerSpec, Resources, RunResult

if TYPE_CHECKING:
    # Imported where used: a build without --cache-from/--cache-to, -o, --push or
    # --build-context never loads them (a no-change rebuild is mostly start-up time).
    from builder.exporters.cache_transfer import CacheSpec
    from builder.exporters.outputs import Output
    from builder.exporters.push_targets import PushPlan
    from builder.images.namedcontexts import NamedContext
    from builder.plan.planner import PlannedStep, StagePlan

__all__ = ["BuildOutcome", "BuildRequest", "Events", "PullPolicy", "build"]

# How FROM finds a base image missing from the store: "missing" pulls it from its
# registry, "always" re-resolves every base there once per build (--pull), "never"
# uses the local store only.
PullPolicy = Literal["never", "missing", "always"]


@dataclass(frozen=True)
class BuildRequest:
    """What to build. Every field but ``context`` has the ``pybuild build`` default;
    ``tags`` are names as ``-t`` takes them (``hello`` is ``hello:latest``)."""

    context: Path = Path(".")
    dockerfile: Path | None = None  # default: <context>/Dockerfile
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    network: str = "default"  # RUN steps: default (private, outbound), host or none
    outputs: tuple[Output, ...] = ()
    resources: Resources = field(default_factory=Resources)  # every RUN step's limits
    solve: SolveOptions = field(default_factory=SolveOptions)  # no_cache, jobs, epoch...
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
    pull: PullPolicy = "missing"
    push: bool = False  # --push: push the image to every tag's registry
    remote: RemoteOptions = field(default_factory=RemoteOptions)  # registries, credentials
    metadata_file: Path | None = None  # --metadata-file: the outcome as JSON
    # --isolation for RUN steps: auto, namespaces or chroot (None: $PYBUILD_ISOLATION,
    # else auto); never part of a cache key
    isolation: str | None = None
    # --platform: the platforms to build for (none: this machine's). More than one makes
    # an image index with one image per platform, which the tags name.
    platforms: tuple[Platform, ...] = ()


class _Silent:
    """The events of a build nobody watches."""

    def step_started(self, stage: StagePlan, step: PlannedStep) -> None:
        return None

    def step_log(self, step: PlannedStep, line: str) -> None:
        return None

    def step_finished(self, stage: StagePlan, step: PlannedStep, result: StepResult) -> None:
        return None


def build(
    request: BuildRequest, root: Path | None = None, events: Events | None = None
) -> BuildOutcome:
    """Build ``request`` into the store at ``root`` (default: ``$PYBUILD_ROOT``, else
    ``~/.local/share/pybuild``), telling ``events`` about every step.

    Enters a private mount namespace (and rootless mode) for the whole process, unless
    the build uses chroot isolation (``request.isolation``, ``runtime.isolation``): call
    it while the process runs a single thread.
    """
    if not request.context.is_dir():
        raise UsageError(
            f"build context {str(request.context)!r} is not a directory",
            hint="pass the directory holding your Dockerfile and sources",
        )
    request = replace(request, tags=tuple(normalize(t) for t in request.tags))
    pushes = _push_plan(request)
    seen = events if events is not None else _Silent()
    note = _notes(seen)
    choice = enter_isolation(request.isolation)
    if choice.note is not None:
        note(choice.note)
    if choice.isolation != "chroot":
        from runtime import forkearly

        forkearly.fork_now()  # only in a warm builder's build: see runtime.forkearly
    from builder.interrupt import cancel_on_signals
    from builder.lazysandbox import LazySandboxes

    stop = threading.Event()
    with (
        # closed last: its fork server outlives every RUN
        LazySandboxes(choice.isolation) as sandboxes,
        cancel_on_signals(sandboxes, stop),
        Storage.open(
            root or default_root(),
            warn=note,
            pull_policy=request.pull,
            pull_options=request.remote,
            pull_events=note,
        ) as storage,
    ):
        _clean_leftovers(storage)
        # The RUN steps' network namespaces are bound to files here, for the build's
        # whole life; a build killed leaves it to the next one's sweep (pasta quits).
        with (
            storage.blobs.temp_dir("net-") as network_dir,
            # Chroot steps copy their roots: the next step reuses the last one's copy.
            _warm_copies(storage, choice.isolation),
        ):
            sandboxes.network_dir = network_dir
            try:
                outcome = _run_build(
                    request,
                    storage,
                    seen,
                    sandboxes,
                    stop=stop,
                    mounts=choice.mounts,
                    warm_up=sandboxes.prestart,
                )
            finally:
                sandboxes.close_networks()
        _finish(storage, request, outcome, pushes, note)
    return outcome


@contextmanager
def _warm_copies(storage: Storage, isolation: str) -> Iterator[None]:
    if isolation != "chroot":
        yield
        return
    from runtime import warmcopies

    with storage.blobs.temp_dir("warm-") as directory, warmcopies.keep(directory):
        yield


def _push_plan(request: BuildRequest) -> PushPlan:
    if not request.push and not request.outputs:
        return ()
    from builder.exporters.push_targets import push_plan

    return push_plan(request.push, request.outputs, request.tags)


def _notes(events: Events) -> Callable[[str], None]:
    note = getattr(events, "note", None)
    return note if callable(note) else (lambda _m: None)


def _warn(events: Events, message: str) -> None:
    warn = getattr(events, "warning", None)
    if callable(warn):
        warn(message)


def _clean_leftovers(storage: Storage) -> None:
    """Temp files, and the secrets on /dev/shm, that builds killed mid-step left."""
    from builder.ops.secrets import store_tag, sweep_dead_secrets
    from cache.deadtmp import clean_dead_tmp

    storage.blobs.clean_tmp()
    clean_dead_tmp(storage.blobs)
    sweep_dead_secrets(store_tag(storage.root))


def _finish(
    storage: Storage,
    request: BuildRequest,
    outcome: BuildOutcome,
    pushes: PushPlan,
    note: Callable[[str], None],
) -> None:
    """After the build: ``-o -`` to stdout, the metadata file, the registry pushes."""
    streamed = [output for output in request.outputs if output.to_stdout]
    if streamed:
        from builder.exporters.outputs import write_output

        with build_guard(storage.root):
            for output in streamed:
                write_output(storage, output, outcome.digest, request.tags, sys.stdout.buffer)
    if request.metadata_file is not None:
        from builder.exporters.metadata import write_metadata

        write_metadata(request.metadata_file, outcome)
    if pushes:
        from builder.exporters.push import push_image

        for tag, wire in pushes:
            result = push_image(
                tag,
                outcome.image,
                storage.blobs,
                request.remote,
                note,
                storage.index,
                wire,
                index=outcome.index,
            )
            note(f"pushed {result.reference} digest: {result.digest}")


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


def _run_build(
    request: BuildRequest,
    storage: Storage,
    events: Events,
    sandbox: Sandbox,
    stop: threading.Event | None = None,
    mounts: bool = True,
    warm_up: Callable[[], None] | None = None,
) -> BuildOutcome:
    """Build the request against an open ``storage``; every step is reported through
    ``events``. Once ``stop`` is set no further step starts (the build is being
    cancelled). The image is in the store and the file outputs written on return."""
    started = time.time()
    dockerfile = read_dockerfile(
        request.context,
        request.dockerfile,
        request.dockerfile_text,
        lambda m: _warn(events, m),
    )
    # COPY's scans are remembered in the store: a context whose stats did not change is
    # not walked again (builder.ops.scancache).
    context = RememberingContext(request.context, storage.root, dockerfile=request.dockerfile)
    host = host_platform()
    targets = request.platforms or (host,)
    resolver = _BaseResolver(storage, request)
    plans = [
        make_plan(
            PlanRequest(
                dockerfile,
                dict(request.build_args),
                request.target,
                request.network,
                allow_insecure=request.secrets.allow_insecure,
                allow_network_host=request.secrets.allow_network_host,
                ignore_patterns=context.matcher.patterns,
                platform=target,
                build_platform=host,
                show_platform=len(targets) > 1,
            ),
            resolver,
        )
        for target in targets
    ]
    for warning in dict.fromkeys(w for p in plans for w in p.warnings):
        _warn(events, warning)
    _check_stage_names(dockerfile, request.solve.no_cache_stages)
    from builder.emulation import check_emulation

    check_emulation(plans, host)  # before any step runs
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
        mounts=mounts,
    )
    multi = len(targets) > 1
    # Held until the image is tagged and exported: a concurrent prune never takes blobs
    # we made but have not recorded yet.
    with build_guard(storage.root), open_stat_cache(storage.root) as stat_cache:
        context.hash_file = stat_cache.cached(context.hash_file)  # unchanged files: no read
        if request.cache_from:
            from builder.exporters.cache_transfer import import_caches

            import_caches(storage, request.cache_from, lambda m: _warn(events, m))
        solved = _solve_platforms(
            storage, exec_ctx, events, request, stat_cache, plans, stop, warm_up
        )
        images: list[tuple[Platform, StoredImage]] = []
        steps: list[StepResult] = []
        for target, (result, solver) in zip(targets, solved, strict=True):
            image = commit_image(
                storage,
                result,
                () if multi else request.tags,
                request.labels,
                request.annotations,
                request.solve.source_date_epoch,
            )
            images.append((target, image))
            steps += solver.steps
        index = _commit_index(storage, images, request.tags) if multi else None
        image = images[0][1]
        build_id = uuid.uuid4().hex
        shown = "-" if request.dockerfile_text is not None else str(_dockerfile_path(request))
        record = build_record(build_id, Path(shown), started, steps)
        made = replace(
            record,
            image=str(index or image.digest),
            image_id=str(index or image.config_digest),
            tags=request.tags,
            labels=request.labels,
        )
        storage.index.record_build(made)
        _write_outputs(storage, request, index or image.digest)
        if request.cache_to:
            from builder.exporters.cache_transfer import export_caches

            # Every platform's steps, one export: the stages are the same Dockerfile's.
            export_caches(storage, request.cache_to, plans[0], steps, _notes(events))
    return BuildOutcome(
        image,
        plans[0],
        tuple(steps),
        sum(count_sandbox_runs(steps, p) for p in plans),
        time.time() - started,
        build_id,
        index=index,
        images=tuple(images),
    )


def _solve_platforms(
    storage: Storage,
    exec_ctx: ExecContext,
    events: Events,
    request: BuildRequest,
    stat_cache: StatCache,
    plans: Sequence[Plan],
    stop: threading.Event | None,
    warm_up: Callable[[], None] | None = None,
) -> list[tuple[StageResult, Solver]]:
    """Solve each platform's plan against the one store, at once, ``--jobs`` shared out.

    A step that keys the same for two platforms (a FROM --platform=$BUILDPLATFORM stage's
    steps before a TARGET* ARG changes them) runs once: the solvers take the step's lock
    in the store, and the one that waited finds the other's record (``Solver._run_step``);
    ``built`` lets --no-cache reuse it too. When one platform fails, the others stop
    starting steps and its error is raised."""
    cancel = stop if stop is not None else threading.Event()
    built: set[str] = set()
    share = replace(request.solve, jobs=max(1, request.solve.jobs // len(plans)))
    solvers = [
        Solver(
            storage, exec_ctx, events, share, stat_cache, stop=cancel, built=built, warm_up=warm_up
        )
        for _ in plans
    ]
    if len(plans) == 1:
        return [(solvers[0].solve(plans[0]), solvers[0])]

    def solve(solver: Solver, plan: Plan) -> StageResult:
        try:
            return solver.solve(plan)
        except BaseException:
            cancel.set()  # no platform starts another step once one has failed
            raise

    with ThreadPoolExecutor(max_workers=len(plans), thread_name_prefix="platform") as pool:
        futures = [pool.submit(solve, s, p) for s, p in zip(solvers, plans, strict=True)]
        errors = [e for f in futures if (e := f.exception()) is not None]
    first = next((e for e in errors if not isinstance(e, BuildCancelled)), None)
    if first is not None or errors:
        raise first or errors[0]
    return [(f.result(), s) for f, s in zip(futures, solvers, strict=True)]


def _commit_index(
    storage: Storage, images: Sequence[tuple[Platform, StoredImage]], tags: Sequence[str]
) -> Digest:
    """The multi-platform image: an index over each platform's image; the tags name it."""
    from cache.images import write_index

    digest, _ = write_index(storage.blobs, images)
    for tag in tags:
        storage.index.set_tag(normalize(tag), digest)
    return digest


def _write_outputs(storage: Storage, request: BuildRequest, image: Digest) -> None:
    """The file outputs (``-o``); those to stdout are written after the build, once
    progress is done."""
    files = [output for output in request.outputs if not output.to_stdout]
    if files:
        from builder.exporters.outputs import write_output

        for output in files:
            write_output(storage, output, image, request.tags)


def _dockerfile_path(request: BuildRequest) -> Path:
    """The Dockerfile as the build history names it: absolute, symlinks resolved."""
    return find_dockerfile(request.context, request.dockerfile).resolve()


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


class _BaseResolver:
    """FROM and ``--from`` images: a ``--build-context`` of that name first, else the
    store (which pulls what is missing); each named context is made once per build."""

    def __init__(self, storage: Storage, request: BuildRequest) -> None:
        self.storage = storage
        self.request = request
        self.contexts = {c.name: c for c in request.contexts}
        self.made: dict[tuple[str, str], StoredImage] = {}

    def __call__(self, name: str, instr: ins.From) -> StoredImage:
        platform = parse_platform(instr.platform) if instr.platform else None
        try:
            if name in self.contexts:
                made = (name, str(platform))  # once per name and platform
                if made not in self.made:
                    from builder.images.namedcontexts import resolve_context

                    opts = self.request.solve
                    self.made[made] = resolve_context(
                        self.storage,
                        self.contexts[name],
                        opts.compression,
                        opts.source_date_epoch,
                        platform,
                    )
                return self.made[made]
            return self.storage.get_image(name, platform)
        except BuildError as exc:
            raise exc.located(instr.location.file, instr.location.line) from None
