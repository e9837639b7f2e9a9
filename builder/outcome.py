"""What a finished build gives back: the image, the plan, every step's cache result.

A module below the API and the exporters, so that ``--metadata-file``
(``builder.exporters.metadata``) can describe an outcome without importing the API.
"""

from __future__ import annotations

from dataclasses import dataclass

from builder.plan.planner import Plan
from builder.solve import StepResult
from cache.digest import Digest
from cache.images import StoredImage
from cache.oci import Platform


@dataclass(frozen=True)
class BuildOutcome:
    """``image.digest`` is the manifest digest, ``image.config_digest`` docker's image ID.

    A multi-platform build (``--platform a,b``) has ``index``, the image index its tags
    name, and ``images``, each platform's image (``image`` is the first's; ``plan`` the
    first platform's plan, ``steps`` every platform's steps in build order)."""

    image: StoredImage
    plan: Plan
    steps: tuple[StepResult, ...]
    sandbox_runs: int
    duration: float
    build_id: str = ""  # the build's record in the index
    index: Digest | None = None
    images: tuple[tuple[Platform, StoredImage], ...] = ()

    @property
    def digest(self) -> Digest:
        """What the build's names point at: the index, else the image's manifest."""
        return self.index or self.image.digest

    @property
    def image_id(self) -> Digest:
        """What -q and --iidfile print: docker's image ID, or the index's digest."""
        return self.index or self.image.config_digest

    @property
    def cached_steps(self) -> int:
        return sum(1 for s in self.steps if s.cached)

    @property
    def hit_rate(self) -> float:
        """The share of steps the cache answered, 0.0 to 1.0 (1.0 when there is no step)."""
        return self.cached_steps / len(self.steps) if self.steps else 1.0

    @property
    def time_saved(self) -> float:
        """Seconds the hits saved: what those steps took when they ran."""
        return sum(s.saved for s in self.steps if s.cached)

    @property
    def bytes_reused(self) -> int:
        """Bytes of layer blobs the hits reused instead of making again."""
        return sum(s.layer.size for s in self.steps if s.cached and s.layer)

    def summary(self) -> str:
        return f"{self.cached_steps}/{len(self.steps)} steps cached ({100 * self.hit_rate:.0f}%)"
