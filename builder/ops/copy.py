"""COPY/ADD as a step: how to key it and how to run it.

Sources come from the build context, from another stage or image (``from_stage``: the
planner turns ``--from=<image>`` into a stage of its own), or from heredocs. ``--parents``
keeps each source's path below the context root (or below a ``/./`` pivot); ADD unpacks
local tar archives (``builder.ops.sources.add``) unless ``--unpack=false``.
"""

from __future__ import annotations

import fnmatch
import posixpath
from collections.abc import Iterator, Set
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError
from builder.ops.copyfiles import CopyOptions, SourceItem, copy_sources, walk_tree
from builder.ops.rootpath import clean, resolve_in_root
from builder.plan.chmod import Chmod
from cache.keys import KeyInputs
from runtime.errors import RuntimeFailure
from runtime.rootfs import mounted_overlay
from runtime.spec import Rootfs
from runtime.users import resolve_user

if TYPE_CHECKING:
    from builder.ops.run import ExecContext
    from builder.ops.sources.add import RemoteSources

HEREDOC_MODE = 0o644  # BuildKit writes heredoc sources 0644 (before --chmod)


@dataclass(frozen=True)
class CopyAction:
    """COPY/ADD of local sources: from the context, a stage (``from_stage``), heredocs."""

    sources: tuple[str, ...]
    dest: str  # absolute container path; a trailing "/" kept
    from_stage: int | None
    chown: str | None
    chmod: Chmod | None
    excludes: tuple[str, ...] = ()
    heredocs: tuple[tuple[str, str], ...] = ()  # (file name, content after expansion)
    parents: bool = False
    unpack: bool = False  # ADD: extract sources that are tar archives
    remote: RemoteSources | None = None  # ADD: URL and git sources (never extracted)

    def key_inputs(self, parent: str, instruction: str, ctx: ExecContext) -> KeyInputs:
        sources: tuple[tuple[str, str], ...]
        if self.from_stage is not None:
            from builder.ops.stagekeys import copy_content  # the content of what it copies

            lowers = ctx.stage_roots[self.from_stage]
            content = copy_content(lowers, self.sources, ctx.context.hash_file)
            sources = ((f"stage:{self.from_stage}", content.fingerprint),)
            files: tuple[tuple[str, str], ...] = content.files
        else:
            from builder.ops.filekeys import file_records  # per-file records explain misses

            rels = self._context_rels(ctx)
            sources = (("context", ctx.context.fingerprint(rels, excludes=self.excludes)),)
            files = file_records(ctx.context, rels, excludes=self.excludes)
        if self.remote is not None:
            sources += self.remote.key_pairs(ctx.scratch)
        return KeyInputs(
            parent=parent, instruction=instruction, env=(), sources=sources, files=files
        )

    def _context_rels(self, ctx: ExecContext) -> list[str]:
        return [rel for rel, _ in self._context_sources(ctx)]

    def _context_sources(self, ctx: ExecContext) -> list[tuple[str, str]]:
        """``(context path, path kept below a --parents pivot)`` for every source."""
        from builder.ops.copyparents import parents_matches

        out: list[tuple[str, str]] = []
        for source in self.sources:
            found = parents_matches(ctx.context, source, self.excludes) if self.parents else None
            if found is None:
                rels = ctx.context.resolve_sources(source, excludes=self.excludes)
                found = [(rel, self._below_pivot(rel)) for rel in rels]
            out.extend(found)
        return out

    def execute(self, rootfs: Rootfs, ctx: ExecContext) -> None:
        target = ctx.scratch / "merged"
        target.mkdir(exist_ok=True)
        with mounted_overlay(rootfs, target) as root:
            owner = self._owner(root)
            opts = CopyOptions(owner=owner, chmod=self.chmod, chown_parents=bool(self.chown))
            fetched = self.remote.items(ctx.scratch) if self.remote is not None else []
            items = [*(("", item) for item in fetched), *self._heredoc_items(ctx.scratch)]
            kept = {item.path for item in fetched}  # remote files are never extracted
            if self.from_stage is None:
                sources = self._context_sources(ctx)
                items = [*(self._context_item(ctx, r, b) for r, b in sources), *items]
                self._copy(root, items, opts, kept)
            else:
                # Without --chown a stage's files keep their owners (fsutil copy with
                # no Chowner); context, heredoc and remote files are 0:0.
                stage_opts = replace(opts, owner=None) if not self.chown else opts
                with stage_view(ctx, self.from_stage) as stage_root:
                    self._copy(root, self._stage_items(stage_root), stage_opts, kept)
                self._copy(root, items, opts, kept)

    def _copy(
        self,
        root: Path,
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
            extract = self.unpack and not item.is_dir and item.path not in kept
            if extract and is_archive(item.path):
                dest = self.dest if not self.parents else _parents_dest(self.dest, rel, item)
                # BuildKit 0.23+ (file/unpack.go, ChownOpts) gives every archive
                # member the --chown owner; without it members keep their own.
                members = opts.owner if self.chown else None
                extract_archive(root, item.path, dest, opts.dir_owner, members=members)
            elif self.parents and rel:
                copy_sources(
                    root, [item], _parents_dest(self.dest, rel, item), force_dir=True, opts=opts
                )
            else:
                copy_sources(root, [item], self.dest, force_dir=False, opts=opts)

    def _owner(self, root: Path) -> tuple[int, int]:
        """``--chown`` as BuildKit reads it: a name takes its uid and primary gid from
        /etc/passwd, a numeric uid without a group gets the same number as gid (never
        looked up), and a group, when given, replaces the gid."""
        if not self.chown:
            return (0, 0)
        user_part, has_group, _ = self.chown.partition(":")
        try:
            user = resolve_user(root, self.chown)
        except RuntimeFailure as exc:
            raise BuildError(f"--chown={self.chown}: {exc.message}", hint=exc.hint) from None
        if user_part.isascii() and user_part.isdigit() and not has_group:
            return (user.uid, user.uid)
        return (user.uid, user.gid)

    def _heredoc_items(self, scratch: Path) -> list[tuple[str, SourceItem]]:
        items = []
        for i, (name, content) in enumerate(self.heredocs):
            folder = scratch / f"heredoc-{i}"
            folder.mkdir(exist_ok=True)
            path = folder / (posixpath.basename(name) or "heredoc")
            path.write_text(content)
            path.chmod(HEREDOC_MODE)
            items.append(("", SourceItem(name=path.name, path=path, entries=(("", path),))))
        return items

    def _context_item(self, ctx: ExecContext, rel: str, below: str) -> tuple[str, SourceItem]:
        walked = ctx.context.walk(rel, excludes=self.excludes)
        entries = [(_relative(e.rel, rel), e.path) for e in walked]
        top = entries[0][1] if rel else ctx.context.root
        if not rel:
            entries.insert(0, ("", top))
        item = SourceItem(name=posixpath.basename(rel) or ".", path=top, entries=tuple(entries))
        return below, item

    def _below_pivot(self, rel: str) -> str:
        """``rel`` without the part of its source before a ``/./`` pivot (``--parents``)."""
        for source in self.sources:
            pivot, sep, _ = source.partition("/./")
            prefix = clean(pivot).lstrip("/")
            if sep and prefix and (rel == prefix or rel.startswith(prefix + "/")):
                return rel[len(prefix) :].lstrip("/")
        return rel

    def _stage_items(self, stage_root: Path) -> list[tuple[str, SourceItem]]:
        items: list[tuple[str, SourceItem]] = []
        for source in self.sources:
            for path in _glob_in_root(stage_root, source):
                entries = tuple(walk_tree(path))
                rel = path.relative_to(stage_root).as_posix()
                item = SourceItem(name=path.name, path=path, entries=entries)
                items.append((self._below_pivot(rel), item))
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


@contextmanager
def stage_view(ctx: ExecContext, stage: int, name: str = "") -> Iterator[Path]:
    """A merged view of a finished stage's layers; a throwaway upper absorbs any write."""
    view = ctx.scratch / (name or f"from-{stage}")
    for name in ("upper", "work", "merged"):
        (view / name).mkdir(parents=True, exist_ok=True)
    rootfs = Rootfs(ctx.stage_roots[stage], view / "upper", view / "work")
    with mounted_overlay(rootfs, view / "merged") as root:
        yield root
