"""A stage's filesystem as overlay lower dirs: the unpacked layers, resolved lazily.

The solver keeps one ``StageLowers`` per stage and step; only a step that runs (or reads
another stage's files, ``COPY --from``) asks for the dirs, so a build whose every step
hits the cache never unpacks a layer nor checks an unpacked one (which walks its tree).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from builder.errors import BuildError
from builder.images.store import Storage
from cache.digest import Digest
from cache.errors import CacheError
from cache.oci import Descriptor


class StageLowers:
    """A stage's unpacked layer dirs, top-most first, unpacked (or checked) only when a
    step first needs the stage's filesystem: a build whose steps all hit the cache never
    touches them. One node per layer on top of its parent's; each resolves once.

    ``path`` is the layer's dir when the build just made it, else None (``ensure``
    unpacks or checks it). The root node holds a base image's layers, or none, resolved
    through ``ensure_base`` (default: the store's ``ensure``).
    """

    def __init__(
        self,
        storage: Storage,
        parent: StageLowers | None,
        layers: tuple[tuple[Descriptor, Digest], ...] = (),
        path: Path | None = None,
        ensure_base: Callable[[Descriptor, Digest], Path] | None = None,
    ) -> None:
        self._storage, self._parent, self._layers, self._path = storage, parent, layers, path
        # How a base layer is unpacked or checked (the solver's: once per build).
        self._ensure_base = ensure_base
        self._lock = threading.Lock()
        self._paths: tuple[Path, ...] | None = None

    def plus(self, layer: Descriptor, diff_id: Digest, path: Path | None) -> StageLowers:
        """These lowers with one more layer on top."""
        return StageLowers(self._storage, self, ((layer, diff_id),), path)

    def paths(self) -> tuple[Path, ...]:
        with self._lock:
            if self._paths is None:
                self._paths = self._resolve()
            return self._paths

    def _resolve(self) -> tuple[Path, ...]:
        if self._parent is None:  # the base image's layers
            try:
                ensure = self._ensure_base or self._storage.layers.ensure
                dirs = [ensure(layer, diff) for layer, diff in self._layers]
            except CacheError as exc:
                raise BuildError(
                    f"cannot unpack a base layer: {exc.message}", hint=exc.hint
                ) from None
            return top_most_once(reversed(dirs))
        ((layer, diff_id),) = self._layers
        top = self._path if self._path is not None else self._storage.layers.ensure(layer, diff_id)
        return top_most_once([top, *self._parent.paths()])


class StageRoots(Mapping[int, tuple[Path, ...]]):
    """``ExecContext.stage_roots``: each finished stage's lowers, resolved when read."""

    def __init__(self, lowers: Mapping[int, StageLowers]) -> None:
        self._lowers = lowers

    def __getitem__(self, stage: int) -> tuple[Path, ...]:
        return self._lowers[stage].paths()

    def __iter__(self) -> Iterator[int]:
        return iter(self._lowers)

    def __len__(self) -> int:
        return len(self._lowers)


def top_most_once(lowers: Iterable[Path]) -> tuple[Path, ...]:
    """Each layer dir once, where it is top-most (lowers are given top-most first).

    Two identical layers (two steps that changed nothing, or a re-added layer) share one
    unpacked dir, and overlayfs refuses a lower listed twice (ELOOP). Dropping the lower
    copy changes nothing: the upper copy holds every path it has.
    """
    return tuple(dict.fromkeys(lowers))
