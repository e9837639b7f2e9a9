"""OCI image types (descriptor, manifest, index, config) and their canonical JSON.

Field names and media types follow the OCI image spec v1.1 (descriptor.md, manifest.md,
image-index.md, config.md). The container config also carries docker's extensions
(Healthcheck, OnBuild, Shell) as BuildKit writes them. Every document is serialised in
one place, ``canonical_json``, so the same value always gives the same bytes and digest.
"""

from __future__ import annotations

import json
import platform as _platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cache.digest import Digest
from cache.errors import InvalidDigest, InvalidImage

MEDIA_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
MEDIA_OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
MEDIA_DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
MEDIA_DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
MEDIA_DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
MEDIA_DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"

LAYER_MEDIA_TYPES = frozenset(
    {
        MEDIA_OCI_LAYER,
        MEDIA_OCI_LAYER_GZIP,
        MEDIA_OCI_LAYER_ZSTD,
        MEDIA_DOCKER_LAYER,
        MEDIA_DOCKER_LAYER_GZIP,
    }
)
ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name"
# containerd's annotation for the full image name; docker and BuildKit write it in archives.
ANNOTATION_IMAGE_NAME = "io.containerd.image.name"

JSON = Any
Pairs = tuple[tuple[str, str], ...]


def canonical_json(value: JSON) -> bytes:
    """The one serialisation of OCI documents: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def load_json(data: bytes, what: str) -> dict[str, JSON]:
    """Parse a JSON object or raise InvalidImage naming what it was."""
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidImage(f"{what} is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise InvalidImage(f"{what} is not a JSON object")
    return value


def _pairs(value: JSON, what: str) -> Pairs:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise InvalidImage(f"{what} must be an object")
    return tuple(sorted((str(k), str(v)) for k, v in value.items()))


def _strs(value: JSON, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidImage(f"{what} must be a list of strings")
    return tuple(value)


def _opt_strs(value: JSON, what: str) -> tuple[str, ...] | None:
    return None if value is None else _strs(value, what)


def _opt_list(value: tuple[str, ...] | None) -> list[str] | None:
    return None if value is None else list(value)


@dataclass(frozen=True)
class Platform:
    """An image's platform (image-index.md); ``cache.platforms`` parses docker's strings.
    Without arguments: this machine's os and architecture (``host_platform``)."""

    os: str = field(default_factory=lambda: host_platform().os)
    architecture: str = field(default_factory=lambda: host_platform().architecture)
    variant: str = ""

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, JSON]) -> Platform:
        return cls(str(obj.get("os", "")), str(obj.get("architecture", "")), obj.get("variant", ""))

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


@dataclass(frozen=True)
class Descriptor:
    """A content descriptor: what a blob is, its digest and size (descriptor.md)."""

    media_type: str
    digest: Digest
    size: int
    annotations: Pairs = ()
    platform: Platform | None = None

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "mediaType": self.media_type,
            "digest": str(self.digest),
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.platform is not None:
            out["platform"] = self.platform.to_json()
        return out

    @classmethod
    def from_json(cls, obj: JSON) -> Descriptor:
        if not isinstance(obj, dict):
            raise InvalidImage("descriptor must be an object")
        try:
            digest = Digest.parse(str(obj["digest"]))
            size = int(obj["size"])
            media_type = str(obj.get("mediaType", ""))
        except (KeyError, TypeError, ValueError, InvalidDigest) as exc:
            raise InvalidImage(f"bad descriptor {obj!r}: {exc}") from None
        plat = obj.get("platform")
        return cls(
            media_type=media_type,
            digest=digest,
            size=size,
            annotations=_pairs(obj.get("annotations"), "descriptor annotations"),
            platform=Platform.from_json(plat) if isinstance(plat, dict) else None,
        )


@dataclass(frozen=True)
class Manifest:
    """An image manifest (manifest.md): one config and its ordered layers, base first."""

    config: Descriptor
    layers: tuple[Descriptor, ...]
    annotations: Pairs = ()
    media_type: str = MEDIA_OCI_MANIFEST

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "schemaVersion": 2,
            "mediaType": self.media_type,
            "config": self.config.to_json(),
            "layers": [d.to_json() for d in self.layers],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Manifest:
        obj = load_json(data, "image manifest")
        media_type = str(obj.get("mediaType", MEDIA_OCI_MANIFEST))
        if media_type not in (MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST):
            raise InvalidImage(f"not an image manifest: media type {media_type!r}")
        if obj.get("schemaVersion") != 2:
            raise InvalidImage("image manifest: schemaVersion must be 2")
        layers = obj.get("layers") or []
        if not isinstance(layers, list):
            raise InvalidImage("image manifest: layers must be a list")
        return cls(
            config=Descriptor.from_json(obj.get("config")),
            layers=tuple(Descriptor.from_json(d) for d in layers),
            annotations=_pairs(obj.get("annotations"), "manifest annotations"),
            media_type=media_type,
        )


@dataclass(frozen=True)
class Index:
    """An image index (image-index.md): manifests, usually one per platform or tag."""

    manifests: tuple[Descriptor, ...]
    annotations: Pairs = ()

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_INDEX,
            "manifests": [d.to_json() for d in self.manifests],
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> Index:
        obj = load_json(data, "image index")
        if obj.get("schemaVersion") != 2:
            raise InvalidImage("image index: schemaVersion must be 2")
        manifests = obj.get("manifests")
        if not isinstance(manifests, list):
            raise InvalidImage("image index: manifests must be a list")
        return cls(
            manifests=tuple(Descriptor.from_json(d) for d in manifests),
            annotations=_pairs(obj.get("annotations"), "index annotations"),
        )


@dataclass(frozen=True)
class HealthConfig:
    """docker's Healthcheck: test is () to inherit, ("NONE",) to disable."""

    test: tuple[str, ...]
    interval_ns: int = 0
    timeout_ns: int = 0
    start_period_ns: int = 0
    start_interval_ns: int = 0
    retries: int = 0

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {"Test": list(self.test)}
        for key, value in (
            ("Interval", self.interval_ns),
            ("Timeout", self.timeout_ns),
            ("StartPeriod", self.start_period_ns),
            ("StartInterval", self.start_interval_ns),
            ("Retries", self.retries),
        ):
            if value:
                out[key] = value
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, JSON]) -> HealthConfig:
        return cls(
            test=_strs(obj.get("Test"), "Healthcheck.Test"),
            interval_ns=int(obj.get("Interval") or 0),
            timeout_ns=int(obj.get("Timeout") or 0),
            start_period_ns=int(obj.get("StartPeriod") or 0),
            start_interval_ns=int(obj.get("StartInterval") or 0),
            retries=int(obj.get("Retries") or 0),
        )


@dataclass(frozen=True)
class ContainerConfig:
    """The ``config`` object of an image config: how to run the image."""

    user: str = ""
    exposed_ports: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    volumes: tuple[str, ...] = ()
    working_dir: str = ""
    labels: Pairs = ()
    stop_signal: str = ""
    shell: tuple[str, ...] | None = None
    healthcheck: HealthConfig | None = None
    on_build: tuple[str, ...] = ()
    args_escaped: bool = False

    def to_json(self) -> dict[str, JSON]:
        """Docker's form: empty fields are left out, but an Entrypoint, Cmd or Shell set
        to an empty list is kept (only None, unset, is left out)."""
        fields: tuple[tuple[str, JSON | None], ...] = (
            ("User", self.user or None),
            ("ExposedPorts", {p: {} for p in self.exposed_ports} or None),
            ("Env", list(self.env) or None),
            ("Entrypoint", _opt_list(self.entrypoint)),
            ("Cmd", _opt_list(self.cmd)),
            ("Volumes", {v: {} for v in self.volumes} or None),
            ("WorkingDir", self.working_dir or None),
            ("Labels", dict(self.labels) or None),
            ("StopSignal", self.stop_signal or None),
            ("Shell", _opt_list(self.shell)),
            ("Healthcheck", None if self.healthcheck is None else self.healthcheck.to_json()),
            ("OnBuild", list(self.on_build) or None),
            ("ArgsEscaped", self.args_escaped or None),
        )
        return {key: value for key, value in fields if value is not None}

    @classmethod
    def from_json(cls, obj: Mapping[str, JSON] | None) -> ContainerConfig:
        if not obj:
            return cls()
        health = obj.get("Healthcheck")
        return cls(
            user=str(obj.get("User") or ""),
            exposed_ports=tuple(sorted(obj.get("ExposedPorts") or {})),
            env=_strs(obj.get("Env"), "Env"),
            entrypoint=_opt_strs(obj.get("Entrypoint"), "Entrypoint"),
            cmd=_opt_strs(obj.get("Cmd"), "Cmd"),
            volumes=tuple(sorted(obj.get("Volumes") or {})),
            working_dir=str(obj.get("WorkingDir") or ""),
            labels=_pairs(obj.get("Labels"), "Labels"),
            stop_signal=str(obj.get("StopSignal") or ""),
            shell=_opt_strs(obj.get("Shell"), "Shell"),
            healthcheck=HealthConfig.from_json(health) if isinstance(health, dict) else None,
            on_build=_strs(obj.get("OnBuild"), "OnBuild"),
            args_escaped=bool(obj.get("ArgsEscaped", False)),
        )


@dataclass(frozen=True)
class History:
    """One history entry: what made a layer, or a metadata-only step (empty_layer)."""

    created: str = ""
    created_by: str = ""
    comment: str = ""
    empty_layer: bool = False

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {}
        if self.created:
            out["created"] = self.created
        if self.created_by:
            out["created_by"] = self.created_by
        if self.comment:
            out["comment"] = self.comment
        if self.empty_layer:
            out["empty_layer"] = True
        return out

    @classmethod
    def from_json(cls, obj: Mapping[str, JSON]) -> History:
        return cls(
            created=str(obj.get("created") or ""),
            created_by=str(obj.get("created_by") or ""),
            comment=str(obj.get("comment") or ""),
            empty_layer=bool(obj.get("empty_layer", False)),
        )


@dataclass(frozen=True)
class ImageConfig:
    """An image config (config.md): platform, run config, layer diff_ids and history."""

    architecture: str = field(default_factory=lambda: host_platform().architecture)
    os: str = field(default_factory=lambda: host_platform().os)
    variant: str = ""
    created: str = ""
    author: str = ""
    config: ContainerConfig = field(default_factory=ContainerConfig)
    diff_ids: tuple[Digest, ...] = ()
    history: tuple[History, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        out: dict[str, JSON] = {
            "architecture": self.architecture,
            "os": self.os,
            "config": self.config.to_json(),
            "rootfs": {"type": "layers", "diff_ids": [str(d) for d in self.diff_ids]},
        }
        if self.variant:
            out["variant"] = self.variant
        if self.created:
            out["created"] = self.created
        if self.author:
            out["author"] = self.author
        if self.history:
            out["history"] = [h.to_json() for h in self.history]
        return out

    def to_bytes(self) -> bytes:
        return canonical_json(self.to_json())

    @classmethod
    def from_bytes(cls, data: bytes) -> ImageConfig:
        obj = load_json(data, "image config")
        rootfs = obj.get("rootfs") or {}
        if not isinstance(rootfs, dict) or rootfs.get("type") != "layers":
            raise InvalidImage("image config: rootfs.type must be 'layers'")
        try:
            diff_ids = tuple(Digest.parse(str(d)) for d in rootfs.get("diff_ids") or [])
        except InvalidDigest as exc:
            raise InvalidImage(f"image config: {exc.message}") from None
        history = obj.get("history") or []
        return cls(
            architecture=str(obj.get("architecture", "")),
            os=str(obj.get("os", "")),
            variant=str(obj.get("variant") or ""),
            created=str(obj.get("created") or ""),
            author=str(obj.get("author") or ""),
            config=ContainerConfig.from_json(obj.get("config")),
            diff_ids=diff_ids,
            history=tuple(History.from_json(h) for h in history if isinstance(h, dict)),
        )


# platform.machine() -> OCI architecture and variant (image-index.md platform values),
# in containerd's normal form (arm64's default variant v8 is left out).
_ARCHES = {
    "x86_64": ("amd64", ""),
    "aarch64": ("arm64", ""),
    "arm64": ("arm64", ""),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", ""),
    "i386": ("386", ""),
}
# Variants an index may spell out that mean the architecture's default.
_DEFAULT_VARIANTS = {"arm64": ("", "v8"), "amd64": ("", "v1"), "arm": ("", "v7")}


def host_platform() -> Platform:
    """This machine's platform in OCI terms (``linux/amd64`` on x86-64)."""
    machine = _platform.machine()
    arch, variant = _ARCHES.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def _same_variant(arch: str, have: str, want: str) -> bool:
    defaults = _DEFAULT_VARIANTS.get(arch, ("",))
    return have == want or (have in defaults and want in defaults)


def is_attestation(desc: Descriptor) -> bool:
    """BuildKit's provenance/SBOM manifests in an index: unknown/unknown, this annotation."""
    unknown = desc.platform is not None and desc.platform.os == "unknown"
    return unknown or "vnd.docker.reference.type" in dict(desc.annotations)


def select_platform(candidates: Sequence[Descriptor], want: Platform) -> Descriptor | None:
    """The index entry for ``want``'s os/architecture, preferring its variant; a lone
    unlabelled entry will do. None when nothing fits."""
    same = [
        d
        for d in candidates
        if d.platform and (d.platform.os, d.platform.architecture) == (want.os, want.architecture)
    ]
    exact = [
        d
        for d in same
        if d.platform and _same_variant(want.architecture, d.platform.variant, want.variant)
    ]
    if exact or same:
        return (exact or same)[0]
    if len(candidates) == 1 and candidates[0].platform is None:
        return candidates[0]
    return None
