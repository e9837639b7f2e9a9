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
import uuid
from pathlib import Path

from builder.errors import BuildError
from builder.images.save import write_rootfs
from cache.digest import Digest
from cache.store import BlobStore, force_rmtree
from fstree.tree import walk


def write_rootfs_tar(blobs: BlobStore, manifest: Digest, dest: Path) -> None:
    """Write image ``manifest``'s root filesystem to the tar file ``dest``.

    Raises BuildError when the image is damaged or ``dest`` cannot be written."""
    work = Path(tempfile.mkdtemp(prefix="rootfs-tar-", dir=blobs.tmp_dir))
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")
    replacing = os.path.lexists(dest)
    try:
        root = work / "rootfs"
        write_rootfs(blobs, manifest, root)
        with tarfile.open(tmp, "w", format=tarfile.PAX_FORMAT) as tar:
            for rel, _st in walk(root):  # parents first, names sorted: deterministic
                tar.add(
                    root / rel,
                    arcname=rel,
                    recursive=False,
                    filter=_anonymous,
                )
        if replacing:  # never a torn file where the user's old one was (images/save.py)
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, dest)
    except OSError as exc:
        raise BuildError(
            f"cannot write the root filesystem tar {dest}: {exc.strerror or exc}",
            hint="check that its directory exists and is writable, and free space",
        ) from None
    finally:
        tmp.unlink(missing_ok=True)
        force_rmtree(work)


def _anonymous(info: tarfile.TarInfo) -> tarfile.TarInfo:
    """Owners by number only, as in layer tars (names on this host mean nothing there)."""
    info.uname = info.gname = ""
    return info
