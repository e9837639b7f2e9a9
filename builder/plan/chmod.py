"""COPY/ADD ``--chmod``: an octal mode, or a symbolic one applied to each copied entry.

Symbolic modes follow chmod(1) as BuildKit applies them (``u+x``, ``g=r``, ``a-w,o=``,
``+X``): clauses separated by commas, each ``[ugoa]*[+-=][rwxXst]*`` (or a copy of
another class, ``g=u``); an omitted class means all classes, without any umask. ``X``
grants execute to directories and to files that already have an execute bit.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from builder.errors import DockerfileError

_CLAUSE = re.compile(r"([ugoa]*)([-+=])([rwxXst]*|[ugo])")
_CLASS_SHIFT = {"u": 6, "g": 3, "o": 0}


@dataclass(frozen=True)
class Chmod:
    """A parsed ``--chmod`` value; ``apply`` gives the mode for one entry."""

    text: str
    octal: int | None
    clauses: tuple[tuple[str, str, str], ...] = ()

    def apply(self, mode: int, is_dir: bool) -> int:
        """The permission bits an entry gets, from its source permission bits ``mode``."""
        if self.octal is not None:
            return self.octal
        for who, op, perms in self.clauses:
            mode = _apply_clause(mode & 0o7777, is_dir, who or "ugo", op, perms)
        return mode


def parse_chmod(value: str) -> Chmod:
    """Parse ``value``; raises DockerfileError (no location) when it is neither form."""
    if value and all(c in "01234567" for c in value):
        mode = int(value, 8)
        if mode > 0o7777:
            raise DockerfileError(f"--chmod={value}: mode out of range (at most 7777)")
        return Chmod(value, mode)
    clauses = []
    for part in value.split(","):
        match = _CLAUSE.fullmatch(part)
        if match is None:
            raise DockerfileError(
                f"--chmod={value}: invalid mode {part!r}",
                hint="use an octal mode (0755) or a symbolic one (u+x,g=r,o-w)",
            )
        who, op, perms = match.groups()
        clauses.append((who.replace("a", "ugo"), op, perms))
    return Chmod(value, None, tuple(clauses))


def _bits(mode: int, who: str, perms: str, is_dir: bool) -> int:
    if perms in _CLASS_SHIFT:  # g=u: copy another class's rwx
        rwx = (mode >> _CLASS_SHIFT[perms]) & 0o7
        return sum(rwx << _CLASS_SHIFT[w] for w in set(who))
    bits = 0
    for p in perms:
        for w in set(who):
            shift = _CLASS_SHIFT[w]
            if p == "r":
                bits |= 0o4 << shift
            elif p == "w":
                bits |= 0o2 << shift
            elif p == "x" or (p == "X" and (is_dir or mode & 0o111)):
                bits |= 0o1 << shift
            elif p == "s" and w in "ug":
                bits |= 0o4000 if w == "u" else 0o2000
            elif p == "t" and w == "o":
                bits |= 0o1000
    return bits


def _apply_clause(mode: int, is_dir: bool, who: str, op: str, perms: str) -> int:
    bits = _bits(mode, who, perms, is_dir)
    if op == "+":
        return mode | bits
    if op == "-":
        return mode & ~bits
    cleared = mode
    for w in set(who):
        cleared &= ~(0o7 << _CLASS_SHIFT[w])
        cleared &= ~{"u": 0o4000, "g": 0o2000, "o": 0o1000}[w]
    return cleared | bits
