"""``pybuild save`` and build outputs: OCI archive, docker-archive, root filesystem.

Archives are deterministic (entries sorted, mtime 0, numeric ids 0, fixed modes), are
written to a temp file beside ``dest`` and renamed into place (a failed save leaves no
half file), and blobs stream from the store, verified, never whole in memory.

Both archives are OCI image layouts in a tar (image-layout.md): ``oci-layout``,
``index.json`` and ``blobs/sha256/<hex>``. Each name gets one ``index.json`` entry with
``org.opencontainers.image.ref.name`` = ``name:tag`` (unique in a multi-image archive,
and what ``skopeo``'s ``oci-archive:FILE:name:tag`` looks up) and
``io.containerd.image.name`` = the fully qualified name. The docker-archive adds docker's
``manifest.json`` (Config, RepoTags, Layers), as docker 25+ ``docker save`` does.

An index (a multi-platform build) goes into an OCI archive whole: ``index.json`` names
the nested index, which lists one manifest per platform. A docker-archive holds one
platform per image, so an index is refused there (name a platform to save instead).

Layer compression: ``compression=None`` keeps the stored layers as they are (an OCI
save -> load round trip then keeps every digest), except that a docker-archive never
holds zstd layers unless asked to (docker before 25 cannot read them): those become
gzip. A target compression converts every other layer (``cache.convert``: once per
layer and store) and copies layers already in it as they are. An image with a converted
layer gets a new manifest in the archive, so a new image digest; its config, and so its
diff_ids and image ID, stay the same.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from builder.errors import BuildError
from builder.images.names import normalize
from cache.convert import convert_layer
from cache.digest import Digest, sha256_bytes, verify
from cache.errors import CacheError
from cache.extract import extract_layer
from cache.images import StoredImage, is_index, read_image, read_index
from cache.layers import Compression
from cache.oci import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    MEDIA_OCI_MANIFEST,
    Descriptor,
    Index,
    Manifest,
    canonical_json,
    is_attestation,
)
from cache.store import BlobStore, force_rmtree
from cache.tarout import TarOut

_OCI_TYPE = {MEDIA_DOCKER_LAYER: MEDIA_OCI_LAYER, MEDIA_DOCKER_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP}
_OCI_LAYOUT = canonical_json({"imageLayoutVersion": "1.0.0"})
_SAVE_HINT = (
    "the image is damaged in the store; run `pybuild cache verify --repair`, "
    "then build, pull or load it again"
)


@dataclass(frozen=True)
class _Entry:
    """One image as it goes into an archive: its names and the manifest written for it;
    for an index, the index written and its images (``children``)."""

    names: tuple[str, ...]
    manifest: Manifest
    manifest_bytes: bytes
    children: tuple[_Entry, ...] = ()
    media_type: str = ""  # "": the manifest's own

    @property
    def digest(self) -> Digest:
        return sha256_bytes(self.manifest_bytes)

    @property
    def leaves(self) -> tuple[_Entry, ...]:
        """The image manifests in the entry: itself, or an index's images."""
        return self.children or (self,)


def write_oci_archive(
    blobs: BlobStore,
    images: Sequence[tuple[str, Digest]],
    dest: Path,
    *,
    compression: Compression | None = None,
) -> None:
    """Write the images (``(name:tag, manifest digest)``; name "" = untagged) as an OCI archive.

    With ``compression=None`` manifests are copied byte for byte, so loading the archive
    gives the same digests; otherwise layers are converted (module docstring). Raises
    BuildError when an image is missing or damaged or ``dest`` cannot be written.
    """
    entries = _entries(blobs, images, _Policy(compression, for_docker=False))
    _write_archive(blobs, entries, dest, docker_manifest=None)


def write_docker_archive(
    blobs: BlobStore,
    images: Sequence[tuple[str, Digest]],
    dest: Path,
    *,
    compression: Compression | None = None,
) -> None:
    """Write the images as a docker-archive; ``docker load`` of any version takes it
    unless ``compression`` is ZSTD (docker 25+ only).

    ``compression=None``: zstd layers become gzip, others stay. Raises BuildError like
    write_oci_archive.
    """
    entries = _entries(blobs, images, _Policy(compression, for_docker=True))
    for e in entries:
        if e.children:
            shown = ", ".join(e.names) or str(e.digest)
            raise BuildError(
                f"{shown} is a multi-platform image ({len(e.children)} platforms): a "
                "docker-archive holds one platform per image",
                hint="write an OCI archive (type=oci) for all of them, or build or save "
                "one platform (--platform linux/arm64)",
            )
    docker = [
        {
            "Config": _blob_name(e.manifest.config.digest),
            "RepoTags": list(e.names) or None,
            "Layers": [_blob_name(layer.digest) for layer in e.manifest.layers],
        }
        for e in entries
    ]
    _write_archive(blobs, entries, dest, docker_manifest=canonical_json(docker))


def write_rootfs(blobs: BlobStore, manifest: Digest, dest: Path) -> None:
    """Flatten the image's layers into the directory ``dest`` (``-o type=local``).

    ``dest`` is created if missing. Like docker's local exporter, an existing ``dest`` is
    written over: the image's files replace same-named ones, other files stay. The layers
    are applied in a temp dir first, so a failure leaves ``dest`` untouched.
    """
    image = _read(blobs, manifest)
    dest = dest.absolute()
    # The temp dir must be on dest's filesystem to rename from it; inside an existing
    # dest is the one place sure to be writable and on it.
    parent = dest if dest.is_dir() else dest.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".pybuild-rootfs-", dir=parent))
    except OSError as exc:
        raise BuildError(
            f"cannot write the root filesystem to {dest}: {exc.strerror}",
            hint="choose a writable destination directory",
        ) from None
    try:
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700; a root dir is 0755 unless a layer says
        _apply_layers(blobs, image, tmp)
        if dest.is_dir():
            _merge_into(tmp, dest)
        else:
            if os.path.lexists(dest):
                raise BuildError(
                    f"{dest} exists and is not a directory", hint="remove it or choose another dest"
                )
            os.rename(tmp, dest)
    except OSError as exc:
        raise BuildError(
            f"writing the root filesystem to {dest} failed: {exc.strerror or exc}",
            hint="check free space and permissions at the destination",
        ) from None
    finally:
        if os.path.lexists(tmp):
            force_rmtree(tmp)


# --- what goes into an archive ---------------------------------------------------------


def _read(blobs: BlobStore, digest: Digest) -> StoredImage:
    try:
        return read_image(blobs, digest)
    except CacheError as exc:
        raise BuildError(f"image {digest}: {exc.message}", hint=_SAVE_HINT) from None


@dataclass(frozen=True)
class _Policy:
    """Which compression each layer gets in the archive."""

    target: Compression | None
    for_docker: bool

    def target_for(self, layer: Descriptor) -> Compression | None:
        """The compression to convert ``layer`` to; None keeps it as it is."""
        if self.target is None and self.for_docker and layer.media_type == MEDIA_OCI_LAYER_ZSTD:
            return Compression.GZIP
        return self.target


def _entries(
    blobs: BlobStore, images: Sequence[tuple[str, Digest]], policy: _Policy
) -> list[_Entry]:
    """One entry per distinct manifest, in first-seen order, with all of its names."""
    if not images:
        raise BuildError("no image to save", hint="name at least one image")
    names: dict[Digest, list[str]] = {}
    for name, digest in images:
        listed = names.setdefault(digest, [])
        if name and normalize(name) not in listed:
            listed.append(normalize(name))
    entries = []
    for digest, image_names in names.items():
        try:
            if is_index(blobs, digest):
                entry = _index_entry(blobs, digest, policy)
            else:
                entry = _converted(blobs, _read(blobs, digest), policy)
        except CacheError as exc:
            raise BuildError(f"image {digest}: {exc.message}", hint=_SAVE_HINT) from None
        entries.append(replace(entry, names=tuple(image_names)))
    return entries


def _index_entry(blobs: BlobStore, digest: Digest, policy: _Policy) -> _Entry:
    """An index and its images, each converted as ``policy`` says (a converted image
    gets a new manifest, so the index is rewritten; else it is copied as it is)."""
    index = read_index(blobs, digest)
    children = []
    descriptors = []
    for desc in index.manifests:
        if is_attestation(desc) or not blobs.has(desc.digest):
            continue
        child = _converted(blobs, _read(blobs, desc.digest), policy)
        children.append(child)
        media_type = child.manifest.media_type
        size = len(child.manifest_bytes)
        descriptors.append(replace(desc, media_type=media_type, digest=child.digest, size=size))
    if not children:
        raise CacheError(f"index {digest} lists no image in the store")
    rewritten = Index(tuple(descriptors), index.annotations)
    same = rewritten.manifests == index.manifests
    data = blobs.read_bytes(digest) if same else rewritten.to_bytes()
    return _Entry((), _no_manifest(), data, tuple(children), MEDIA_OCI_INDEX)


def _no_manifest() -> Manifest:
    """An index entry has no manifest of its own: its images' are in ``children``."""
    return Manifest(Descriptor(MEDIA_OCI_MANIFEST, sha256_bytes(b""), 0), ())


def _as_is(blobs: BlobStore, image: StoredImage) -> _Entry:
    return _Entry((), image.manifest, blobs.read_bytes(image.digest))


def _converted(blobs: BlobStore, image: StoredImage, policy: _Policy) -> _Entry:
    """The image with its layers as ``policy`` wants them; unchanged if they already are."""
    layers = []
    for layer, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
        target = policy.target_for(layer)
        layers.append(layer if target is None else convert_layer(blobs, layer, diff_id, target))
    if policy.target is not None or tuple(layers) != image.manifest.layers:
        # An OCI manifest with docker layer types (from a docker-schema2 base) is refused
        # by umoci; the blobs are the same formats, so only the type changes.
        layers = [replace(d, media_type=_OCI_TYPE.get(d.media_type, d.media_type)) for d in layers]
    if tuple(layers) == image.manifest.layers:
        return _as_is(blobs, image)
    manifest = Manifest(
        image.manifest.config, tuple(layers), image.manifest.annotations, MEDIA_OCI_MANIFEST
    )
    return _Entry((), manifest, manifest.to_bytes())


def _index(entries: Sequence[_Entry]) -> Index:
    descriptors = []
    for e in entries:
        media_type = e.media_type or e.manifest.media_type
        plain = Descriptor(media_type, e.digest, len(e.manifest_bytes))
        if not e.names:
            descriptors.append(plain)
        for name in e.names:
            annotations = ((ANNOTATION_IMAGE_NAME, _full_name(name)), (ANNOTATION_REF_NAME, name))
            descriptors.append(
                Descriptor(plain.media_type, plain.digest, plain.size, tuple(sorted(annotations)))
            )
    return Index(tuple(descriptors))


def _full_name(name: str) -> str:
    """docker's fully qualified form: ``busybox:1`` -> ``docker.io/library/busybox:1``."""
    first, slash, _ = name.partition("/")
    if not slash:
        return f"docker.io/library/{name}"
    if "." in first or ":" in first or first == "localhost":
        return name  # already has a registry host
    return f"docker.io/{name}"


def _blob_name(digest: Digest) -> str:
    return f"blobs/{digest.algorithm}/{digest.hex}"


# --- writing the tar -------------------------------------------------------------------


def _write_archive(
    blobs: BlobStore, entries: Sequence[_Entry], dest: Path, *, docker_manifest: bytes | None
) -> None:
    leaves = [leaf for e in entries for leaf in e.leaves]
    in_memory = {e.digest: e.manifest_bytes for e in [*entries, *leaves]}
    from_store = {e.manifest.config.digest for e in leaves}
    from_store |= {layer.digest for e in leaves for layer in e.manifest.layers}
    from_store -= in_memory.keys()
    files = {"index.json": _index(entries).to_bytes(), "oci-layout": _OCI_LAYOUT}
    if docker_manifest is not None:
        files["manifest.json"] = docker_manifest
    try:
        with atomic_file(dest) as fd:
            tar = TarOut(fd)
            tar.add_bytes(_info("blobs", directory=True))
            tar.add_bytes(_info("blobs/sha256", directory=True))
            for digest in sorted(in_memory.keys() | from_store):
                name = _blob_name(digest)
                if digest in in_memory:
                    tar.add_bytes(_info(name), in_memory[digest])
                else:
                    tar.add_blob(_info(name), blobs, digest)
            for name in sorted(files):
                tar.add_bytes(_info(name), files[name])
            tar.close()
    except CacheError as exc:
        raise BuildError(f"saving to {dest} failed: {exc.message}", hint=_SAVE_HINT) from None
    except OSError as exc:
        raise BuildError(
            f"cannot write {dest}: {exc.strerror or exc}",
            hint="check that its directory exists and is writable, and free space",
        ) from None


def _info(name: str, *, directory: bool = False) -> tarfile.TarInfo:
    """A member's header fields; ``TarOut`` sets the size."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    return info


@contextmanager
def atomic_file(dest: Path) -> Iterator[int]:
    """A new file (its descriptor) that becomes ``dest`` only once complete.

    It is fsynced before it replaces a file already at ``dest``, so that a crash never
    leaves the user a torn file where their old one was. A new ``dest`` is left to the
    kernel's writeback, as ``docker save`` and ``tar`` leave theirs: waiting for the disk
    would double the time of saving a big image, with nothing of the user's at stake.
    """
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp")
    replacing = os.path.lexists(dest)
    # 0o666 so the umask decides the final mode, as for any file a command writes.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    try:
        try:
            yield fd
            if replacing:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- the root filesystem ---------------------------------------------------------------


def _apply_layers(blobs: BlobStore, image: StoredImage, root: Path) -> None:
    for layer, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
        try:
            verify(
                diff_id, extract_layer(blobs, layer, root, mode="apply"), f"layer {layer.digest}"
            )
        except CacheError as exc:
            raise BuildError(
                f"unpacking image {image.digest}: {exc.message}", hint=_SAVE_HINT
            ) from None


def _merge_into(src: Path, dst: Path) -> None:
    """Move src's tree into dst: directories merge, anything else replaces (never followed).

    Iterative (a stack of dir pairs), so the depth of the trees is not bounded by the
    interpreter's stack; dir metadata is copied last, deepest first.
    """
    merged: list[tuple[Path, Path]] = []
    todo = [(src, dst)]
    while todo:
        src_dir, dst_dir = todo.pop()
        merged.append((src_dir, dst_dir))
        with os.scandir(src_dir) as it:
            entries = list(it)
        for entry in entries:
            target = dst_dir / entry.name
            target_is_dir = os.path.isdir(target) and not os.path.islink(target)
            if entry.is_dir(follow_symlinks=False) and target_is_dir:
                todo.append((Path(entry.path), target))
                continue
            if target_is_dir:
                force_rmtree(target)
            elif os.path.lexists(target):
                target.unlink()
            os.rename(entry.path, target)
    for src_dir, dst_dir in reversed(merged):
        _copy_metadata(src_dir, dst_dir)


def _copy_metadata(src: Path, dst: Path) -> None:
    st = os.lstat(src)
    if os.geteuid() == 0:
        os.lchown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    os.utime(dst, ns=(st.st_atime_ns, st.st_mtime_ns), follow_symlinks=False)
