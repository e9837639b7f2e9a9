"""RUN --mount: parse the flag (BuildKit's CSV form) and mount it for one RUN.

Supported here: ``type=bind`` (default type; from the context, a stage or an image,
read-only unless ``rw``, in which case writes go to a throwaway copy) and
``type=tmpfs`` (``size``). ``cache``, ``secret`` and ``ssh`` are refused with a clear
message. Nothing a mount shows ever lands in the step's layer.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from builder.errors import BuildError, DockerfileError
from builder.rootpath import clean, resolve_in_root
from runtime.spec import BindMount, TmpfsMount

if TYPE_CHECKING:
    from builder.actions import ExecContext

_TARGET_KEYS = ("target", "dst", "destination")
_SOURCE_KEYS = ("source", "src")
_UNITS = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


@dataclass(frozen=True)
class RunMount:
    """One ``--mount``: ``from_stage`` None means the build context (for a bind)."""

    kind: str  # "bind" | "tmpfs"
    target: str
    source: str = ""
    from_stage: int | None = None
    readonly: bool = True
    size: int | None = None

    def describe(self) -> str:
        """The mount as the cache key sees it."""
        return (
            f"type={self.kind},target={self.target},source={self.source},"
            f"from={self.from_stage},ro={self.readonly},size={self.size}"
        )


def parse_mount(raw: str, stage_ref: Callable[[str], int]) -> RunMount:
    """One expanded ``--mount`` value; raises DockerfileError (no location)."""
    fields: dict[str, str] = {}
    for part in raw.split(","):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if key in ("ro", "readonly", "rw", "readwrite") and not sep:
            value = "true"
        fields[key] = value
    kind = fields.pop("type", "bind")
    if kind in ("cache", "secret", "ssh"):
        raise DockerfileError(
            f"RUN --mount=type={kind} is not supported yet",
            hint="use type=bind or type=tmpfs, or remove the --mount flag",
        )
    if kind not in ("bind", "tmpfs"):
        raise DockerfileError(f"unsupported mount type {kind!r}", hint="use bind or tmpfs")
    target = next((fields.pop(k) for k in _TARGET_KEYS if k in fields), "")
    if not target:
        raise DockerfileError(f"--mount={raw}: a target is required", hint="add target=/path")
    if kind == "tmpfs":
        return RunMount("tmpfs", clean(target), size=_size(fields.get("size", "")))
    readonly = not (_true(fields.get("rw")) or _true(fields.get("readwrite")))
    if "ro" in fields or "readonly" in fields:
        readonly = _true(fields.get("ro")) or _true(fields.get("readonly"))
    source = next((fields[k] for k in _SOURCE_KEYS if k in fields), "")
    from_stage = stage_ref(fields["from"]) if fields.get("from") else None
    return RunMount("bind", clean(target), clean(source), from_stage, readonly)


def _true(value: str | None) -> bool:
    return value is not None and value.lower() in ("", "true", "1")


def _size(text: str) -> int | None:
    if not text:
        return None
    number, unit = text.rstrip("kKmMgGbB"), text[len(text.rstrip("kKmMgGbB")) :]
    unit = unit.lower().rstrip("b")
    if not number.isdigit() or unit not in _UNITS:
        raise DockerfileError(f"invalid tmpfs size {text!r}", hint="write size=64m")
    return int(number) * _UNITS[unit]


@contextmanager
def mounted(
    mounts: tuple[RunMount, ...], ctx: ExecContext
) -> Iterator[tuple[tuple[BindMount, ...], tuple[TmpfsMount, ...]]]:
    """Bind and tmpfs mounts for the sandbox, valid while the context is open."""
    from builder.copyaction import stage_view

    binds: list[BindMount] = []
    tmpfs = [TmpfsMount(m.target, m.size) for m in mounts if m.kind == "tmpfs"]
    with ExitStack() as stack:
        for i, mount in enumerate(m for m in mounts if m.kind == "bind"):
            if mount.from_stage is None:
                host = resolve_in_root(ctx.context.root, mount.source)
            else:
                root = stack.enter_context(stage_view(ctx, mount.from_stage, f"mount-{i}"))
                host = resolve_in_root(root, mount.source)
            if not host.exists():
                raise BuildError(f"RUN --mount source {mount.source} not found")
            if not mount.readonly:  # writes are discarded: they go to a copy
                copy = ctx.scratch / f"mount-rw-{i}"
                if host.is_dir():
                    shutil.copytree(host, copy, symlinks=True)
                else:
                    shutil.copy2(host, copy)
                host = copy
            binds.append(BindMount(host, mount.target, readonly=mount.readonly))
        yield tuple(binds), tuple(tmpfs)
