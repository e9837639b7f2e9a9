"""Cache keys: pure, versioned and explainable (STYLE habit 3).

A key is the sha256 of the canonical JSON of a ``KeyInputs`` record plus the format
version. The record is stored next to the result, so a miss is explained by comparing
the old record with the new one field by field. Nothing here touches a file or a clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cache.digest import sha256_bytes
from cache.errors import CacheError
from cache.oci import canonical_json

# Bump when the meaning or the serialisation of any field changes: every old key then
# misses instead of matching a result built under different rules.
KEY_VERSION = 1

Pairs = tuple[tuple[str, str], ...]
_SHOWN = 40  # longest value quoted in a reason before it is shortened


@dataclass(frozen=True)
class KeyInputs:
    """Everything that decides a step's result.

    ``env`` and ``extra`` are sets of named values, so they are kept sorted: the order a
    caller lists them in never changes the key. ``sources`` keep their order, which
    COPY semantics depend on.
    """

    parent: str
    instruction: str
    env: Pairs
    sources: Pairs = ()
    platform: str = "linux/amd64"
    extra: Pairs = ()

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__, once, at construction.
        object.__setattr__(self, "env", _sorted_pairs(self.env))
        object.__setattr__(self, "sources", _pairs(self.sources))
        object.__setattr__(self, "extra", _sorted_pairs(self.extra))


def _pairs(items: Sequence[Sequence[str]]) -> Pairs:
    out = []
    for item in items:
        if len(item) != 2:
            raise CacheError(f"key input pair must have two items, got {item!r}")
        out.append((str(item[0]), str(item[1])))
    return tuple(out)


def _sorted_pairs(items: Sequence[Sequence[str]]) -> Pairs:
    return tuple(sorted(_pairs(items)))


def _to_obj(inputs: KeyInputs) -> dict[str, Any]:
    return {
        "version": KEY_VERSION,
        "parent": inputs.parent,
        "instruction": inputs.instruction,
        "env": [list(p) for p in inputs.env],
        "sources": [list(p) for p in inputs.sources],
        "platform": inputs.platform,
        "extra": [list(p) for p in inputs.extra],
    }


def inputs_to_json(inputs: KeyInputs) -> str:
    """Canonical JSON of the inputs, with the key format version."""
    return canonical_json(_to_obj(inputs)).decode()


def inputs_from_json(text: str) -> KeyInputs:
    """Parse ``inputs_to_json`` output; CacheError if malformed or of another version."""
    try:
        obj = json.loads(text)
        version = obj["version"]
        if version != KEY_VERSION:
            raise CacheError(
                f"cache key inputs have format version {version}, this pybuild uses {KEY_VERSION}",
                hint="the step was cached by another pybuild version; it will be rebuilt",
            )
        return KeyInputs(
            parent=str(obj["parent"]),
            instruction=str(obj["instruction"]),
            env=_pairs(obj["env"]),
            sources=_pairs(obj["sources"]),
            platform=str(obj["platform"]),
            extra=_pairs(obj["extra"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"malformed cache key inputs: {exc}") from None


def step_key(inputs: KeyInputs) -> str:
    """The cache key: sha256 hex of the canonical JSON of the versioned inputs."""
    return sha256_bytes(canonical_json(_to_obj(inputs))).hex


def explain_miss(old: KeyInputs | None, new: KeyInputs) -> list[str]:
    """Human reasons why ``new`` keys differently from ``old``, field by field.

    ``old`` is the previous build's inputs for the same Dockerfile step (None when there
    was none). Returns [] when the inputs are equal.
    """
    if old is None:
        return ["first build"]
    reasons: list[str] = []
    if old.parent != new.parent:
        reasons.append(_parent_reason(old.parent, new.parent))
    if old.instruction != new.instruction:
        reasons.append("instruction text changed")
    reasons += _pair_reasons("ARG/ENV", old.env, new.env)
    reasons += _source_reasons(old.sources, new.sources)
    if old.platform != new.platform:
        reasons.append(f"platform changed ({old.platform} → {new.platform})")
    reasons += _pair_reasons("option", old.extra, new.extra)
    return reasons


def _is_root(parent: str) -> bool:
    return parent == "scratch" or parent.startswith("image:")


def _parent_reason(old: str, new: str) -> str:
    if _is_root(old) and _is_root(new):
        return f"base image changed ({_show_base(old)} → {_show_base(new)})"
    return "parent step missed"


def _show_base(parent: str) -> str:
    if parent == "scratch":
        return "scratch"
    digest = parent.removeprefix("image:")
    algorithm, _, hexpart = digest.partition(":")
    return f"{algorithm}:{hexpart[:12]}" if hexpart else digest


def _show(value: str) -> str:
    return value if len(value) <= _SHOWN else value[: _SHOWN - 1] + "…"


def _pair_reasons(label: str, old: Pairs, new: Pairs) -> list[str]:
    before, after = dict(old), dict(new)
    reasons = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before:
            reasons.append(f"{label} {name} added")
        elif name not in after:
            reasons.append(f"{label} {name} removed")
        elif before[name] != after[name]:
            reasons.append(f"{label} {name} changed ({_show(before[name])} → {_show(after[name])})")
    return reasons


def _source_reasons(old: Pairs, new: Pairs) -> list[str]:
    before, after = dict(old), dict(new)
    reasons = []
    for name in dict.fromkeys([n for n, _ in old] + [n for n, _ in new]):
        if name not in before:
            reasons.append(f"source {name} added")
        elif name not in after:
            reasons.append(f"source {name} removed")
        elif before[name] != after[name]:
            reasons.append(f"source {name} changed")
    if not reasons and old != new:
        reasons.append("sources reordered")
    return reasons
