"""The ARGs a stage has declared so far, extended one declaration at a time in O(1).

Planning threads a frozen ``StageState`` through a stage's instructions, and a stage may
declare thousands of ARGs. Copying the declarations into a new tuple or dict at every
ARG (and again at every word expanded) made planning quadratic in their number. An
``ArgScope`` is instead a view of a shared, append-only log of declarations: the first
``size`` entries. Declaring on the newest view appends to the log and returns a view
one entry longer; the views handed out earlier still see only their own entries, so to
its readers a scope is as immutable as a tuple. (Declaring on an older view, which
planning never does, copies the log first.)

A re-declared ARG takes its latest value and moves last in ``items()`` (the order
BuildKit gives the RUN environment); ``first_order()`` keeps first declarations (the
order of the RUN history prefix).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator


class _Log:
    """Declarations in order, and for each name the positions it was declared at."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, str | None]] = []
        self.positions: dict[str, list[int]] = {}
        self.ranks: dict[str, int] = {}  # name -> how many names were declared before it

    def append(self, name: str, value: str | None) -> None:
        self.positions.setdefault(name, []).append(len(self.entries))
        self.ranks.setdefault(name, len(self.ranks))
        self.entries.append((name, value))

    def prefix(self, size: int) -> _Log:
        copy = _Log()
        for name, value in self.entries[:size]:
            copy.append(name, value)
        return copy


class ArgScope:
    """Declared ARG names with their values (None: declared without one)."""

    __slots__ = ("_log", "_size")

    def __init__(self) -> None:
        self._log = _Log()
        self._size = 0

    def declare(self, name: str, value: str | None) -> ArgScope:
        """A scope with ``name`` declared (again) last, with ``value``; ``self`` unchanged."""
        log = self._log if self._size == len(self._log.entries) else self._log.prefix(self._size)
        log.append(name, value)
        scope = ArgScope.__new__(ArgScope)
        scope._log, scope._size = log, self._size + 1
        return scope

    def _latest(self, name: str) -> int | None:
        """The position of ``name``'s latest declaration in this view, if any."""
        positions = self._log.positions.get(name)
        if not positions:
            return None
        if positions[-1] < self._size:  # the usual case: nothing declared after this view
            return positions[-1]
        at = bisect.bisect_left(positions, self._size) - 1
        return positions[at] if at >= 0 else None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._latest(name) is not None

    def value(self, name: str) -> str | None:
        """The latest value of ``name``; None when undeclared or declared without one."""
        at = self._latest(name)
        return None if at is None else self._log.entries[at][1]

    def rank(self, name: str) -> int | None:
        """Where ``name`` is in ``first_order()`` (None: undeclared), in O(1)."""
        return self._log.ranks[name] if name in self else None

    def items(self) -> Iterator[tuple[str, str | None]]:
        """Each declared name once with its latest value, ordered by latest declaration."""
        for at, (name, value) in enumerate(self._log.entries[: self._size]):
            if self._latest(name) == at:
                yield name, value

    def first_order(self) -> Iterator[str]:
        """Each declared name once, ordered by first declaration."""
        for at, (name, _) in enumerate(self._log.entries[: self._size]):
            if self._log.positions[name][0] == at:
                yield name

    def __bool__(self) -> bool:
        return self._size > 0

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ArgScope) and list(self.items()) == list(other.items())

    def __hash__(self) -> int:
        return hash(tuple(self.items()))

    def __repr__(self) -> str:
        return f"ArgScope({dict(self.items())!r})"
