"""Cache keys: pure, versioned and explainable (STYLE habit 3).

A key is the sha256 of the canonical JSON of a ``KeyInputs`` record plus the format
version. The record is stored next to the result, so a miss is explained by comparing
the old record with the new one field by field. Nothing here touches a file or a clock.
"""

from __future__ import annotations

import json
import stat
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache.digest import sha256_bytes
from cache.errors import CacheError
from cache.oci import canonical_json, host_platform

# Bump when the meaning or the serialisation of any field changes: every old key then
# misses instead of matching a result built under different rules.
# 2: COPY --from and RUN --mount=from= key on the content they use; COPY/ADD results
# changed for the same inputs (stage owners and hard links kept, --chmod on created
# dirs, ADD --chown on archive members).
#    a record's layer keeps its files' real times; SOURCE_DATE_EPOCH is applied when
# the image is assembled (cache.clamp), so version 1 layers clamped at build time miss.
KEY_VERSION = 2

Pairs = tuple[tuple[str, str], ...]
_SHOWN = 40  # longest value quoted in a reason before it is shortened
_FILES_SHOWN = 3  # files named in a reason; the rest are counted
# The fields of a per-file record (``file_record``), named as a reason names them.
_FILE_FIELDS = ("type", "mode", "owner", "link target", "content")


@dataclass(frozen=True)
class KeyInputs:
    """Everything that decides a step's result.

    ``env`` and ``extra`` are sets of named values, so they are kept sorted: the order a
    caller lists them in never changes the key. ``sources`` keep their order, which
    COPY semantics depend on.

    ``files`` is the per-file breakdown of what a COPY reads from the context (path →
    ``file_record``), kept so a miss can name the files that changed. It is stored with
    the inputs but is not hashed into the key: the ``sources`` fingerprint already covers
    the same facts, so a key means the same whether or not the breakdown was recorded.
    """

    parent: str
    instruction: str
    env: Pairs
    sources: Pairs = ()
    platform: str = field(default_factory=lambda: str(host_platform()))  # the stage's
    extra: Pairs = ()
    files: Pairs = ()

    def __post_init__(self) -> None:
        # Frozen: normalise through object.__setattr__, once, at construction.
        object.__setattr__(self, "env", _sorted_pairs(self.env))
        object.__setattr__(self, "sources", _pairs(self.sources))
        object.__setattr__(self, "extra", _sorted_pairs(self.extra))
        object.__setattr__(self, "files", _sorted_pairs(self.files))


def file_kind(mode: int) -> str:
    """The kind ``file_record`` names for an entry of ``st_mode`` ``mode``."""
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISDIR(mode):
        return "dir"
    return "symlink" if stat.S_ISLNK(mode) else "other"


def file_record(kind: str, mode: int, uid: int, gid: int, link: str, content: str) -> str:
    """One context entry as ``KeyInputs.files`` records it (never its times)."""
    return "|".join((kind, f"{mode:o}", f"{uid}:{gid}", link, content))


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
    """Canonical JSON of the inputs, with the key format version (and ``files`` if any)."""
    obj = _to_obj(inputs)
    if inputs.files:
        obj["files"] = [list(p) for p in inputs.files]
    return canonical_json(obj).decode()


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
            files=_pairs(obj.get("files", [])),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise CacheError(f"malformed cache key inputs: {exc}") from None


def step_key(inputs: KeyInputs) -> str:
    """The cache key: sha256 hex of the canonical JSON of the versioned inputs."""
    return sha256_bytes(canonical_json(_to_obj(inputs))).hex


def explain_miss(
    old: KeyInputs | None, new: KeyInputs, env_names: Collection[str] | None = None
) -> list[str]:
    """Human reasons why ``new`` keys differently from ``old``, field by field.

    ``old`` is the previous build's inputs for the same Dockerfile step (None when there
    was none). ``env_names`` are the variables set by ENV (the others are ARGs); without
    it a variable is called "ARG/ENV". Returns [] when the inputs are equal.
    """
    if old is None:
        return ["first build"]
    reasons: list[str] = []
    if old.parent != new.parent:
        reasons.append(_parent_reason(old.parent, new.parent))
    if old.instruction != new.instruction:
        reasons.append("instruction text changed")
    reasons += _env_reasons(old.env, new.env, env_names)
    file_reasons = _file_reasons(old.files, new.files) if old.files or new.files else []
    source_reasons = _source_reasons(old.sources, new.sources)
    # Per-file reasons say more than "the context changed"; use them when they exist.
    reasons += file_reasons if file_reasons and source_reasons else source_reasons
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


def _env_reasons(old: Pairs, new: Pairs, env_names: Collection[str] | None) -> list[str]:
    if env_names is None:
        return _pair_reasons("ARG/ENV", old, new)
    reasons = []
    for reason in _pair_reasons("", old, new):
        name = reason.split(" ", 2)[1]
        reasons.append(("ENV" if name in env_names else "ARG") + reason)
    return reasons


def _file_reasons(old: Pairs, new: Pairs) -> list[str]:
    """ "file a changed (content)", "file b added"...: the first few, then a count."""
    before, after = dict(old), dict(new)
    changes: list[str] = []
    for name in sorted(before.keys() | after.keys()):
        if name not in before:
            changes.append(f"{_kind_word(after[name])} {name} added")
        elif name not in after:
            changes.append(f"{_kind_word(before[name])} {name} removed")
        elif before[name] != after[name]:
            was, now = before[name].split("|"), after[name].split("|")
            fields = [f for f, a, b in zip(_FILE_FIELDS, was, now, strict=False) if a != b]
            what = ", ".join(fields) or "metadata"
            changes.append(f"{_kind_word(after[name])} {name} changed ({what})")
    if len(changes) > _FILES_SHOWN:
        rest = len(changes) - _FILES_SHOWN
        changes = [*changes[:_FILES_SHOWN], f"and {rest} more file{'s' if rest > 1 else ''}"]
    return changes


def _kind_word(record: str) -> str:
    kind = record.split("|", 1)[0]
    return {"dir": "directory", "symlink": "symlink"}.get(kind, "file")


def _source_reasons(old: Pairs, new: Pairs) -> list[str]:
    before, after = dict(old), dict(new)
    reasons = []
    for name in dict.fromkeys([n for n, _ in old] + [n for n, _ in new]):
        if name not in before:
            reasons.append(f"source {name} added")
        elif name not in after:
            reasons.append(f"source {name} removed")
        elif before[name] != after[name]:
            reasons.append(_source_changed(name))
    if not reasons and old != new:
        reasons.append("sources reordered")
    return reasons


def _source_changed(name: str) -> str:
    if name == "context":
        return "files in the build context changed"
    if name.startswith("stage:"):
        return f"stage {name.removeprefix('stage:')} it copies from changed"
    return f"source {name} changed"
