"""Walk a plan: key every step, reuse what the cache has, execute the rest.

Independent stages run concurrently (a thread per stage, at most ``jobs`` at once). A
stage starts once its base stage is built, and each step waits only for the stages it
reads (``PlannedStep.reads``: COPY --from, RUN --mount=from), so a stage's first steps
overlap the stages it copies from later. Per filesystem step: key (pure), look the
key up, on a miss run the step on an overlay of the parent's layers and snapshot the
upper dir into a layer. The result of each step, and why it missed, is reported.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from builder.errors import BuildCancelled, BuildError
from builder.images.history import fill_history, image_created, rfc3339
from builder.images.lowers import StageLowers, StageRoots
from builder.images.store import Storage
from builder.keyahead import KeysAhead
from builder.ops import copy as copy_op
from builder.ops import run as run_op
from builder.ops import workdir as workdir_op
from builder.ops.base import ExecContext, Op
from builder.ops.cachemounts import cache_mount_ids, prune_ids
from builder.ops.sources.remote import RemoteFetches
from builder.plan.specs import CopySpec, RunSpec, Spec, WorkdirSpec
from builder.plan.stages import Plan, PlannedStep, StagePlan
from cache.codecs import Compression
from cache.digest import Digest, sha256_file
from cache.errors import CacheError
from cache.fscache import StatCache
from cache.index import Hit, StepRecord
from cache.keys import KeyInputs, explain_miss, inputs_from_json, inputs_to_json, step_key
from cache.oci import Descriptor, History, ImageConfig
from runtime.errors import RuntimeFailure
from runtime.spec import Rootfs

if TYPE_CHECKING:
    from cache.layers import LayerBlob

# BuildKit marks every history entry its Dockerfile frontend writes with this comment.
_COMMENT = "buildkit.dockerfile.v0"

# Each kind of spec the planner emits, and the op that keys and executes it.
_RUN: Op[RunSpec] = run_op
_COPY: Op[CopySpec] = copy_op
_WORKDIR: Op[WorkdirSpec] = workdir_op
OPS: Mapping[type[Spec], Op[Any]] = {RunSpec: _RUN, CopySpec: _COPY, WorkdirSpec: _WORKDIR}


@dataclass(frozen=True)
class SolveOptions:
    no_cache: bool = False
    compression: Compression = Compression.ZSTD
    source_date_epoch: int | None = None
    jobs: int = 2
    # --no-cache-filter: stages (lower-case names) whose steps all run, as --no-cache
    no_cache_stages: frozenset[str] = frozenset()


@dataclass(frozen=True)
class StepResult:
    step_id: str
    stage: int
    position: int
    title: str
    key: str | None  # None for metadata-only steps
    cached: bool
    reason: str  # why it missed ("" on a hit or for metadata)
    duration: float
    layer: Descriptor | None
    started: float
    finished: float
    saved: float = 0.0  # on a hit: how long the step took when it ran (the time saved)
    made: float = 0.0  # unix time its layer was made (the cache record's; kept on a hit)


@dataclass(frozen=True)
class StageResult:
    index: int
    key: str
    layers: tuple[Descriptor, ...]
    config: ImageConfig  # with diff_ids and history
    lowers: StageLowers  # unpacked layer dirs, top-most first, resolved when needed
    base_layers: int = 0  # how many of ``layers``, from the bottom, are the base image's


class Events(Protocol):
    """What the solver tells the user about (``builder.cli.progress`` implements it)."""

    def step_started(self, stage: StagePlan, step: PlannedStep) -> None: ...
    def step_log(self, step: PlannedStep, line: str) -> None: ...
    def step_finished(self, stage: StagePlan, step: PlannedStep, result: StepResult) -> None: ...


def _blob_hash(path: Path) -> bytes:
    return sha256_file(path).hex.encode()


def _blob_hex(blob: LayerBlob) -> bytes:
    """What ``_blob_hash`` gives for the blob just written (its digest, known already)."""
    return blob.digest.hex.encode()


class Solver:
    """Builds the stages of one plan against one store."""

    def __init__(
        self,
        storage: Storage,
        ctx: ExecContext,
        events: Events,
        options: SolveOptions,
        stat_cache: StatCache | None = None,
        *,
        stop: threading.Event | None = None,
        built: set[str] | None = None,
        warm_up: Callable[[], None] | None = None,
    ) -> None:
        """``built``: the keys already run in this build (shared by a multi-platform
        build's solvers, so --no-cache runs a step both platforms key alike once).
        ``warm_up``: called once, at the first step that misses when a RUN may execute
        after it (``LazySandboxes.prestart``)."""
        self._storage = storage
        # Called once, at the first step that misses, when the plan has RUN steps: the
        # sandboxes start then, behind that step's work (LazySandboxes.prestart).
        self._warm_up = warm_up
        self._last_run: dict[int, int] = {}  # stage index -> position of its last RUN
        # Set when the build is being cancelled (a signal): no further step starts.
        self._stop = stop if stop is not None else threading.Event()
        # Remembers which layer blobs were checked, so a hit re-reads a blob only when
        # its stat changed (as a write to it does); None: check every hit in full.
        self._stat_cache = stat_cache
        self._corrupt: set[str] = set()  # keys whose cached layer blob has gone bad
        self._ctx = ctx
        self._events = events
        self._options = options
        # Every new history entry's time with SOURCE_DATE_EPOCH; "" without one: the
        # layer's own time, or one filled in at the end (builder.images.history).
        epoch = options.source_date_epoch
        self._created = rfc3339(epoch) if epoch is not None else ""
        self._lock = threading.Lock()
        self._results: dict[int, StageResult] = {}
        self._built: set[str] = built if built is not None else set()  # see _lookup
        self._hits: list[Hit] = []  # written to the index once, when the solve ends
        self._stage_names: dict[int, str] = {}
        self._platforms: dict[int, str] = {}  # each stage's platform, as keys carry it
        # Base layers this build unpacked or checked (diff_id -> dir): each is checked
        # for tampering once per build, not once per stage that starts from it.
        self._base_dirs: dict[Digest, Path] = {}
        # Per step: what keying its remote sources learnt, reused when it executes.
        self._fetches: dict[str, RemoteFetches] = {}
        self.steps: list[StepResult] = []
        self._keys_pool: ThreadPoolExecutor | None = None  # set while solve runs

    def solve(self, plan: Plan) -> StageResult:
        """Build every stage of the plan; return the target stage's result.

        The cache hits are recorded in the index (when each record was last used, the
        inputs each step last had) in one transaction at the end, also when a step
        fails."""
        self._last_run = {
            st.index: max(i for i, s in enumerate(st.steps) if isinstance(s.spec, RunSpec))
            for st in plan.stages
            if any(isinstance(s.spec, RunSpec) for s in st.steps)
        }
        try:
            result = self._solve(plan)
        except BaseException:
            with contextlib.suppress(CacheError):  # the build's own error comes first
                self._record_hits()
            raise
        self._record_hits()
        return result

    def _record_hits(self) -> None:
        with self._lock:
            hits, self._hits = self._hits, []
        self._storage.index.record_hits(hits)

    def _solve(self, plan: Plan) -> StageResult:
        futures: dict[int, Future[StageResult]] = {}
        self._stage_names = {s.index: (s.name or "").lower() for s in plan.stages}
        self._platforms = {s.index: str(s.platform) for s in plan.stages}
        self._prune_ignored_cache_mounts(plan)
        jobs = max(1, self._options.jobs)
        with (
            ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="keys") as self._keys_pool,
            ThreadPoolExecutor(max_workers=jobs) as pool,
        ):
            # Dependencies come first, and a stage waits only for earlier ones: with FIFO
            # starts the earliest unfinished stage always has a worker, so no deadlock.
            for stage in plan.stages:
                deps = {d: futures[d] for d in stage.deps}
                futures[stage.index] = pool.submit(self._stage_after, stage, deps)
            for future in futures.values():
                future.exception()  # wait for all, so no stage is left mounting when we raise
        for stage in plan.stages:
            futures[stage.index].result()
        self.steps.sort(key=lambda r: (r.stage, r.position))
        target = self._results[plan.target]
        history = fill_history(target.config.history)
        config = replace(target.config, created=image_created(history), history=history)
        return replace(target, config=config)

    def _prune_ignored_cache_mounts(self, plan: Plan) -> None:
        """RUNs that ignore the cache start their cache mounts empty (BuildKit #5305)."""
        ignored = [
            mount
            for stage in plan.stages
            for step in stage.steps
            if isinstance(step.spec, RunSpec) and self._no_cache(step)
            for mount in step.spec.mounts
        ]
        ids = cache_mount_ids(tuple(ignored))
        if ids and self._ctx.store_root is not None:
            prune_ids(self._ctx.store_root, ids)

    def _stage_after(
        self, stage: StagePlan, deps: Mapping[int, Future[StageResult]]
    ) -> StageResult:
        if stage.base_stage is not None:
            deps[stage.base_stage].result()  # raises the base stage's error
        self._check_stop()
        result = self._build_stage(stage, deps)
        with self._lock:
            self._results[stage.index] = result
        return result

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise BuildCancelled("the build is being cancelled: no further step starts")

    def _start(self, stage: StagePlan) -> StageResult:
        if stage.base_stage is not None:
            base = self._results[stage.base_stage]
            return replace(base, index=stage.index)
        if stage.base_image is None:
            empty = StageLowers(self._storage, None)
            return StageResult(stage.index, "scratch", (), ImageConfig(), empty)
        image = stage.base_image
        layers = image.manifest.layers
        pairs = tuple(zip(layers, image.config.diff_ids, strict=True))
        lowers = StageLowers(self._storage, None, pairs, ensure_base=self._base_dir)
        return StageResult(
            stage.index, f"image:{image.digest}", layers, image.config, lowers, len(layers)
        )

    def _base_dir(self, layer: Descriptor, diff_id: Digest) -> Path:
        """A base layer's unpacked dir, unpacked or checked once per build (not per stage)."""
        with self._lock:
            known = self._base_dirs.get(diff_id)
        if known is not None and known.is_dir():
            return known
        found = self._storage.layers.ensure(layer, diff_id)
        with self._lock:
            self._base_dirs[diff_id] = found
        return found

    def _build_stage(
        self, stage: StagePlan, deps: Mapping[int, Future[StageResult]]
    ) -> StageResult:
        current = self._start(stage)
        assert self._keys_pool is not None, "stages are built by solve()"
        ahead = KeysAhead(self._keys_pool, self._inputs_of, self._stop)
        history = list(current.config.history)
        diff_ids = list(current.config.diff_ids)
        layers, lowers = list(current.layers), current.lowers
        key = current.key
        for i, step in enumerate(stage.steps):
            if step.spec is None:
                if step.created_by:  # "": no history entry (ONBUILD, as BuildKit)
                    history.append(
                        History(self._created, step.created_by, _COMMENT, empty_layer=True)
                    )
                continue
            ahead.start(stage.steps[i:], key)  # a no-op while a chain covers this step
            for read in sorted(step.reads):
                deps[read].result()  # the stages it reads are built (or raise their error)
            self._check_stop()
            self._events.step_started(stage, step)
            result, diff_id, lower = self._run_step(stage, step, step.spec, key, lowers, ahead)
            key = result.key or key
            if result.layer is not None and diff_id is not None:
                layers.append(result.layer)
                diff_ids.append(diff_id)
                lowers = lowers.plus(result.layer, diff_id, lower)
            created = self._created or (rfc3339(result.made) if result.layer else "")
            history.append(History(created, step.created_by, _COMMENT, result.layer is None))
            with self._lock:
                self.steps.append(result)
            self._events.step_finished(stage, step, result)
        final = stage.steps[-1].config if stage.steps else stage.base_config.config
        config = replace(
            stage.base_config,
            created="",  # set once, on the target (solve)
            config=final,
            diff_ids=tuple(diff_ids),
            history=tuple(history),
        )
        base = current.base_layers
        return StageResult(stage.index, key, tuple(layers), config, lowers, base)

    def _run_step(
        self,
        stage: StagePlan,
        step: PlannedStep,
        spec: Spec,
        parent: str,
        lowers: StageLowers,
        ahead: KeysAhead | None = None,
    ) -> tuple[StepResult, Digest | None, Path | None]:
        """The step's result, its layer's diff_id, and its layer dir when it ran (None on a
        hit: the dir is unpacked or checked only if a later step needs it)."""
        started = time.time()
        ctx = self._step_context(step)
        try:
            inputs = ahead.take(step, parent) if ahead is not None else None
            if inputs is None:
                inputs = self._keyed(
                    step, OPS[type(spec)].key_inputs(spec, parent, step.key_text, ctx)
                )
        except BuildError as exc:
            raise exc.located(
                step.instruction.location.file, step.instruction.location.line
            ) from None
        key = step_key(inputs)
        if (hit := self._lookup(step, key, inputs, started)) is not None:
            return hit
        if self._warm_up is not None and self._run_may_follow(stage, step):
            with self._lock:
                warm_up, self._warm_up = self._warm_up, None
            if warm_up is not None:
                warm_up()
        # Another process (or stage) may be running the same step: wait for it, then
        # look again, so a step is never run twice at the same time on one store.
        with self._storage.blobs.lock(f"step-{key}"):
            if (hit := self._lookup(step, key, inputs, started)) is not None:
                return hit
            reason = self._reason(step, key, inputs)
            layer, diff_id, lower = self._execute(step, spec, ctx, lowers)
            result = self._result(step, key, False, reason, layer, started)
            result = replace(result, made=result.finished)
            with self._lock:
                self._built.add(key)
            # The record keeps the duration this build reports, so a later hit's
            # time_saved equals what this run took, and the time its layer was made,
            # which a hit puts in the image's history as BuildKit does.
            self._storage.index.put_step(
                StepRecord(
                    key, layer, diff_id, inputs_to_json(inputs), result.duration, result.made
                )
            )
        self._storage.index.set_last_inputs(step.id, inputs_to_json(inputs))
        return result, diff_id, lower

    def _run_may_follow(self, stage: StagePlan, step: PlannedStep) -> bool:
        """Whether a RUN step may execute after ``step``: a later one in its stage, or any
        in another stage (which may not have run yet). A RUN starts the sandboxes itself."""
        if isinstance(step.spec, RunSpec):
            return False
        last = self._last_run.get(stage.index)
        if last is not None and last > stage.steps.index(step):
            return True
        return any(index != stage.index for index in self._last_run)

    def _inputs_of(self, step: PlannedStep, parent: str) -> KeyInputs:
        """The step's key inputs (keyahead computes them ahead with this)."""
        assert step.spec is not None
        ctx = self._step_context(step)
        return self._keyed(
            step, OPS[type(step.spec)].key_inputs(step.spec, parent, step.key_text, ctx)
        )

    def _keyed(self, step: PlannedStep, inputs: KeyInputs) -> KeyInputs:
        """The inputs with the step's stage platform: no hit across platforms."""
        return replace(inputs, platform=self._platforms.get(step.stage, inputs.platform))

    def _lookup(
        self, step: PlannedStep, key: str, inputs: KeyInputs, started: float
    ) -> tuple[StepResult, Digest | None, Path | None] | None:
        """The cached result of the step, or None when it must run."""
        index = self._storage.index
        # --no-cache ignores earlier builds, but a step this build already ran (the same
        # key reached from two stages) is reused: identical steps run once per build.
        with self._lock:
            fresh_only = self._no_cache(step) and key not in self._built
        record = None if fresh_only else index.get_step(key)
        if record is None or not self._usable(record):
            return None
        with self._lock:
            self._hits.append(Hit(key, step.id, inputs_to_json(inputs), time.time()))
        result = self._result(step, key, True, "", record.layer, started)
        return replace(result, saved=record.duration, made=record.created), record.diff_id, None

    def _usable(self, record: StepRecord) -> bool:
        # A record without a layer was written by a pybuild that skipped empty layers:
        # run the step again, so the image gets the empty layer BuildKit would commit.
        if record.layer is None or not self._storage.blobs.has(record.layer.digest):
            return False
        if self._intact(record.layer.digest):
            return True
        # Its blob went bad: run the step again; committing its layer replaces the blob.
        with self._lock:
            self._corrupt.add(record.key)
        return False

    def _intact(self, digest: Digest) -> bool:
        """The blob's content matches its digest; re-read only if its stat changed."""
        blobs = self._storage.blobs
        if self._stat_cache is None:
            return blobs.intact(digest)
        try:
            actual = self._stat_cache.hash_file(blobs.path(digest), _blob_hash)
        except (CacheError, FileNotFoundError):
            return False  # removed meanwhile
        return actual == digest.hex.encode()

    def _no_cache(self, step: PlannedStep) -> bool:
        """--no-cache, or --no-cache-filter naming the step's stage."""
        stage = self._stage_names.get(step.stage, "")
        return self._options.no_cache or (bool(stage) and stage in self._options.no_cache_stages)

    def _reason(self, step: PlannedStep, key: str, inputs: KeyInputs) -> str:
        if self._options.no_cache:
            return "--no-cache"
        if self._no_cache(step):
            return "--no-cache-filter"
        with self._lock:
            if key in self._corrupt:
                return "its cached layer is corrupt in the store"
        previous = self._storage.index.last_inputs(step.id)
        try:
            old = inputs_from_json(previous) if previous else None
        except CacheError:
            return "cached by another pybuild version"
        env_names = {item.partition("=")[0] for item in step.config.env}
        reasons = explain_miss(old, inputs, env_names)
        return "; ".join(reasons) if reasons else "not in the cache"

    def _step_context(self, step: PlannedStep) -> ExecContext:
        def log(line: str) -> None:
            self._events.step_log(step, line)

        with self._lock:
            keys = {i: r.key for i, r in self._results.items()}
            roots = StageRoots({i: r.lowers for i, r in self._results.items()})
            fetches = self._fetches.setdefault(step.id, RemoteFetches())
        return replace(self._ctx, log=log, stage_keys=keys, stage_roots=roots, fetches=fetches)

    def _execute(
        self, step: PlannedStep, spec: Spec, ctx: ExecContext, lowers: StageLowers
    ) -> tuple[Descriptor, Digest, Path]:
        below = lowers.paths()
        # A locked temp dir: a concurrent build's clean_tmp never removes it mid-step.
        with self._storage.blobs.temp_dir("step-") as work:
            upper, overlay_work, scratch = work / "upper", work / "work", work / "scratch"
            for d in (upper, overlay_work, scratch):
                d.mkdir()
            self._run_spec(
                step,
                spec,
                # volatile: the layer blob written below is what must last
                Rootfs(below, upper, overlay_work, volatile=True),
                replace(ctx, scratch=scratch),
            )
            from cache.layers import write_layer  # here: a build that hits writes none

            try:
                # The file times as they are: the cached layer serves builds with any
                # epoch; the image clamps them (builder.exporters.image, cache.clamp).
                blob = write_layer(
                    upper, self._storage.blobs, compression=self._options.compression, record=True
                )
            except CacheError as exc:
                location = step.instruction.location
                raise BuildError(
                    f"{step.title}: {exc.message}",
                    hint=exc.hint,
                    file=location.file,
                    line=location.line,
                ) from None
            # A step that changed nothing still commits a layer (the 1024-byte empty
            # tar), as BuildKit does: layer count and history match its images.
            layer = Descriptor(blob.media_type, blob.digest, blob.size)
            if self._stat_cache is not None:  # the next hit need not re-hash the blob
                self._stat_cache.remember(self._storage.blobs.path(blob.digest), _blob_hex(blob))
            lower = self._storage.layers.adopt(blob.diff_id, upper, blob.record)
            return layer, blob.diff_id, lower

    def _run_spec(self, step: PlannedStep, spec: Spec, rootfs: Rootfs, ctx: ExecContext) -> None:
        location = step.instruction.location
        try:
            OPS[type(spec)].execute(spec, rootfs, ctx)
        except RuntimeFailure as exc:
            raise BuildError(
                f"sandbox failed: {exc.message}",
                hint=exc.hint,
                file=location.file,
                line=location.line,
            ) from None
        except BuildError as exc:
            raise exc.located(location.file, location.line) from None
        except OSError as exc:
            raise BuildError(
                f"{step.title}: {exc}", file=location.file, line=location.line
            ) from None

    def _result(
        self,
        step: PlannedStep,
        key: str,
        cached: bool,
        reason: str,
        layer: Descriptor | None,
        started: float,
    ) -> StepResult:
        now = time.time()
        return StepResult(
            step.id,
            step.stage,
            step.position,
            step.title,
            key,
            cached,
            reason,
            now - started,
            layer,
            started,
            now,
        )


def count_sandbox_runs(results: list[StepResult], plan: Plan) -> int:
    """How many executed (missed) steps were RUN steps, i.e. started a sandbox."""
    runs = {s.id for st in plan.stages for s in st.steps if isinstance(s.spec, RunSpec)}
    return sum(1 for r in results if not r.cached and r.step_id in runs)
