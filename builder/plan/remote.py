"""ADD's remote sources as plan data: which sources are URLs or git repositories.

Git forms (BuildKit's gitutil.ParseGitRef, plus local ``file://`` repositories):
``https://host/repo.git#ref:subdir``, ``http://…/x.git``, ``git://…``, ``ssh://…``,
``git@host:owner/repo.git``, ``file:///path/repo[.git]``. An http(s) URL is a git
source only when its path ends in ``.git``. The fragment names a branch, tag or commit
(default: the remote's HEAD) and, after a ``:``, a directory inside the repository.

Only text is looked at here; fetching and keying by content is ``builder.ops.sources``.
"""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import dataclass

from builder.errors import BuildError

_SCP_LIKE = re.compile(r"[\w.-]+@[\w.-]+:(?!//)")
_CHECKSUM = re.compile(r"sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class GitRef:
    """A parsed git source: the remote to clone, the ref (may be empty) and subdir."""

    remote: str
    ref: str
    subdir: str


@dataclass(frozen=True)
class RemoteSource:
    """One ADD source that is not in the context: a URL (``git`` None) or a git repo."""

    source: str  # as written, after expansion
    git: GitRef | None
    checksum: str | None = None
    keep_git_dir: bool = False


def remote_source(source: str, checksum: str | None, keep_git_dir: bool) -> RemoteSource | None:
    """``source`` as a RemoteSource, or None when it is a local path.

    A URL that does not parse (``http://[::1``, a port out of range) is a BuildError."""
    if is_url(source):
        check_url(source)
    git = parse_git_ref(source)
    if git is not None:
        return RemoteSource(source, git, checksum, keep_git_dir)
    if is_url(source):
        return RemoteSource(source, None, checksum)
    return None


def parse_git_ref(source: str) -> GitRef | None:
    """The git reference ``source`` names, or None when it is not a git source."""
    remote, _, fragment = source.partition("#")
    lowered = remote.lower()
    if lowered.startswith(("http://", "https://")):
        if not urllib.parse.urlsplit(remote).path.endswith(".git"):
            return None
    elif not (
        lowered.startswith(("git://", "ssh://", "file://", "git@")) or _SCP_LIKE.match(remote)
    ):
        return None
    ref, _, subdir = fragment.partition(":")
    return GitRef(remote, ref, subdir)


def is_url(source: str) -> bool:
    """True for an http(s) URL (git URLs are checked first by the caller)."""
    lowered = source.lower()
    return lowered.startswith("http://") or lowered.startswith("https://")


def check_url(url: str) -> None:
    """BuildError unless ``url`` parses as an http(s) URL with a host and a valid port."""
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port  # parsed lazily: an out-of-range port raises only here
    except ValueError as exc:
        raise BuildError(
            f"invalid URL {redact(url)!r}: {exc}",
            hint="check the brackets around an IPv6 address and the port (1-65535)",
        ) from None
    problem = "no host" if not parts.hostname else "port 0" if port == 0 else None
    if problem:
        raise BuildError(
            f"invalid URL {redact(url)!r}: {problem}", hint="write http(s)://HOST[:PORT]/PATH"
        )


def check_checksum(value: str) -> str:
    """``value`` when it is ``sha256:<64 lowercase hex>``, else BuildError."""
    if not _CHECKSUM.fullmatch(value):
        raise BuildError(
            f"invalid --checksum={value}",
            hint="write it as sha256:<64 hex digits>, e.g. the output of `sha256sum FILE`",
        )
    return value


def redact(url: str) -> str:
    """The URL without a password, for messages and history."""
    if "@" not in url or "://" not in url:
        return url
    try:
        parts = urllib.parse.urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    netloc = f"{parts.username}:xxxxx@{parts.hostname}"
    if parts.port is not None:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))
