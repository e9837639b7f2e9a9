"""``pybuild load -i FILE``: docker-archives and OCI archives into the local store.

Accepted (the archive file itself may be gzip, bzip2, xz or zstd compressed):

- docker-archive, classic (``docker save`` before 25, skopeo): ``manifest.json`` lists
  each image's ``Config`` and ``Layers`` by path in the tar; layers are named by ids, not
  digests, so they are checked against the config's ``diff_ids``. We store the layers as
  they are and write our own OCI manifest (``cache.images.write_image``).
- docker-archive, docker 25+: the same ``manifest.json`` beside an OCI layout; read as an
  OCI layout (digests kept), names from ``manifest.json`` when ``index.json`` has none.
- OCI archive: a tar of an OCI image layout (image-layout.md). ``index.json`` may point to
  a nested index; from it the host platform's manifest is taken.

One pass over the tar: blobs stream into the store, checked against their names; other
small members wait in memory until we know what they are. Tags are written only after
every image in the archive resolved, so a failed load tags nothing.
"""

from __future__ import annotations

import json
import lzma
import posixpath
import re
import tarfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import zstandard

from builder.errors import BuildError, UsageError
from builder.images.names import normalize
from cache.digest import Digest, Sha256, verify
from cache.errors import BlobNotFound, CacheError, DigestMismatch, InvalidImage
from cache.images import StoredImage, read_image, write_image
from cache.index import Index as TagIndex
from cache.layers import Compression, detect_compression, open_decompressed
from cache.oci import (
    ANNOTATION_IMAGE_NAME,
    ANNOTATION_REF_NAME,
    Descriptor,
    ImageConfig,
    Index,
    host_platform,
    is_attestation,
    load_json,
    select_platform,
)
from cache.store import BlobStore
from cache.tarcheck import check_member

_CHUNK = 1 << 20
_SMALL_FILE = 1 << 20  # other members up to this size wait in memory (configs, JSON)
_SMALL_TOTAL = 64 << 20  # past this total they go to the store instead
_MAX_LINKS = 16
_MAX_NESTING = 4
_BLOB_PATH = re.compile(r"^blobs/sha256/([a-f0-9]{64})$")
# docker and skopeo name configs "<hex>.json"; go-containerregistry "sha256:<hex>".
_NAMED_BY_DIGEST = re.compile(r"^(?:sha256:)?([a-f0-9]{64})(?:\.json)?$")
_FORMAT_HINT = "expected a docker-archive (docker save) or OCI archive"


@dataclass(frozen=True)
class LoadedImage:
    """One image the load made available: its name (None if untagged) and manifest digest."""

    name: str | None
    digest: Digest


@dataclass(frozen=True)
class _Found:
    names: tuple[str, ...]
    digest: Digest


def load_archive(path: Path, blobs: BlobStore, index: TagIndex) -> list[LoadedImage]:
    """Load every image in the archive at ``path``; tag the named ones.

    Returns one LoadedImage per name (an image with several names appears several times)
    and one with ``name=None`` per untagged image. Raises BuildError (with a hint) when the
    file is not a tar, not an image archive, incomplete or corrupt; then no tag is
    written (blobs already stored stay: they are content-addressed).
    """
    members = _Members(blobs)
    with _open_tar(path) as tar:
        _scan(path, tar, members)
    try:
        found = _resolve(members, blobs)
    except CacheError as exc:
        raise _as_build_error(path, exc) from None
    loaded = [LoadedImage(n, f.digest) for f in found for n in f.names]
    loaded += [LoadedImage(None, f.digest) for f in found if not f.names]
    for image in loaded:
        if image.name is not None:
            index.set_tag(image.name, image.digest)
    return loaded


class _Members:
    """What one pass over the archive found, by normalised member path."""

    def __init__(self, blobs: BlobStore) -> None:
        self.blobs = blobs
        self.stored: dict[str, Digest] = {}
        self.small: dict[str, bytes] = {}
        self.links: dict[str, str] = {}
        self._small_total = 0

    def add(self, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
        name = _clean(member.name)
        if member.issym():
            self.links[name] = _clean(posixpath.join(posixpath.dirname(name), member.linkname))
        elif member.islnk():
            self.links[name] = _clean(member.linkname)
        if not member.isreg():
            return
        data = tar.extractfile(member)
        assert data is not None  # a regular member always has data
        if blob := _BLOB_PATH.match(name):
            expected = Digest("sha256", blob.group(1))
            if not self.blobs.intact(expected):  # one gone bad is written again
                self._store(data, expected)
            self.stored[name] = expected
        elif member.size <= _SMALL_FILE and self._small_total + member.size <= _SMALL_TOTAL:
            self.small[name] = data.read()
            self._small_total += member.size
        else:
            self.stored[name] = self._store(data, None)

    def _store(self, data: IO[bytes], expected: Digest | None) -> Digest:
        with self.blobs.writer(expected) as writer:
            while chunk := data.read(_CHUNK):
                writer.write(chunk)
        return writer.digest

    def resolve(self, path: str) -> str:
        name = _clean(path)
        for _ in range(_MAX_LINKS):
            if name not in self.links:
                return name
            name = self.links[name]
        raise InvalidImage(f"too many levels of links at {path} in the archive")

    def has(self, path: str) -> bool:
        name = self.resolve(path)
        return name in self.small or name in self.stored

    def read(self, path: str) -> bytes:
        """The member's bytes (only for JSON documents: small, or read from the store)."""
        name = self.resolve(path)
        if name in self.small:
            return self.small[name]
        if name in self.stored:
            return self.blobs.read_bytes(self.stored[name])
        raise BlobNotFound(f"the archive has no file {path}")

    def digest(self, path: str) -> Digest:
        """The member's content digest, storing it first if it was held in memory."""
        name = self.resolve(path)
        if name not in self.stored and name in self.small:
            self.stored[name] = self.blobs.put_bytes(self.small.pop(name))
        if name not in self.stored:
            raise BlobNotFound(f"the archive has no file {path}")
        return self.stored[name]


def _clean(name: str) -> str:
    return posixpath.normpath("/" + name).lstrip("/")


@contextmanager
def _open_tar(path: Path) -> Iterator[tarfile.TarFile]:
    """The archive as a streaming tar, decompressing it first if it is compressed."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise BuildError(
            f"cannot read {path}: {exc.strerror}", hint="check the path given to -i"
        ) from None
    with raw:
        head = raw.read(4)
        raw.seek(0)
        # tarfile detects gzip, bzip2 and xz itself; zstd it does not know.
        stream: IO[bytes] = raw
        if detect_compression(head) is Compression.ZSTD:
            stream = open_decompressed(raw, Compression.ZSTD)
        try:
            tar = tarfile.open(fileobj=stream, mode="r|*")  # noqa: SIM115 (closed below)
        except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
            raise BuildError(f"{path} is not a tar archive ({exc})", hint=_FORMAT_HINT) from None
        with tar:
            yield tar


def _scan(path: Path, tar: tarfile.TarFile, members: _Members) -> None:
    try:
        while (member := tar.next()) is not None:
            check_member(member, "archive")
            members.add(tar, member)
            tar.members.clear()  # type: ignore[attr-defined]  # stream mode keeps them all
    except CacheError as exc:
        raise _as_build_error(path, exc) from None
    except (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, zstandard.ZstdError) as exc:
        raise BuildError(
            f"{path} is truncated or corrupt: {exc}",
            hint="the file was probably cut short while copying; export it again",
        ) from None
    except OSError as exc:
        raise BuildError(
            f"loading {path} failed: {exc.strerror or exc}",
            hint="check free space in the pybuild store and that the file is readable",
        ) from None


def _as_build_error(path: Path, exc: CacheError) -> BuildError:
    hints = {
        DigestMismatch: "the archive is corrupt or was modified after it was written; "
        "export it again",
        BlobNotFound: "the archive is incomplete; export it again (docker save, skopeo copy)",
        InvalidImage: _FORMAT_HINT,
    }
    hint = next((h for kind, h in hints.items() if isinstance(exc, kind)), exc.hint)
    return BuildError(f"{path}: {exc.message}", hint=hint or _FORMAT_HINT)


def _resolve(members: _Members, blobs: BlobStore) -> list[_Found]:
    has_index, has_docker = members.has("index.json"), members.has("manifest.json")
    if has_index:
        try:
            return _oci_images(members, blobs, has_docker)
        except (InvalidImage, BlobNotFound):
            # docker 25+ archives carry both forms; the classic one may still be whole.
            if not has_docker:
                raise
    if has_docker:
        return _docker_images(members, blobs)
    raise InvalidImage("not an image archive: it has neither manifest.json nor index.json")


# --- OCI layout (image-layout.md), also the docker 25+ archive -----------------------


def _oci_images(members: _Members, blobs: BlobStore, has_docker: bool) -> list[_Found]:
    if members.has("oci-layout"):
        layout = load_json(members.read("oci-layout"), "oci-layout")
        if not isinstance(layout.get("imageLayoutVersion"), str):
            raise InvalidImage("oci-layout: imageLayoutVersion is missing")
    index = Index.from_bytes(members.read("index.json"))
    docker_names = _docker_names_by_config(members) if has_docker else {}
    found = []
    for top in index.manifests:
        if _whole_index(blobs, top):
            found.append(_Found(_annotation_names(top), top.digest))
            continue
        image = _require_image(blobs, _pick_manifest(blobs, top, 0))
        names = _annotation_names(top) or docker_names.get(image.config_digest, ())
        found.append(_Found(names, image.digest))
    if not found:
        raise InvalidImage("index.json lists no images")
    return found


def _whole_index(blobs: BlobStore, desc: Descriptor) -> bool:
    """A multi-platform index whose every image the archive holds (as ``pybuild build
    --platform a,b -o type=oci`` and ``buildx`` write): it is kept whole, its images
    checked; the name then gives the host's image to ``run`` and each platform's to a
    build for it. An index with images missing (docker's containerd store saves only
    the platforms it has) gives its host image alone."""
    _require(blobs, desc, "manifest")
    obj = load_json(blobs.read_bytes(desc.digest), f"manifest {desc.digest}")
    if "manifests" not in obj:
        return False
    entries = [d for d in Index.from_bytes(blobs.read_bytes(desc.digest)).manifests]
    images = [d for d in entries if not is_attestation(d)]
    if len(images) < 2 or not all(blobs.has(d.digest) for d in images):
        return False
    if any("manifests" in load_json(blobs.read_bytes(d.digest), "manifest") for d in images):
        return False  # nested further: take the host's image as before
    for d in images:
        _require(blobs, d, "manifest")
        _require_image(blobs, d)
    return True


def _pick_manifest(blobs: BlobStore, desc: Descriptor, depth: int) -> Descriptor:
    """Follow nested indexes down to one image manifest for the host platform."""
    _require(blobs, desc, "manifest")
    data = blobs.read_bytes(desc.digest)
    if "manifests" not in load_json(data, f"manifest {desc.digest}"):
        return desc  # an image manifest; read_image checks it further
    if depth >= _MAX_NESTING:
        raise InvalidImage(f"image indexes nested more than {_MAX_NESTING} deep")
    # docker's containerd store lists every platform but saves only the ones it has.
    candidates = [
        d for d in Index.from_bytes(data).manifests if blobs.has(d.digest) and not is_attestation(d)
    ]
    chosen = select_platform(candidates, host_platform())
    if chosen is None:
        have = ", ".join(sorted({str(d.platform) for d in candidates if d.platform})) or "none"
        raise InvalidImage(
            f"index {desc.digest} has no image for {host_platform()} (it has: {have})"
        )
    return _pick_manifest(blobs, chosen, depth + 1)


def _require(blobs: BlobStore, desc: Descriptor, what: str) -> None:
    if not blobs.has(desc.digest):
        raise BlobNotFound(f"the archive has no blob for {what} {desc.digest}")
    actual = blobs.size(desc.digest)
    if actual != desc.size:
        raise InvalidImage(
            f"{what} {desc.digest} is {actual} bytes, its descriptor says {desc.size}"
        )


def _require_image(blobs: BlobStore, manifest: Descriptor) -> StoredImage:
    """Read the image and check every blob it needs arrived whole."""
    image = read_image(blobs, manifest.digest)
    _require(blobs, image.manifest.config, "config")
    for layer in image.manifest.layers:
        _require(blobs, layer, "layer")
    return image


def _annotation_names(desc: Descriptor) -> tuple[str, ...]:
    annotations = dict(desc.annotations)
    if full := annotations.get(ANNOTATION_IMAGE_NAME):
        return _name_or_nothing(full)
    ref = annotations.get(ANNOTATION_REF_NAME, "")
    # image-layout.md examples use bare tags ("v1.0"), which name no repository: only a
    # value with a repository part (skopeo writes "busybox:latest") is a usable name.
    if ":" in ref.rsplit("/", 1)[-1] or "/" in ref:
        return _name_or_nothing(ref)
    return ()


def _name_or_nothing(ref: str) -> tuple[str, ...]:
    name, at, _ = ref.partition("@")
    if at and ":" not in name.rsplit("/", 1)[-1]:
        return ()  # pinned by digest only: there is no tag to give it
    try:
        return (normalize(name),)
    except UsageError:
        raise InvalidImage(f"the archive names an image {ref!r}, not a valid image name") from None


# --- docker-archive (docker save; moby image/tarexport) ---------------------------------


def _docker_entries(members: _Members) -> list[dict[str, object]]:
    try:
        entries = json.loads(members.read("manifest.json"))
    except ValueError as exc:
        raise InvalidImage(f"manifest.json is not valid JSON: {exc}") from None
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise InvalidImage("manifest.json must be a list of objects")
    return entries


def _docker_fields(entry: dict[str, object], i: int) -> tuple[str, list[str], tuple[str, ...]]:
    """Config path, layer paths and normalised names of one manifest.json entry."""
    config = entry.get("Config")
    if not isinstance(config, str):
        raise InvalidImage(f"manifest.json entry {i}: Config must be a path")
    layers = _str_list(entry.get("Layers"), f"manifest.json entry {i}: Layers")
    tags = _str_list(entry.get("RepoTags") or [], f"manifest.json entry {i}: RepoTags")
    return config, layers, tuple(n for t in tags for n in _name_or_nothing(t))


def _str_list(value: object, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidImage(f"{what} must be a list of strings")
    return [str(v) for v in value]


def _docker_names_by_config(members: _Members) -> dict[Digest, tuple[str, ...]]:
    out: dict[Digest, tuple[str, ...]] = {}
    for i, entry in enumerate(_docker_entries(members)):
        config, _, names = _docker_fields(entry, i)
        if members.has(config):
            out[members.digest(config)] = names
    return out


def _docker_images(members: _Members, blobs: BlobStore) -> list[_Found]:
    found = []
    for i, entry in enumerate(_docker_entries(members)):
        config_path, layer_paths, names = _docker_fields(entry, i)
        config_bytes = members.read(config_path)
        config_digest = members.digest(config_path)
        if named := _NAMED_BY_DIGEST.match(posixpath.basename(config_path)):
            verify(Digest("sha256", named.group(1)), config_digest, f"config {config_path}")
        config = ImageConfig.from_bytes(config_bytes)
        if len(layer_paths) != len(config.diff_ids):
            raise InvalidImage(
                f"manifest.json entry {i} lists {len(layer_paths)} layers, "
                f"its config {len(config.diff_ids)} diff_ids"
            )
        layers = [
            _docker_layer(members, blobs, p, d)
            for p, d in zip(layer_paths, config.diff_ids, strict=True)
        ]
        found.append(_Found(names, write_image(blobs, config, layers).digest))
    if not found:
        raise InvalidImage("manifest.json lists no images")
    return found


def _docker_layer(members: _Members, blobs: BlobStore, path: str, diff_id: Digest) -> Descriptor:
    """A layer named by id: its content must match the config's diff_id (compressed or not)."""
    digest = members.digest(path)
    with blobs.open(digest) as f:
        compression = detect_compression(f.read(512))
    if compression is Compression.NONE:
        verify(diff_id, digest, f"layer {path} (diff_id)")
    else:
        actual = _uncompressed_digest(blobs, digest, compression)
        verify(diff_id, actual, f"layer {path} (diff_id)")
    return Descriptor(compression.media_type, digest, blobs.size(digest))


def _uncompressed_digest(blobs: BlobStore, digest: Digest, compression: Compression) -> Digest:
    h = Sha256()
    with blobs.open(digest) as raw:
        with open_decompressed(raw, compression) as tar:
            while chunk := tar.read(_CHUNK):
                h.update(chunk)
        while raw.read(_CHUNK):  # to EOF, where the store's reader verifies the blob
            pass
    return h.digest()
