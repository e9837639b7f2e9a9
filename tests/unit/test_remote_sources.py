"""ADD remote sources without a network: URL names, checksums, git reference parsing."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.ops.sources.http import UNNAMED, url_filename
from builder.plan.remote import GitRef, check_checksum, parse_git_ref, redact, remote_source


@pytest.mark.parametrize(
    ("url", "name"),
    [
        ("https://h/dl/tool.tar.gz", "tool.tar.gz"),
        ("https://h/dl/a%20b.txt?x=1#f", "a b.txt"),
        ("https://h/dir/", "dir"),
        ("https://h/", UNNAMED),
        ("https://h", UNNAMED),
        ("https://h/%2F", UNNAMED),
    ],
)
def test_url_filename_is_last_path_element_or_unnamed(url: str, name: str) -> None:
    assert url_filename(url) == name


def test_checksum_must_be_sha256_with_64_lowercase_hex() -> None:
    good = "sha256:" + "a" * 64
    assert check_checksum(good) == good
    for bad in ("sha256:" + "A" * 64, "sha256:abc", "md5:" + "a" * 32, "a" * 64):
        with pytest.raises(BuildError, match="invalid --checksum"):
            check_checksum(bad)


def test_redact_hides_password_keeps_user_host_port() -> None:
    assert redact("https://me:secret@h:8443/f") == "https://me:xxxxx@h:8443/f"
    assert redact("https://h/f") == "https://h/f"
    assert redact("local/path@x") == "local/path@x"


@pytest.mark.parametrize(
    ("source", "ref"),
    [
        ("https://h/o/r.git#main:sub/dir", GitRef("https://h/o/r.git", "main", "sub/dir")),
        ("https://h/o/r.git", GitRef("https://h/o/r.git", "", "")),
        ("git@github.com:o/r.git#v1", GitRef("git@github.com:o/r.git", "v1", "")),
        ("git://h/r#:d", GitRef("git://h/r", "", "d")),
        ("ssh://git@h/r.git#x", GitRef("ssh://git@h/r.git", "x", "")),
        ("file:///srv/repo.git#abc", GitRef("file:///srv/repo.git", "abc", "")),
    ],
)
def test_git_sources_parse_remote_ref_and_subdir(source: str, ref: GitRef) -> None:
    assert parse_git_ref(source) == ref


@pytest.mark.parametrize(
    "source", ["https://h/file.tar.gz", "http://h/r.git.txt", "src/app", "./x.git", "a:b"]
)
def test_non_git_sources_are_not_git(source: str) -> None:
    assert parse_git_ref(source) is None


def test_remote_source_classifies_url_git_and_local() -> None:
    url = remote_source("https://h/f.txt", "sha256:" + "0" * 64, False)
    assert url is not None and url.git is None and url.checksum
    git = remote_source("https://h/r.git#dev", None, True)
    assert git is not None and git.git is not None and git.keep_git_dir
    assert remote_source("dir/file", None, False) is None
