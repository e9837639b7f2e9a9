"""The git checkout's HEAD time as SOURCE_DATE_EPOCH: git is started only where it can
find a repository, so a context outside one costs no process."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from builder.cli import build as build_cli
from builder.cli.build import git_source_date_epoch, might_be_in_git

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git_finds_a_repository(directory: Path) -> bool:
    done = subprocess.run(
        ["git", "-C", str(directory), "rev-parse", "--git-dir"], capture_output=True, check=False
    )
    return done.returncode == 0


@pytest.fixture
def no_git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GIT_DIR", raising=False)


@pytest.mark.usefixtures("no_git_env")
def test_a_directory_outside_any_repository_starts_no_git(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    if might_be_in_git(tmp_path):
        pytest.skip(f"{tmp_path} is inside a git repository")

    def no_process(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("git was started")

    monkeypatch.setattr(build_cli.subprocess, "run", no_process)
    assert git_source_date_epoch(ctx) is None


@needs_git
@pytest.mark.usefixtures("no_git_env")
@pytest.mark.parametrize("kind", ["work tree", "subdirectory", "bare", "worktree file"])
def test_wherever_git_finds_a_repository_git_is_asked(tmp_path: Path, kind: str) -> None:
    if might_be_in_git(tmp_path):
        pytest.skip(f"{tmp_path} is inside a git repository")
    repo = tmp_path / "repo"
    bare = ["--bare"] if kind == "bare" else []
    subprocess.run(["git", "init", "-q", *bare, str(repo)], check=True)
    ctx = repo / "sub" if kind == "subdirectory" else repo
    ctx.mkdir(exist_ok=True)
    if kind == "worktree file":  # .git as a file naming the git dir (worktrees, submodules)
        ctx = tmp_path / "linked"
        ctx.mkdir()
        (ctx / ".git").write_text(f"gitdir: {repo / '.git'}\n")
    assert _git_finds_a_repository(ctx)
    assert might_be_in_git(ctx)


def test_git_dir_in_the_environment_means_git_is_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))
    assert might_be_in_git(tmp_path)


@needs_git
@pytest.mark.usefixtures("no_git_env")
def test_a_committed_checkout_gives_its_head_time(tmp_path: Path) -> None:
    if might_be_in_git(tmp_path):
        pytest.skip(f"{tmp_path} is inside a git repository")
    env = ["-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "f").write_text("x")
    subprocess.run(["git", "-C", str(tmp_path), "add", "f"], check=True)
    commit = ["git", *env, "-C", str(tmp_path), "commit", "-q", "-m", "one", "--date=@1700000000"]
    subprocess.run(
        commit, check=True, env={"GIT_COMMITTER_DATE": "@1700000000", "PATH": "/usr/bin:/bin"}
    )
    assert git_source_date_epoch(tmp_path) == 1700000000
