"""The local store as the builder uses it: blobs, unpacked layers, the index, tags.

The store root is always passed explicitly (STYLE habit 5); ``default_root`` is the one
place the environment decides it, and only the CLI calls it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from builder.errors import BuildError
from builder.images.names import normalize
from builder.images.root import default_root as default_root
from cache.digest import Digest
from cache.errors import CacheError, InvalidDigest, PlatformNotFound
from cache.images import StoredImage, read_for_platform, read_image, read_images
from cache.index import Index
from cache.oci import Platform
from cache.store import BlobStore
from cache.storeroot import PRIVATE_MODE, prepare_root

if TYPE_CHECKING:
    from builder.registry.options import RemoteOptions
    from cache.unpacked import UnpackedLayers


@dataclass
class Storage:
    """Everything under one store root, opened together."""

    root: Path
    blobs: BlobStore
    index: Index
    # Registry fallback for get_image (builds): "never", "missing" (local store first)
    # or "always" (--pull: re-resolve every base once per build).
    pull_policy: str = "never"
    pull_options: RemoteOptions | None = None
    pull_events: Callable[[str], None] | None = None
    _pulled: dict[str, StoredImage] = field(default_factory=dict)
    _layers: UnpackedLayers | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls,
        root: Path,
        *,
        warn: Callable[[str], None] | None = None,
        pull_policy: str = "never",
        pull_options: RemoteOptions | None = None,
        pull_events: Callable[[str], None] | None = None,
    ) -> Storage:
        """Open (creating if missing) the store at ``root``, private to its owner.

        Raises StoreRootError when the root belongs to another user, or is a wide
        directory holding other files (see cache.storeroot). A store found readable by
        others is made private and ``warn`` is told so. The ``pull_*`` settings are
        get_image's registry fallback (see the fields).
        """
        state = prepare_root(root)
        if state.widened_mode is not None and warn is not None:
            warn(
                f"warning: the store {root} was mode {state.widened_mode:04o}, open to other "
                f"users; it is now {PRIVATE_MODE:04o} (only its owner can reach it)"
            )
        blobs = BlobStore(root)
        return cls(root, blobs, Index(root), pull_policy, pull_options, pull_events)

    @property
    def layers(self) -> UnpackedLayers:
        """The unpacked layers, made at the first use: a build that hits uses none, and
        their module brings the tar reader and writer in."""
        if self._layers is None:
            from cache.unpacked import UnpackedLayers

            self._layers = UnpackedLayers(self.blobs)  # stateless: a racing twin is harmless
        return self._layers

    def close(self) -> None:
        self.index.close()

    def unpack_for_builds(self, digest: Digest) -> bool:
        """Unpack the layers of image ``digest`` now, as ``docker load`` and ``docker
        pull`` do, so the first build from it starts its first step at once. True if
        every layer is unpacked.

        Only as root outside a user namespace, where a build unpacks in the same way; a
        rootless build unpacks inside its own namespace (other owners), so it is left
        to do that. A layer that cannot be unpacked is left too: the build that needs
        it reports why.
        """
        from runtime.userns import in_initial_namespace

        if os.geteuid() != 0 or not in_initial_namespace():
            return False
        try:
            image = read_image(self.blobs, digest)
            for layer, diff_id in zip(image.manifest.layers, image.config.diff_ids, strict=True):
                self.layers.ensure(layer, diff_id)
        except (CacheError, ValueError):
            return False
        return True

    def __enter__(self) -> Storage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def find_image(self, name: str, platform: Platform | None = None) -> StoredImage | None:
        """Look an image up by name[:tag], by (a prefix of) its manifest digest, or by its
        image ID (the config digest, as docker shows it; a prefix for tagged images).

        A name for a multi-platform index gives its image for ``platform`` (default:
        this machine's); an index without one is a BuildError listing what it has."""
        digest = self._lookup(name)
        if digest is None:
            return None
        try:
            return read_for_platform(self.blobs, digest, platform)
        except PlatformNotFound as exc:
            raise BuildError(
                exc.message.replace(f"image {digest}", f"image {name}", 1), hint=exc.hint
            ) from None
        except CacheError as exc:
            raise BuildError(
                f"image {name} is damaged in the store: {exc.message}",
                hint="run `pybuild cache verify --repair`, then load, pull or build it again",
            ) from None

    def find_digest(self, name: str) -> Digest | None:
        """What ``name`` names in the store: an image manifest or a multi-platform index."""
        return self._lookup(name)

    def get_image(self, name: str, platform: Platform | None = None) -> StoredImage:
        """Like find_image, but a missing image is a BuildError saying how to get one.

        With a ``pull_policy`` other than "never", a missing image (or, with "always",
        any name that is not a digest) is pulled from its registry first, for
        ``platform`` (default: the pull options' platform).
        """
        if self.pull_policy == "always" and not name.startswith("sha256:"):
            return self._pull(name, platform)
        image = self.find_image(name, platform)
        if image is not None and platform is not None and not _fits(image, platform):
            image = None  # a single-platform image for another platform: pull the right one
            if self.pull_policy == "never":
                raise BuildError(
                    f"image {name!r} in the local store is for another platform than {platform}",
                    hint="pull or load the image for that platform (a multi-platform index)",
                )
        if image is None and self.pull_policy == "missing" and not name.startswith("sha256:"):
            return self._pull(name, platform)
        if image is None:
            raise BuildError(
                f"image {name!r} not found in the local store ({self.root})",
                hint="load it with `pybuild load -i IMAGE.tar` (a docker-archive or OCI "
                "archive), build it with `pybuild build -t NAME`, or use `FROM scratch`",
            )
        return image

    def _pull(self, name: str, platform: Platform | None = None) -> StoredImage:
        """Pull once per name and platform per Storage (a build resolves each base once)."""
        options = self.pull_options
        if platform is not None:
            from dataclasses import replace

            from builder.registry.pull import RemoteOptions

            options = replace(options or RemoteOptions(), platform=platform)
        key = f"{name} {platform}" if platform is not None else name
        if key not in self._pulled:
            from builder.registry.pull import RemoteOptions, pull_image
            from cache.distribution.errors import RegistryUnreachable

            options = options or RemoteOptions()
            try:
                pulled = pull_image(name, self.blobs, self.index, options, self.pull_events)
            except RegistryUnreachable as exc:
                # --pull while offline: the image we already have still builds.
                local = self.find_image(name, platform)
                if local is None or (platform is not None and not _fits(local, platform)):
                    raise _pull_failed(name, exc, platform) from None
                if self.pull_events is not None:
                    self.pull_events(f"warning: {exc.message}; using the local {name}")
                pulled_image = local
            except CacheError as exc:
                raise _pull_failed(name, exc, platform) from None
            else:
                pulled_image = pulled.image
            self._pulled[key] = pulled_image
        return self._pulled[key]

    def _lookup(self, name: str) -> Digest | None:
        if name.startswith("sha256:") and len(name) == 71:
            digest = Digest.parse(name)
            if not self.blobs.has(digest):
                return None
            return digest if self._is_manifest(digest) else self._by_image_id(digest)
        if "@" in name:  # name@digest: the digest alone decides, as in docker
            try:
                digest = Digest.parse(name.rsplit("@", 1)[1])
            except InvalidDigest:
                return None
            return digest if self.blobs.has(digest) else None
        try:
            tagged = self.index.get_tag(normalize(name))
        except BuildError:
            tagged = None
        if tagged is not None:
            return tagged
        prefix = name.removeprefix("sha256:")
        if len(prefix) >= 6 and all(c in "0123456789abcdef" for c in prefix):
            matches = {d for _, d in self.index.tags() if d.hex.startswith(prefix)}
            matches |= {m for c, m in self._image_ids().items() if c.hex.startswith(prefix)}
            if len(matches) == 1:
                return matches.pop()
        return None

    def _is_manifest(self, digest: Digest) -> bool:
        try:
            read_images(self.blobs, digest)  # an image or an index of images
        except CacheError:
            return False
        return True

    def _by_image_id(self, config: Digest) -> Digest | None:
        """The manifest whose config is ``config``: a tagged image's, else the newest
        build's that made it (an untagged build's `-q` output names it this way)."""
        return self._image_ids().get(config) or self._built_with(config)

    def _image_ids(self) -> dict[Digest, Digest]:
        """Config digest -> manifest digest, over the tagged images."""
        ids: dict[Digest, Digest] = {}
        for _, manifest in self.index.tags():
            try:
                for image in read_images(self.blobs, manifest):
                    ids.setdefault(image.config_digest, manifest)
            except CacheError:
                continue  # a damaged image: `cache verify` reports it
        return ids

    def _built_with(self, config: Digest) -> Digest | None:
        for build in reversed(self.index.builds()):
            if build.image_id == str(config) and build.image:
                manifest = Digest.parse(build.image)
                if self.blobs.has(manifest):
                    return manifest
        return None


def _fits(image: StoredImage, platform: Platform) -> bool:
    """Whether an image's config says it is for ``platform`` (a config without an
    architecture, as some hand-made images have, fits any)."""
    config = image.config
    if not config.architecture:
        return True
    from cache.platforms import same_platform

    have = Platform(config.os or platform.os, config.architecture, config.variant)
    return same_platform(have, platform) or (
        config.architecture == platform.architecture and not config.variant
    )


def _pull_failed(name: str, exc: CacheError, platform: Platform | None = None) -> BuildError:
    local = (
        "if it is a local image, load it with `pybuild load -i IMAGE.tar` or build it "
        "with `pybuild build -t NAME`"
    )
    where = f"the local store for {platform}" if platform is not None else "the local store"
    return BuildError(
        f"image {name!r} is not in {where} and pulling it failed: {exc.message}",
        hint=f"{exc.hint}; {local}" if exc.hint else local,
    )
