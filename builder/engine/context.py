"""A build context sent as a tar stream (plain, gzip, bzip2 or xz), unpacked into a
temp dir for the build.

Entries that would land outside the dir (absolute paths, ``..``, links out) are refused
(tarfile's ``tar`` filter, which also drops set-id bits, as docker's own unpacking does).
"""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from builder.engine.errors import bad_request
from builder.engine.wire import Request

MAX_CONTEXT = 8 << 30
_COMPRESSED = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz


@contextmanager
def unpacked_context(request: Request) -> Iterator[Path]:
    """The request body unpacked into a temp dir, removed on exit (400 when it is no
    tar or holds unsafe entries)."""
    tmp = Path(tempfile.mkdtemp(prefix="pybuild-context-"))
    try:
        archive = tmp / "context.tar"
        total = 0
        with archive.open("wb") as out:
            while data := request.read():
                total += len(data)
                if total > MAX_CONTEXT:
                    raise bad_request(f"build context over {MAX_CONTEXT >> 30} GiB")
                out.write(data)
        root = tmp / "context"
        root.mkdir()
        if total:
            _pad_plain_tar(archive, total)
            _extract(archive, root)
        archive.unlink()
        yield root
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _pad_plain_tar(archive: Path, size: int) -> None:
    """End an uncompressed tar on a block boundary with its two zero blocks: the docker
    CLI's stream with a Dockerfile from outside the context (``-f ../x``) stops right
    after the last file's data, which Go's tar reader accepts and Python's does not."""
    with archive.open("rb+") as tar:
        if tar.read(6).startswith(_COMPRESSED):
            return
        tar.seek(0, 2)
        tar.write(b"\0" * ((-size) % 512 + 1024))


def _extract(archive: Path, root: Path) -> None:
    try:
        with tarfile.open(archive, "r:*") as tar:
            tar.extractall(root, filter="tar")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise bad_request(f"the build context is not a readable tar archive: {exc}") from None
