"""``# check=`` comments just above an instruction: they apply to that instruction only.

BuildKit keeps the comment lines before each instruction (parser.Node.PrevComment) and
merges the first ``check`` directive among them into the linter for that instruction
(linter.WithMergedConfigFromComments, used when parsing and dispatching it), so
``# check=skip=SecretsUsedInArgOrEnv // why`` silences that rule there alone. The value
ends at the first space, which leaves room for such a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")


def skipped_here(lines: Sequence[str], line: int, rule: str) -> bool:
    """True when a ``# check=skip=`` comment above the instruction at ``line`` (1-based)
    names ``rule`` or ``all``. Comment and blank lines above it are read, nearest last."""
    above: list[str] = []
    at = line - 2
    while 0 <= at < len(lines):
        text = lines[at].strip()
        if text and not text.startswith("#"):
            break
        if text == "#":  # an empty comment line ends the block (BuildKit parser)
            break
        if text:
            above.append(text)
        at -= 1
    for comment in reversed(above):
        found = _DIRECTIVE.match(comment)
        if not found or found[1].lower() != "check":
            continue
        value = found[2].split(" ", 1)[0]
        for part in value.split(";"):
            key, _, names = part.partition("=")
            if key.strip() == "skip":
                skip = {n.strip() for n in names.split(",")}
                return "all" in skip or rule in skip
        return False
    return False
