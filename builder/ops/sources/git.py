"""ADD of git repositories: resolve a reference to a commit, check it out.

The reference is parsed at plan time (``builder.plan.remote``). The ``git`` command
does the work (it knows every transport, ssh keys and credential helpers); it never
prompts. Resolving a ref runs ``git ls-remote``; a full 40-hex commit needs no
resolution.
"""

from __future__ import annotations

import os
import posixpath
import re
import subprocess
from pathlib import Path

from builder.errors import BuildError
from builder.plan.remote import GitRef
from fstree.tree import remove_tree

_COMMIT = re.compile(r"[0-9a-f]{40}")
_TIMEOUT = 600.0


def _git(args: list[str], *, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true", "LC_ALL": "C"}
    try:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise BuildError(
            "ADD of a git repository needs the git command, which is not installed",
            hint="install it: apt-get install git",
        ) from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"git {args[0]} took longer than {_TIMEOUT:.0f} s") from None


def _failed(what: str, ref: GitRef, result: subprocess.CompletedProcess[str]) -> BuildError:
    detail = result.stderr.strip().splitlines()
    reason = detail[-1] if detail else f"exit code {result.returncode}"
    return BuildError(
        f"cannot {what} {ref.remote}: {reason}",
        hint="check the repository URL and that this machine can reach it",
    )


def resolve_commit(ref: GitRef) -> str:
    """The commit sha ``ref`` names: a branch, a tag (peeled), any full ref, or HEAD."""
    if _COMMIT.fullmatch(ref.ref):
        return ref.ref
    result = _git(["ls-remote", "--", ref.remote])
    if result.returncode != 0:
        raise _failed("list the refs of", ref, result)
    refs: dict[str, str] = {}
    for line in result.stdout.splitlines():
        sha, _, name = line.partition("\t")
        refs[name] = sha
    wanted = ref.ref or "HEAD"
    for name in (
        f"refs/tags/{wanted}^{{}}",
        f"refs/tags/{wanted}",
        f"refs/heads/{wanted}",
        f"{wanted}^{{}}",
        wanted,
    ):
        if name in refs:
            return refs[name]
    raise BuildError(
        f"git ref {wanted!r} not found in {ref.remote}",
        hint="name a branch, a tag or a full 40-character commit sha after '#'",
    )


def checkout(ref: GitRef, commit: str, folder: Path, *, keep_git_dir: bool) -> Path:
    """Check ``commit`` out into ``folder`` (new); return the directory ADD copies.

    That is ``folder`` itself, or its ``subdir``; ``.git`` is removed unless
    ``keep_git_dir``. BuildError when the commit cannot be fetched or the subdir is
    missing or escapes the repository.
    """
    folder.mkdir(parents=True)
    steps = (
        ["init", "-q", "."],
        ["fetch", "-q", "--depth=1", "--no-tags", "--", ref.remote, commit],
        ["-c", "advice.detachedHead=false", "checkout", "-q", commit],
    )
    for args in steps:
        result = _git(args, cwd=folder)
        if result.returncode != 0:
            raise _failed(f"check out {ref.ref or 'HEAD'} ({commit[:12]}) of", ref, result)
    if not keep_git_dir:
        remove_tree(folder / ".git")
    return _subdir(ref, folder)


def _subdir(ref: GitRef, folder: Path) -> Path:
    sub = posixpath.normpath("/" + ref.subdir).lstrip("/")
    if not sub:
        return folder
    path = folder / sub
    resolved = path.resolve()
    if not resolved.is_relative_to(folder.resolve()) or not resolved.is_dir():
        raise BuildError(
            f"git subdirectory {ref.subdir!r} is not a directory in {ref.remote}",
            hint="the part after ':' in the fragment names a directory inside the repository",
        )
    return resolved
