"""Which stage each stage is built FROM, as the build checks read it from the text.

A stage's parent is the earlier stage its ``FROM`` names (by name or index, as written:
``FROM ${BASE}`` is not followed). Parents always come before their children, so every
question about a stage's ancestry is answered for all stages in one pass in file order,
and a walk of the whole forest visits each stage once: the checks stay linear in the
number of stages however long the chains are (a chain of n stages asked about each
stage's ancestors one by one costs n² or worse).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from builder.frontend import instructions as ins


@dataclass(frozen=True)
class StageTree:
    """``parents[i]``: the index of the stage stage ``i`` is built FROM, or None when its
    base is an image (or ``scratch``)."""

    parents: tuple[int | None, ...]

    def root(self) -> tuple[int, ...]:
        """For each stage, the first stage of its chain (itself when its base is an image)."""
        roots: list[int] = []
        for index, parent in enumerate(self.parents):
            roots.append(index if parent is None else roots[parent])
        return tuple(roots)

    def inherited(self, has: Sequence[bool]) -> tuple[bool, ...]:
        """For each stage, whether some stage it derives from (not itself) has ``has``."""
        below: list[bool] = []  # below[i]: stage i or one of its ancestors has it
        out: list[bool] = []
        for index, parent in enumerate(self.parents):
            from_parent = parent is not None and below[parent]
            out.append(from_parent)
            below.append(from_parent or has[index])
        return tuple(out)

    def walk(self) -> Iterator[tuple[int, bool]]:
        """Depth-first over the forest, without recursion: ``(i, True)`` when stage ``i``
        is entered (its ancestors entered, not left), ``(i, False)`` when it is left
        (after all its descendants). Roots and children in file order."""
        children: list[list[int]] = [[] for _ in self.parents]
        for index, parent in enumerate(self.parents):
            if parent is not None:
                children[parent].append(index)
        for root in (i for i, p in enumerate(self.parents) if p is None):
            stack = [(root, True)]
            while stack:
                index, entering = stack.pop()
                yield index, entering
                if entering:
                    stack.append((index, False))
                    stack.extend((child, True) for child in reversed(children[index]))


def stage_tree(df: ins.Dockerfile) -> StageTree:
    """Each stage's parent stage, found through the names and indexes of the stages
    before it (a later stage of the same name is never a parent)."""
    earlier: dict[str, int] = {}
    parents: list[int | None] = []
    for stage in df.stages:
        parents.append(earlier.get(stage.base.image.lower()))
        earlier.setdefault(str(stage.index), stage.index)  # the first match wins
        if stage.name:
            earlier.setdefault(stage.name, stage.index)
    return StageTree(tuple(parents))


def stage_has(df: ins.Dockerfile, test: Callable[[ins.Instruction], bool]) -> list[bool]:
    """For each stage, whether one of its instructions passes ``test``."""
    return [any(test(i) for i in stage.instructions) for stage in df.stages]
