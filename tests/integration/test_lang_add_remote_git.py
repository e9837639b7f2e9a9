"""ADD of git repositories through the CLI, from local ``file://`` repositories."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(shutil.which("git") is None, reason="needs the git command"),
]


@dataclass
class Repo:
    path: Path
    first: str  # commit sha of the first commit (tagged v1)
    second: str  # tip of main

    @property
    def url(self) -> str:
        return f"file://{self.path}"


def _git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def _commit(repo: Path, files: dict[str, str], message: str) -> str:
    for name, content in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(content)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message)
    return _git(repo, "rev-parse", "HEAD")


@pytest.fixture
def repo(tmp_path: Path) -> Repo:
    path = tmp_path / "repo.git"
    path.mkdir()
    _git(path, "init", "-q", "-b", "main")
    first = _commit(path, {"README": "one\n", "src/app.py": "print(1)\n"}, "first")
    _git(path, "tag", "-a", "v1", "-m", "release 1")
    second = _commit(path, {"README": "two\n"}, "second")
    _git(path, "checkout", "-q", "-b", "feature")
    _commit(path, {"feature.txt": "f\n"}, "feature")
    _git(path, "checkout", "-q", "main")
    return Repo(path, first, second)


def _rootfs(pybuild: Pybuild, tmp_path: Path, dockerfile: str) -> Path:
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    return out


def test_add_git_default_branch_copies_repo_contents_without_git_dir(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {repo.url} /src\n")
    assert (out / "src" / "README").read_text() == "two\n"
    assert (out / "src" / "src" / "app.py").read_text() == "print(1)\n"
    assert not (out / "src" / ".git").exists()
    assert not (out / "src" / "feature.txt").exists()


def test_add_git_branch_fragment_checks_out_that_branch(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {repo.url}#feature /src\n")
    assert (out / "src" / "feature.txt").read_text() == "f\n"


def test_add_git_annotated_tag_checks_out_tagged_commit(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {repo.url}#v1 /src\n")
    assert (out / "src" / "README").read_text() == "one\n"


def test_add_git_commit_sha_checks_out_that_commit(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {repo.url}#{repo.first} /src\n")
    assert (out / "src" / "README").read_text() == "one\n"


def test_add_git_subdir_copies_only_that_directory(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {repo.url}#main:src /app\n")
    assert sorted(p.name for p in (out / "app").iterdir()) == ["app.py"]


def test_add_git_keep_git_dir_keeps_history_at_the_commit(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    dockerfile = f"FROM busybox\nADD --keep-git-dir=true {repo.url}#v1 /src\n"
    out = _rootfs(pybuild, tmp_path, dockerfile)
    assert (out / "src" / ".git").is_dir()
    assert _git(out / "src", "rev-parse", "HEAD") == repo.first


def test_add_git_bad_ref_fails_with_location_and_hint(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nADD {repo.url}#nope /src\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code == 1
    assert "Dockerfile:2" in result.err and "'nope' not found" in result.err
    assert "Traceback" not in result.err


def test_add_git_missing_subdir_fails_with_location(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nADD {repo.url}#main:nodir /src\n")
    result = pybuild.build(ctx, ok=False)
    assert "Dockerfile:2" in result.err and "nodir" in result.err
    assert "Traceback" not in result.err


def test_add_git_new_commit_on_branch_misses_cache_same_commit_hits(
    pybuild: Pybuild, tmp_path: Path, repo: Repo
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nADD {repo.url}#main /src\n")
    pybuild.build(ctx)
    same = pybuild.build(ctx)
    assert "MISS" not in same.out + same.err
    _commit(repo.path, {"README": "three\n"}, "third")
    out = tmp_path / "rootfs"
    changed = pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert "MISS" in changed.out + changed.err
    assert (out / "src" / "README").read_text() == "three\n"
