"""``--build-context NAME=VALUE``: what ``FROM NAME``, ``COPY --from=NAME`` and
``RUN --mount=from=NAME`` read instead of the image (or stage) called NAME.

As in buildx, VALUE is ``docker-image://REF`` (an image: local store, else pulled),
``oci-layout://DIR[:TAG|@DIGEST]`` (an image in an OCI layout directory) or a local
directory (``DIR`` or ``./DIR``). A directory becomes a one-layer image of its files
(owners, modes and contents as on disk, mtimes clamped to SOURCE_DATE_EPOCH when set),
so a step reading it hits the cache as long as its files do not change. A named context
wins over an image of the same name; like BuildKit, it also replaces a stage of that name
only in ``FROM``/``--from`` lookups of images, so name it apart from your stages.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError, UsageError
from builder.images.store import Storage
from cache.digest import Digest
from cache.errors import CacheError
from cache.images import StoredImage, read_image, write_image
from cache.layers import Compression, write_layer
from cache.oci import (
    ANNOTATION_REF_NAME,
    MEDIA_DOCKER_LIST,
    MEDIA_OCI_INDEX,
    Descriptor,
    ImageConfig,
    Index,
    Platform,
    host_platform,
    select_platform,
)

_IMAGE, _LAYOUT = "docker-image://", "oci-layout://"


@dataclass(frozen=True)
class NamedContext:
    """``kind`` is "image" (value: a reference), "oci-layout" or "dir" (value: a path)."""

    name: str
    kind: str
    value: str


def parse_build_contexts(items: list[str]) -> dict[str, NamedContext]:
    """``NAME=VALUE`` flags, by name; UsageError on a malformed or unsupported one."""
    contexts: dict[str, NamedContext] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(
                f"--build-context {item!r}: expected NAME=VALUE",
                hint="VALUE: a directory, docker-image://REF or oci-layout://DIR[:TAG]",
            )
        if value.startswith(_IMAGE):
            contexts[name] = NamedContext(name, "image", value.removeprefix(_IMAGE))
        elif value.startswith(_LAYOUT):
            contexts[name] = NamedContext(name, "oci-layout", value.removeprefix(_LAYOUT))
        elif "://" in value:
            raise UsageError(
                f"--build-context {item!r}: {value.split('://')[0]}:// sources are not supported",
                hint="use a directory, docker-image://REF or oci-layout://DIR[:TAG]",
            )
        elif not Path(value).is_dir():
            raise UsageError(f"--build-context {item!r}: {value} is not a directory")
        else:
            contexts[name] = NamedContext(name, "dir", value)
    return contexts


def resolve_context(
    storage: Storage,
    context: NamedContext,
    compression: Compression,
    epoch: int | None,
    platform: Platform | None = None,
) -> StoredImage:
    """The image the named context stands for (stored in ``storage``, untagged); from a
    multi-platform image, ``platform``'s (default: this machine's)."""
    want = platform if platform is not None else host_platform()
    if context.kind == "image":
        return storage.get_image(context.value, platform)
    if context.kind == "oci-layout":
        return _from_layout(storage, context.value, want)
    layer = write_layer(Path(context.value), storage.blobs, compression=compression,
                        source_date_epoch=epoch)  # fmt: skip
    config = ImageConfig(
        architecture=want.architecture, os=want.os, variant=want.variant, diff_ids=(layer.diff_id,)
    )
    return write_image(storage.blobs, config, [layer.descriptor()])


def _from_layout(storage: Storage, spec: str, platform: Platform) -> StoredImage:
    """``DIR``, ``DIR:TAG`` or ``DIR@sha256:...``: copy the image's blobs in, verified."""
    path, want_digest, want_tag = spec, None, None
    if "@" in spec:
        path, _, text = spec.rpartition("@")
        want_digest = Digest.parse(text)
    elif not Path(spec).is_dir():  # DIR:TAG, where the tag may hold colons (name:1)
        cuts = [i for i, c in enumerate(spec) if c == ":" and Path(spec[:i]).is_dir()]
        if cuts:
            path, want_tag = spec[: cuts[0]], spec[cuts[0] + 1 :]
    layout = Path(path)
    try:
        index = Index.from_bytes((layout / "index.json").read_bytes())
        desc = _pick(layout, index.manifests, want_digest, want_tag, storage, platform)
        _copy_blob(layout, desc, storage)
        image = read_image(storage.blobs, desc.digest)  # the manifest; then its blobs
        for blob in (image.manifest.config, *image.manifest.layers):
            _copy_blob(layout, blob, storage)
        return read_image(storage.blobs, desc.digest)
    except (OSError, ValueError, CacheError) as exc:
        detail = exc.message if isinstance(exc, CacheError) else str(exc)
        raise BuildError(
            f"--build-context oci-layout://{spec}: {detail}",
            hint="point it at an OCI image layout directory (oci-layout, index.json, blobs/)",
        ) from None


def _pick(
    layout: Path,
    manifests: tuple[Descriptor, ...],
    digest: Digest | None,
    tag: str | None,
    storage: Storage,
    platform: Platform,
) -> Descriptor:
    if digest is not None:
        found = [d for d in manifests if d.digest == digest]
    elif tag is not None:
        found = [d for d in manifests if dict(d.annotations).get(ANNOTATION_REF_NAME) == tag]
    else:
        found = list(manifests)
    if len(found) != 1:
        raise ValueError(f"{len(found)} images match in index.json; name one with :TAG or @DIGEST")
    desc = found[0]
    if desc.media_type in (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST):
        _copy_blob(layout, desc, storage)
        nested = Index.from_bytes(storage.blobs.read_bytes(desc.digest))
        chosen = select_platform(nested.manifests, platform)
        if chosen is None:
            raise ValueError(f"the index has no image for {platform}")
        return chosen
    return desc


def _copy_blob(layout: Path, desc: Descriptor, storage: Storage) -> None:
    if storage.blobs.has(desc.digest):
        return
    with (
        open(layout / "blobs" / desc.digest.algorithm / desc.digest.hex, "rb") as src,
        storage.blobs.writer(desc.digest) as out,
    ):
        while chunk := src.read(1 << 20):
            out.write(chunk)
