"""COPY/ADD as an op: how to key a ``CopySpec`` and how to run it.

Sources come from the build context, from another stage or image (``from_stage``: the
planner turns ``--from=<image>`` into a stage of its own), from heredocs, or for ADD from
URLs and git repositories (``builder.ops.sources.remote``). ``--parents`` keeps each
source's path below the context root (or below a ``/./`` pivot); ADD unpacks local tar
archives (``builder.ops.sources.add``) unless ``--unpack=false``.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Sequence, Set
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError
from builder.ops.base import ExecContext, stage_view
from builder.ops.context import ContextEntry
from builder.ops.copyfiles import CopyOptions, SourceItem, copy_sources, walk_tree
from builder.ops.copyparents import parents_matches
from builder.ops.filekeys import file_records
from builder.ops.rootpath import resolve_in_root
from builder.ops.sources import remote
from builder.ops.stagekeys import copy_content
from builder.plan.paths import clean
from builder.plan.specs import CopySpec
from cache.keys import KeyInputs
from runtime.errors import RuntimeFailure

if TYPE_CHECKING:
    from runtime.spec import Rootfs

HEREDOC_MODE = 0o644  # BuildKit writes heredoc sources 0644 (before --chmod)


def key_inputs(spec: CopySpec, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
    """The copy's key inputs: the content of what it copies (from the context or a
    stage, with per-file records that explain a miss) and what remote sources hold."""
    sources: tuple[tuple[str, str], ...]
    if spec.from_stage is not None:
        lowers = ctx.stage_roots[spec.from_stage]
        content = copy_content(lowers, spec.sources, ctx.context.hash_file)
        sources = ((f"stage:{spec.from_stage}", content.fingerprint),)
        files: tuple[tuple[str, str], ...] = content.files
    else:
        rels = _context_rels(spec, ctx)
        sources = (("context", ctx.context.fingerprint(rels, excludes=spec.excludes)),)
        files = file_records(ctx.context, rels, excludes=spec.excludes)
    if spec.remote:
        sources += remote.key_pairs(spec.remote, ctx.fetches, ctx.scratch)
    return KeyInputs(parent=parent, instruction=instruction, env=(), sources=sources, files=files)


def _context_rels(spec: CopySpec, ctx: ExecContext) -> list[str]:
    return [rel for rel, _ in _context_sources(spec, ctx)]


def _context_sources(spec: CopySpec, ctx: ExecContext) -> list[tuple[str, str]]:
    """``(context path, path kept below a --parents pivot)`` for every source."""
    out: list[tuple[str, str]] = []
    for source in spec.sources:
        found = parents_matches(ctx.context, source, spec.excludes) if spec.parents else None
        if found is None:
            rels = ctx.context.resolve_sources(source, excludes=spec.excludes)
            found = [(rel, _below_pivot(spec, rel)) for rel in rels]
        out.extend(found)
    return out


def execute(spec: CopySpec, rootfs: Rootfs, ctx: ExecContext) -> None:
    """Copy the sources into ``rootfs`` at ``spec.dest``, extracting local archives
    for ADD."""
    from runtime.rootfs import mounted_overlay, use_copy_snapshotter  # here: hits never mount

    target = ctx.scratch / "merged"
    target.mkdir(exist_ok=True)
    # Files in dirs the copy makes go straight into the upper dir of a real overlay
    # (builder.ops.copyfiles._Dirs); a copy snapshotter's root is no overlay.
    upper = None if not ctx.mounts or use_copy_snapshotter(rootfs) else rootfs.upper
    with mounted_overlay(rootfs, target, mounts=ctx.mounts) as root:
        owner = _owner(spec, root)
        opts = CopyOptions(owner=owner, chmod=spec.chmod, chown_parents=bool(spec.chown))
        into = _Into(root, upper)
        fetched = remote.items(spec.remote, ctx.fetches, ctx.scratch)
        items = [*(("", item) for item in fetched), *_heredoc_items(spec, ctx.scratch)]
        kept = {item.path for item in fetched}  # remote files are never extracted
        if spec.from_stage is None:
            sources = _context_sources(spec, ctx)
            # The walks the key made (BuildContext.take_walks): walked once per COPY.
            walks = ctx.context.take_walks([r for r, _ in sources], excludes=spec.excludes)
            found = zip(sources, walks, strict=True)
            items = [*(_context_item(ctx, r, b, w) for (r, b), w in found), *items]
            _copy(spec, into, items, opts, kept)
        else:
            # Without --chown a stage's files keep their owners (fsutil copy with
            # no Chowner); context, heredoc and remote files are 0:0.
            stage_opts = replace(opts, owner=None) if not spec.chown else opts
            with stage_view(ctx, spec.from_stage) as stage_root:
                _copy(spec, into, _stage_items(spec, stage_root), stage_opts, kept)
            _copy(spec, into, items, opts, kept)


@dataclass(frozen=True)
class _Into:
    """Where a copy writes: the mounted root, and the overlay's upper dir (None: unknown)."""

    root: Path
    upper: Path | None


def _copy(
    spec: CopySpec,
    into: _Into,
    items: list[tuple[str, SourceItem]],
    opts: CopyOptions,
    kept: Set[Path] = frozenset(),
) -> None:
    from builder.ops.sources.add import extract_archive, is_archive  # only when a step runs

    # No "several sources need a dest ending in /" check: BuildKit copies each source
    # (each wildcard match) in turn to dest as written (solver/llbsolver/file
    # backend.go docopy, fsutil copy.Copy), so later files land on or in what earlier
    # ones made. The Dockerfile reference asks for the "/", BuildKit never enforces it.
    for rel, item in items:
        extract = spec.unpack and not item.is_dir and item.path not in kept
        if extract and is_archive(item.path):
            dest = spec.dest if not spec.parents else _parents_dest(spec.dest, rel, item)
            # BuildKit 0.23+ (file/unpack.go, ChownOpts) gives every archive
            # member the --chown owner; without it members keep their own.
            members = opts.owner if spec.chown else None
            extract_archive(into.root, item.path, dest, opts.dir_owner, members=members)
        else:
            force_dir = spec.parents and bool(rel)
            dest = _parents_dest(spec.dest, rel, item) if force_dir else spec.dest
            copy_sources(into.root, [item], dest, force_dir=force_dir, opts=opts, upper=into.upper)


def _owner(spec: CopySpec, root: Path) -> tuple[int, int]:
    """``--chown`` as BuildKit reads it: a name takes its uid and primary gid from
    /etc/passwd, a numeric uid without a group gets the same number as gid (never
    looked up), and a group, when given, replaces the gid."""
    if not spec.chown:
        return (0, 0)
    from runtime.users import resolve_user  # here: only a COPY that runs reads users

    user_part, has_group, _ = spec.chown.partition(":")
    try:
        user = resolve_user(root, spec.chown)
    except RuntimeFailure as exc:
        raise BuildError(f"--chown={spec.chown}: {exc.message}", hint=exc.hint) from None
    if user_part.isascii() and user_part.isdigit() and not has_group:
        return (user.uid, user.uid)
    return (user.uid, user.gid)


def _heredoc_items(spec: CopySpec, scratch: Path) -> list[tuple[str, SourceItem]]:
    items = []
    for i, (name, content) in enumerate(spec.heredocs):
        folder = scratch / f"heredoc-{i}"
        folder.mkdir(exist_ok=True)
        path = folder / (posixpath.basename(name) or "heredoc")
        path.write_text(content)
        path.chmod(HEREDOC_MODE)
        items.append(("", SourceItem(name=path.name, path=path, entries=(("", path),))))
    return items


def _context_item(
    ctx: ExecContext, rel: str, below: str, walked: Sequence[ContextEntry]
) -> tuple[str, SourceItem]:
    entries = [(_relative(e.rel, rel), e.path) for e in walked]
    top = entries[0][1] if rel else ctx.context.root
    if not rel:
        entries.insert(0, ("", top))
    item = SourceItem(name=posixpath.basename(rel) or ".", path=top, entries=tuple(entries))
    return below, item


def _below_pivot(spec: CopySpec, rel: str) -> str:
    """``rel`` without the part of its source before a ``/./`` pivot (``--parents``)."""
    for source in spec.sources:
        pivot, sep, _ = source.partition("/./")
        prefix = clean(pivot).lstrip("/")
        if sep and prefix and (rel == prefix or rel.startswith(prefix + "/")):
            return rel[len(prefix) :].lstrip("/")
    return rel


def _stage_items(spec: CopySpec, stage_root: Path) -> list[tuple[str, SourceItem]]:
    items: list[tuple[str, SourceItem]] = []
    for source in spec.sources:
        for path in _glob_in_root(stage_root, source):
            entries = tuple(walk_tree(path))
            rel = path.relative_to(stage_root).as_posix()
            item = SourceItem(name=path.name, path=path, entries=entries)
            items.append((_below_pivot(spec, rel), item))
    return items


def _parents_dest(dest: str, rel: str, item: SourceItem) -> str:
    """Where a ``--parents`` source lands: its directory path kept below ``dest``."""
    kept = rel if item.is_dir else posixpath.dirname(rel)
    return posixpath.join(dest, kept) + "/" if kept else dest.rstrip("/") + "/"


def _relative(rel: str, top: str) -> str:
    top = "" if top in ("", ".") else top.rstrip("/")
    if not top:
        return rel
    if rel == top:
        return ""
    return rel[len(top) + 1 :]


def _has_wildcard(source: str) -> bool:
    return any(c in source for c in "*?[")


def _glob_in_root(root: Path, source: str) -> list[Path]:
    """Sources in another stage's rootfs: symlinks resolved inside it, wildcards allowed."""

    path = clean(source)
    if not _has_wildcard(path):
        host = resolve_in_root(root, path)
        if not host.exists():
            raise BuildError(f"COPY --from source not found: {source}: no such file or directory")
        return [host]
    parent = resolve_in_root(root, posixpath.dirname(path))
    pattern = posixpath.basename(path)
    found = (
        sorted(p for p in parent.iterdir() if fnmatch.fnmatchcase(p.name, pattern))
        if parent.is_dir()
        else []
    )
    return found  # no match is no error (BuildKit AllowEmptyWildcard)
