"""ADD of http(s) URLs: download one file, hash it while it streams, keep its times.

BuildKit's rules (source/http and dockerfile2llb): the file is named after the last
element of the URL path (``__unnamed__`` when there is none), written 0600, with the
``Last-Modified`` header as its mtime (the Unix epoch when the header is missing or
unparsable), and never extracted even when it is a tar. ``--checksum=sha256:<hex>`` pins
the content: a download with another digest fails. Telling URLs apart from other
sources is plan-time work (``builder.plan.remote``).
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.plan.remote import redact
from cache.digest import Sha256

REMOTE_MODE = 0o600  # BuildKit's default permission for a downloaded file
UNNAMED = "__unnamed__"
_CHUNK = 1 << 20
_TIMEOUT = (30.0, 10.0)  # seconds: a read, a connect


@dataclass(frozen=True)
class Fetched:
    """A downloaded file: where it is, its sha256 digest and the mtime it must get."""

    path: Path
    digest: str  # "sha256:<hex>"
    mtime: int  # seconds since the epoch


def url_filename(url: str) -> str:
    """The name BuildKit gives a downloaded file: the URL path's last element."""
    path = urllib.parse.urlsplit(url).path
    base = posixpath.basename(path.rstrip("/")) if path not in ("", "/") else ""
    base = urllib.parse.unquote(base)
    return base if base not in ("", ".", "..") and "/" not in base else UNNAMED


def fetch(url: str, folder: Path, checksum: str | None = None) -> Fetched:
    """Download ``url`` into a new file in ``folder``; verify ``checksum`` when given.

    Redirects are followed. Raises BuildError for an answer outside 2xx, a connection
    failure, or a digest mismatch (nothing is left behind then).
    """
    target = folder / f"download-{os.urandom(8).hex()}"
    try:
        digest, mtime = _download(url, target)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if checksum is not None and digest != checksum:
        target.unlink(missing_ok=True)
        raise BuildError(
            f"checksum mismatch for {redact(url)}: got {digest}, expected {checksum}",
            hint="the remote file changed, or --checksum is wrong; check the URL and the digest",
        )
    return Fetched(target, digest, mtime)


def _download(url: str, target: Path) -> tuple[str, int]:
    import httpx  # here, not at the top: every build imports this module, few download

    sha = Sha256()
    timeout = httpx.Timeout(_TIMEOUT[0], connect=_TIMEOUT[1])
    try:
        with (
            httpx.Client(follow_redirects=True, timeout=timeout) as client,
            client.stream("GET", url) as response,
        ):
            if not 200 <= response.status_code < 300:
                raise BuildError(
                    f"cannot download {redact(url)}: HTTP {response.status_code} "
                    f"{response.reason_phrase}",
                    hint="check the URL; ADD of a URL needs it to answer 200",
                )
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
            with open(fd, "wb") as out:
                for chunk in response.iter_bytes(_CHUNK):
                    sha.update(chunk)
                    out.write(chunk)
            mtime = _last_modified(response.headers.get("last-modified"))
    except httpx.HTTPError as exc:
        raise BuildError(
            f"cannot download {redact(url)}: {exc or type(exc).__name__}",
            hint="check the URL and that the server is reachable from this machine",
        ) from None
    return str(sha.digest()), mtime


def _last_modified(header: str | None) -> int:
    """The header's time in epoch seconds; 0 when missing or unparsable (BuildKit)."""
    if not header:
        return 0
    import email.utils  # 10 ms of imports (socket...), needed only after a download

    try:
        return int(email.utils.parsedate_to_datetime(header).timestamp())
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0
