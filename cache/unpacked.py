"""Unpacked layers: each layer once, in overlay lower-dir form, at ``<root>/layers/<hex>``.

A layer dir is named by its diff_id and only ever appears whole: it is built in a temp
dir under the store's ``tmp`` (same filesystem) and renamed into place, under a
per-layer lock so concurrent processes do the work once. Removal renames it away
first, so a reader never sees a half-deleted layer under its real name.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from cache.digest import Digest, verify
from cache.errors import CacheError
from cache.extract import extract_layer
from cache.oci import Descriptor
from cache.store import BlobStore, force_rmtree


class UnpackedLayers:
    """The unpacked layers of one store, shared by every process using it."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.root = blobs.root / "layers"
        self.root.mkdir(exist_ok=True)

    def _path(self, diff_id: Digest) -> Path:
        return self.root / diff_id.hex

    def _lock_name(self, diff_id: Digest) -> str:
        return f"layer-{diff_id.hex}"

    def get(self, diff_id: Digest) -> Path | None:
        """The layer's dir if it is unpacked, else None."""
        path = self._path(diff_id)
        return path if path.is_dir() else None

    def ensure(self, layer: Descriptor, diff_id: Digest) -> Path:
        """The layer's dir, extracting the blob first if needed.

        Raises DigestMismatch when the blob's content or its diff_id is not what the
        caller said, LayerError when it cannot be extracted; nothing is left in place.
        """
        if (found := self.get(diff_id)) is not None:
            return found
        with self.blobs.lock(self._lock_name(diff_id)):
            if (found := self.get(diff_id)) is not None:
                return found  # another process unpacked it while we waited
            with self.blobs.temp_dir("unpack-") as tmp:
                actual = extract_layer(self.blobs, layer, tmp, mode="overlay")
                verify(diff_id, actual, f"diff_id of layer {layer.digest}")
                os.chmod(tmp, 0o755)  # the mkdtemp-style 0700 would hide the lower root
                return self._place(tmp, diff_id)

    def adopt(self, diff_id: Digest, src: Path) -> Path:
        """Move ``src`` (an overlay upper dir on the store's filesystem) into place.

        If the layer is already unpacked, ``src`` is deleted instead. Returns the path.
        """
        with self.blobs.lock(self._lock_name(diff_id)):
            if (found := self.get(diff_id)) is not None:
                force_rmtree(src)
                return found
            return self._place(src, diff_id)

    def remove(self, diff_id: Digest) -> None:
        """Delete the layer's dir; a no-op when it is not unpacked."""
        path = self._path(diff_id)
        with self.blobs.lock(self._lock_name(diff_id)):
            if not path.is_dir():
                return
            trash = self.blobs.tmp_dir / f"rm-{diff_id.hex}-{uuid.uuid4().hex}"
            os.rename(path, trash)
        force_rmtree(trash)

    def _place(self, src: Path, diff_id: Digest) -> Path:
        path = self._path(diff_id)
        try:
            os.rename(src, path)
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY):
                force_rmtree(src)  # someone placed it without our lock; theirs is as good
                return path
            if exc.errno == errno.EXDEV:
                raise CacheError(
                    f"cannot move {src} into the store: it is on another filesystem",
                    hint=f"create snapshot dirs under {self.blobs.tmp_dir}",
                ) from None
            raise
        return path
