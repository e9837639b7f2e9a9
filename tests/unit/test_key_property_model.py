"""The model behind the key-correctness property tests (no tests of its own).

A small Python-app context, a set of random edits to it (content, mode, rename, symlink
retarget, new ignored file, touch, owner change, new file no step reads...), and an
oracle that says, independently of ``builder.ops.context``, what a COPY of each source reads
"in what counts": path, type, mode, uid/gid, link target and content, never times. The
property: a step's key is unchanged exactly when the oracle's view of what it reads is.
Shared by tests/unit/test_key_property.py (key functions, many examples) and
tests/integration/test_key_property.py (through the CLI, a few examples).
"""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from hypothesis import strategies as st

IS_ROOT = os.geteuid() == 0

FILES = {
    "app/main.py": "print('main')\n",
    "app/util.py": "X = 1\n",
    "app/pkg/mod.py": "Y = 2\n",
    "app/pkg/data.txt": "data\n",
    "app/cache/blob": "cached\n",
    "docs/readme.txt": "docs\n",
    "requirements.txt": "rich==13\n",
}
LINKS = {"app/link": "main.py", "app/pkg/up": "../util.py"}
DOCKERIGNORE = "**/*.log\napp/cache\n"
# COPY sources the property is checked for: a directory, a wildcard, one file.
SOURCES = ("app/", "app/*.py", "requirements.txt")

# Never deleted or renamed, so every source always resolves.
_KEPT = ("app/main.py", "requirements.txt")
_CONTENTS = ("", "a\n", "b\n", "print('main')\n", "X = 1\n", "longer content\n")
_FILE_MODES = (0o644, 0o600, 0o755, 0o444, 0o4755)
_DIR_MODES = (0o755, 0o700, 0o775)
_TARGETS = ("main.py", "util.py", "pkg", "../util.py", "nowhere", "pkg/mod.py")
_NEW_NAMES = ("app/new.py", "app/pkg/new.txt", "app/renamed.py", "docs/moved.txt", "top.py")
_IGNORED_NAMES = ("app/debug.log", "app/cache/more", "debug.log", "app/pkg/x.log")
_UNREAD_NAMES = ("docs/new.txt", "notes.md", "docs/sub/deep.txt")
_OWNERS = ((0, 0), (1000, 1000), (0, 1000), (1000, 0))

EDIT_KINDS: tuple[str, ...] = (
    "content",
    "mode",
    "dir-mode",
    "rename",
    "delete",
    "retarget",
    "new-read",
    "new-ignored",
    "new-unread",
    "touch",
) + (("owner",) if IS_ROOT else ())


@dataclass(frozen=True)
class Edit:
    """One edit; ``pick`` and ``choice`` index into what exists when it is applied."""

    kind: str
    pick: int
    choice: int

    def __str__(self) -> str:
        return f"{self.kind}#{self.pick}/{self.choice}"


def edits(max_size: int = 4) -> st.SearchStrategy[list[Edit]]:
    one = st.builds(Edit, st.sampled_from(EDIT_KINDS), st.integers(0, 50), st.integers(0, 50))
    return st.lists(one, min_size=1, max_size=max_size)


def write_model_context(root: Path, dockerfile: str = "") -> Path:
    """Lay the model context down at ``root`` (which must not exist yet)."""
    for rel, text in FILES.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for rel, target in LINKS.items():
        os.symlink(target, root / rel)
    (root / ".dockerignore").write_text(DOCKERIGNORE)
    if dockerfile:
        (root / "Dockerfile").write_text(dockerfile)
    return root


def _pick(items: Sequence[str], n: int) -> str | None:
    return sorted(items)[n % len(items)] if items else None


def _entries(root: Path, kind: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            st_mode = os.lstat(path).st_mode
            if rel in (".dockerignore", "Dockerfile"):
                continue
            is_kind = {
                "file": stat.S_ISREG(st_mode),
                "dir": stat.S_ISDIR(st_mode),
                "link": stat.S_ISLNK(st_mode),
            }[kind]
            if is_kind:
                found.append(rel)
    return found


def _rename_unless_taken(old: Path, new: Path) -> None:
    if not new.exists():
        new.parent.mkdir(parents=True, exist_ok=True)
        os.rename(old, new)


def apply(root: Path, edit: Edit) -> None:
    """Make ``edit`` to the context at ``root``; an edit with nothing to act on is a no-op."""
    files = _entries(root, "file")
    movable = [f for f in files if f not in _KEPT]
    c = edit.choice
    if edit.kind == "content" and (rel := _pick(files, edit.pick)):
        (root / rel).write_text(_CONTENTS[c % len(_CONTENTS)])
    elif edit.kind == "mode" and (rel := _pick(files, edit.pick)):
        os.chmod(root / rel, _FILE_MODES[c % len(_FILE_MODES)])
    elif edit.kind == "dir-mode" and (rel := _pick(_entries(root, "dir"), edit.pick)):
        os.chmod(root / rel, _DIR_MODES[c % len(_DIR_MODES)])
    elif edit.kind == "rename" and (rel := _pick(movable, edit.pick)):
        _rename_unless_taken(root / rel, root / _NEW_NAMES[c % len(_NEW_NAMES)])
    elif edit.kind == "delete" and (rel := _pick(movable, edit.pick)):
        os.unlink(root / rel)
    elif edit.kind == "retarget" and (rel := _pick(_entries(root, "link"), edit.pick)):
        os.unlink(root / rel)
        os.symlink(_TARGETS[c % len(_TARGETS)], root / rel)
    elif edit.kind in ("new-read", "new-ignored", "new-unread"):
        names = {"new-read": _NEW_NAMES, "new-ignored": _IGNORED_NAMES}.get(
            edit.kind, _UNREAD_NAMES
        )
        path = root / names[edit.pick % len(names)]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_CONTENTS[c % len(_CONTENTS)])
    elif edit.kind == "touch" and (rel := _pick([*files, *_entries(root, "link")], edit.pick)):
        stamp = 1_600_000_000_000_000_000 + c * 1_000_000_007
        os.utime(root / rel, ns=(stamp, stamp), follow_symlinks=False)
    elif edit.kind == "owner" and (rel := _pick(files, edit.pick)):
        uid, gid = _OWNERS[c % len(_OWNERS)]
        os.lchown(root / rel, uid, gid)


# ---- the oracle: what a COPY reads, written without builder.ops.context -------------------


def _ignored(rel: str) -> bool:
    # The model's .dockerignore: "**/*.log" and "app/cache".
    return rel.endswith(".log") or rel == "app/cache" or rel.startswith("app/cache/")


def _record(path: Path, *, follow: bool) -> tuple[str, int, int, int, str, bytes]:
    st_ = os.stat(path) if follow else os.lstat(path)
    mode = st_.st_mode
    kind = "dir" if stat.S_ISDIR(mode) else "symlink" if stat.S_ISLNK(mode) else "file"
    link = os.readlink(path) if kind == "symlink" else ""
    content = path.read_bytes() if kind == "file" else b""
    return (kind, stat.S_IMODE(mode), st_.st_uid, st_.st_gid, link, content)


def _below(root: Path, rel: str, shown: str, view: dict[str, object]) -> None:
    for name in sorted(os.listdir(root / rel)):
        child, child_shown = f"{rel}/{name}", f"{shown}/{name}"
        if _ignored(child):
            continue
        view[child_shown] = _record(root / child, follow=False)
        if stat.S_ISDIR(os.lstat(root / child).st_mode):
            _below(root, child, child_shown, view)


def read_view(root: Path, source: str) -> dict[str, object]:
    """What ``COPY <source>`` reads, by path: the top entry followed, nothing below."""
    source = source.rstrip("/")
    if "*" in source:
        parent, pattern = source.rsplit("/", 1)
        tops = [
            f"{parent}/{n}"
            for n in os.listdir(root / parent)
            if fnmatch.fnmatchcase(n, pattern) and not _ignored(f"{parent}/{n}")
        ]
    else:
        tops = [source]
    view: dict[str, object] = {}
    for top in sorted(tops):
        view[top] = _record(root / top, follow=True)
        if (root / top).is_dir():
            _below(root, os.path.realpath(root / top)[len(str(root.resolve())) + 1 :], top, view)
    return view


def changed_paths(old: dict[str, object], new: dict[str, object]) -> set[str]:
    """Paths whose record differs, was added or was removed."""
    return {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
