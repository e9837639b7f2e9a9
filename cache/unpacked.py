"""Unpacked layers: each layer once, in overlay lower-dir form, at ``<root>/layers/<hex>``.

A layer dir is named by its diff_id and only ever appears whole: it is built in a temp
dir under the store's ``tmp`` (same filesystem) and renamed into place, under a
per-layer lock so concurrent processes do the work once. Removal renames it away
first, so a reader never sees a half-deleted layer under its real name.

Before a layer is placed its manifest is recorded (cache/layermeta.py); every use
checks its fingerprint, and a layer that was changed since (or has no record) is
removed and unpacked again from its blob, so no build or container reads a tampered
lower.
"""

from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

from cache.digest import Digest, verify
from cache.errors import CacheError
from cache.extract import extract_layer
from cache.layermeta import LayerMeta, Mismatch, TreeRecord
from cache.oci import Descriptor
from cache.store import BlobStore, force_rmtree


class UnpackedLayers:
    """The unpacked layers of one store, shared by every process using it."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.root = blobs.root / "layers"
        self.root.mkdir(exist_ok=True)
        self.meta = LayerMeta(blobs.root, blobs.tmp_dir)

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

        A dir that differs from its recorded manifest (or has none) is unpacked again.
        Raises DigestMismatch when the blob's content or its diff_id is not what the
        caller said, LayerError when it cannot be extracted; nothing is left in place.
        """
        if (found := self.get(diff_id)) is not None and self.intact(diff_id, found):
            return found
        with self.blobs.lock(self._lock_name(diff_id)):
            if (found := self.get(diff_id)) is not None:
                if self.intact(diff_id, found):
                    return found  # another process unpacked it while we waited
                self._discard(diff_id, found)
            with self.blobs.temp_dir("unpack-") as tmp:
                actual = extract_layer(self.blobs, layer, tmp, mode="overlay")
                verify(diff_id, actual, f"diff_id of layer {layer.digest}")
                os.chmod(tmp, 0o755)  # the mkdtemp-style 0700 would hide the lower root
                self.meta.record(diff_id.hex, tmp)
                return self._place(tmp, diff_id)

    def intact(self, diff_id: Digest, path: Path) -> bool:
        """Whether the dir still holds what was recorded when it was placed.

        Cheap when its fingerprint matches; otherwise the content is compared in full
        (and the fingerprint renewed if it is unchanged, e.g. in a copied store).
        """
        if self.meta.fingerprint_matches(diff_id.hex, path):
            return True
        if self.check(diff_id, path) is not None:
            return False
        self.meta.refresh(diff_id.hex, path)
        return True

    def check(self, diff_id: Digest, path: Path) -> Mismatch | None:
        """None if the dir matches its manifest in full, else what differs."""
        try:
            mismatch = self.meta.check(diff_id.hex, path)
        except FileNotFoundError:
            return Mismatch((), (), ("(the whole layer)",))
        if mismatch is None:
            return Mismatch(("(no manifest was recorded when it was unpacked)",), (), ())
        return mismatch or None

    def adopt(self, diff_id: Digest, src: Path, record: TreeRecord | None = None) -> Path:
        """Move ``src`` (an overlay upper dir on the store's filesystem) into place.

        ``record``: its layermeta records, made while its layer was written (write_layer's
        ``record``); without them ``src`` is read again to make them. If the layer is
        already unpacked (and intact), ``src`` is deleted instead. Returns the path.
        """
        with self.blobs.lock(self._lock_name(diff_id)):
            if (found := self.get(diff_id)) is not None:
                if self.intact(diff_id, found):
                    force_rmtree(src)
                    return found
                self._discard(diff_id, found)
            if record is not None:
                self.meta.write(diff_id.hex, record)
            else:
                self.meta.record(diff_id.hex, src)
            return self._place(src, diff_id)

    def remove(self, diff_id: Digest) -> None:
        """Delete the layer's dir; a no-op when it is not unpacked."""
        path = self._path(diff_id)
        with self.blobs.lock(self._lock_name(diff_id)):
            if not path.is_dir():
                self.meta.forget(diff_id.hex)
                return
            trash = self._discard(diff_id, path, later=True)
        force_rmtree(trash)

    def _discard(self, diff_id: Digest, path: Path, *, later: bool = False) -> Path:
        """Rename the dir out of place (caller holds the layer lock) and forget its records;
        removes it now unless ``later`` (then the caller removes the returned path)."""
        trash = self.blobs.tmp_dir / f"rm-{diff_id.hex}-{uuid.uuid4().hex}"
        os.rename(path, trash)
        self.meta.forget(diff_id.hex)
        if not later:
            force_rmtree(trash)
        return trash

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
