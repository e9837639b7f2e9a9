"""The built image: config and manifest into the store, tags in the index."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from builder.errors import BuildError
from builder.images.names import normalize
from builder.images.store import Storage
from builder.solve import StageResult
from cache.errors import CacheError
from cache.images import StoredImage, write_image
from cache.oci import (
    MEDIA_DOCKER_LAYER,
    MEDIA_DOCKER_LAYER_GZIP,
    MEDIA_OCI_LAYER,
    MEDIA_OCI_LAYER_GZIP,
    Descriptor,
    Pairs,
)

# A base pulled as docker schema2 brings docker layer types; the manifest we write is
# OCI, so its layers take the OCI names for the same bytes, as BuildKit's exporter does
# (umoci and other strict readers refuse docker layer types inside an OCI manifest).
_OCI_LAYER_TYPE = {
    MEDIA_DOCKER_LAYER: MEDIA_OCI_LAYER,
    MEDIA_DOCKER_LAYER_GZIP: MEDIA_OCI_LAYER_GZIP,
}


def commit_image(
    storage: Storage,
    result: StageResult,
    tags: Sequence[str],
    labels: Pairs = (),
    annotations: Pairs = (),
    epoch: int | None = None,
) -> StoredImage:
    """Write the target stage's config and manifest, then point every tag at it.

    ``labels`` (``--label``) are set on the image config over the Dockerfile's LABELs, as
    docker does; ``annotations`` (``--annotation``) go on the manifest. With ``epoch``
    (SOURCE_DATE_EPOCH) every layer above the base image's has its file times clamped
    to it (``cache.clamp``), as BuildKit's exporter does with ``rewrite-timestamp``.
    """
    result = _clamped(storage, result, epoch) if epoch is not None else result
    layers = [_oci_layer(d) for d in result.layers]
    config = result.config
    if labels:
        merged = {**dict(config.config.labels), **dict(labels)}
        run_config = replace(config.config, labels=tuple(sorted(merged.items())))
        config = replace(config, config=run_config)
    image = write_image(storage.blobs, config, layers, annotations)
    for tag in tags:
        storage.index.set_tag(normalize(tag), image.digest)
    return image


def _oci_layer(desc: Descriptor) -> Descriptor:
    media_type = _OCI_LAYER_TYPE.get(desc.media_type)
    return desc if media_type is None else replace(desc, media_type=media_type)


def _clamped(storage: Storage, result: StageResult, epoch: int) -> StageResult:
    """The result with its own layers clamped; the base image's layers are kept as they
    are (BuildKit keeps those whose diff_ids match the base image's, issue 4614)."""
    from cache.clamp import clamp_layer  # here: it reads tars; only an epoch needs it

    layers, diff_ids = list(result.layers), list(result.config.diff_ids)
    for i in range(result.base_layers, len(layers)):
        try:
            clamped = clamp_layer(storage.blobs, layers[i], diff_ids[i], epoch)
        except CacheError as exc:
            raise BuildError(f"cannot clamp a layer to SOURCE_DATE_EPOCH: {exc.message}",
                             hint=exc.hint) from None  # fmt: skip
        layers[i], diff_ids[i] = clamped.layer, clamped.diff_id
    config = replace(result.config, diff_ids=tuple(diff_ids))
    return replace(result, layers=tuple(layers), config=config)
