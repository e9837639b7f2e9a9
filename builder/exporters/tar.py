"""``-o type=tar``: the image's root filesystem as one tar, as BuildKit's tar exporter.

The layers are applied in a temp dir in the store (whiteouts done, as for type=local),
then the tree is written as a POSIX tar: entries sorted, paths relative (``bin/sh``),
numeric owners kept and user/group names left out, modes, mtimes, symlinks, hard links
and devices as on disk. The file is written beside ``dest`` and renamed into place, so
a failed export leaves no half file.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

from builder.errors import BuildError
from builder.images.save import atomic_file, write_rootfs
from cache.digest import Digest
from cache.store import BlobStore, force_rmtree
from fstree.tree import walk


def write_rootfs_tar(blobs: BlobStore, manifest: Digest, dest: Path) -> None:
    """Write image ``manifest``'s root filesystem to the tar file ``dest``.

    Raises BuildError when the image is damaged or ``dest`` cannot be written."""
    work = Path(tempfile.mkdtemp(prefix="rootfs-tar-", dir=blobs.tmp_dir))
    try:
        root = work / "rootfs"
        write_rootfs(blobs, manifest, root)
        with (
            atomic_file(dest) as fd,
            os.fdopen(fd, "wb", closefd=False) as out,
            tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar,
        ):
            for rel, _st in walk(root):  # parents first, names sorted: deterministic
                tar.add(
                    root / rel,
                    arcname=rel,
                    recursive=False,
                    filter=_anonymous,
                )
    except OSError as exc:
        raise BuildError(
            f"cannot write the root filesystem tar {dest}: {exc.strerror or exc}",
            hint="check that its directory exists and is writable, and free space",
        ) from None
    finally:
        force_rmtree(work)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owners by number only, as in layer tars (names on this host mean nothing there)."""
    info.uname = info.gname = ""
    return info
