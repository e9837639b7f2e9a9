"""Small image archives built by hand (plain tarfile/json/hashlib) for the loader tests.

Nothing here uses pybuild code, so the tests check pybuild against the formats, not
against itself. Also ``make_base``: fixtures/make_base.py, imported by path.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import json
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import zstandard

REPO = Path(__file__).resolve().parents[1]
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
LAYER_TYPES = {
    "none": OCI_LAYER,
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
}

# (name, content): bytes = a file, None = a directory, str = a symlink to that target.
Member = tuple[str, bytes | str | None]


def make_base_module() -> ModuleType:
    """fixtures/make_base.py as a module (it is a script, not a package)."""
    spec = importlib.util.spec_from_file_location("make_base", REPO / "fixtures" / "make_base.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(members: Sequence[Member]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, content in members:
            info = tarfile.TarInfo(name)
            if isinstance(content, bytes):
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            elif isinstance(content, str):
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
    return buf.getvalue()


def layer(files: dict[str, bytes]) -> bytes:
    """An uncompressed layer tar holding these files (parents implied)."""
    return tar_of(sorted(files.items()))


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data, mtime=0)
    if how == "zstd":
        return zstandard.ZstdCompressor().compress(data)
    return data


def config(layers: Sequence[bytes], arch: str = "amd64", cmd: str = "sh") -> bytes:
    doc = {
        "architecture": arch,
        "os": "linux",
        "config": {"Env": ["PATH=/bin"], "Cmd": [cmd]},
        "rootfs": {"type": "layers", "diff_ids": [sha(data) for data in layers]},
    }
    return json.dumps(doc, sort_keys=True).encode()


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": sha(data), "size": len(data), **extra}


@dataclass
class Layout:
    """An OCI image layout being assembled: blobs by hex, and index.json entries."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: list[dict[str, Any]] = field(default_factory=list)
    extra: list[Member] = field(default_factory=list)

    def add(self, data: bytes) -> str:
        self.blobs[sha(data)[7:]] = data
        return sha(data)

    def image(self, layers: Sequence[bytes], how: str = "none", arch: str = "amd64") -> bytes:
        """Add an image's blobs; returns its manifest bytes (not yet in index.json)."""
        cfg = config(layers, arch)
        self.add(cfg)
        blobs = [compress(data, how) for data in layers]
        for blob in blobs:
            self.add(blob)
        manifest = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, cfg),
            "layers": [descriptor(LAYER_TYPES[how], blob) for blob in blobs],
        }
        data = json.dumps(manifest, sort_keys=True).encode()
        self.add(data)
        return data

    def tag(
        self,
        manifest: bytes,
        annotations: dict[str, str] | None = None,
        media_type: str = OCI_MANIFEST,
    ) -> None:
        """List a manifest (or index) in index.json with these annotations."""
        extra = {"annotations": annotations} if annotations else {}
        self.manifests.append(descriptor(media_type, manifest, **extra))

    def members(self, *, with_dirs: bool = True) -> list[Member]:
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": self.manifests}
        out: list[Member] = [("blobs", None), ("blobs/sha256", None)] if with_dirs else []
        out += [(f"blobs/sha256/{h}", data) for h, data in sorted(self.blobs.items())]
        out += [("index.json", json.dumps(index).encode())]
        out += [("oci-layout", b'{"imageLayoutVersion": "1.0.0"}')]
        return out + self.extra

    def tar(self) -> bytes:
        return tar_of(self.members())


REF = "org.opencontainers.image.ref.name"
CONTAINERD = "io.containerd.image.name"


def docker_classic(
    images: Sequence[tuple[Sequence[str], Sequence[bytes]]], *, how: str = "none"
) -> bytes:
    """``docker save`` before 25: ``<id>/layer.tar``, ``<hex>.json``, manifest.json.

    A layer that two images share is stored once; the later image's ``layer.tar`` is a
    symlink to the first copy, as docker writes it.
    """
    members: list[Member] = []
    entries = []
    seen: dict[str, str] = {}
    for n, (tags, layers) in enumerate(images):
        cfg = config(layers, cmd=f"image{n}")
        paths = []
        for i, data in enumerate(layers):
            layer_id = hashlib.sha256(f"{n}/{i}".encode()).hexdigest()
            members.append((layer_id, None))
            if sha(data) in seen:
                members.append((f"{layer_id}/layer.tar", f"../{seen[sha(data)]}/layer.tar"))
            else:
                members.append((f"{layer_id}/layer.tar", compress(data, how)))
                seen[sha(data)] = layer_id
            members.append((f"{layer_id}/VERSION", b"1.0"))
            paths.append(f"{layer_id}/layer.tar")
        members.append((f"{sha(cfg)[7:]}.json", cfg))
        entries.append({"Config": f"{sha(cfg)[7:]}.json", "RepoTags": list(tags), "Layers": paths})
    members.append(("manifest.json", json.dumps(entries).encode()))
    return tar_of(members)


def docker25(layout: Layout, entries: list[dict[str, Any]]) -> bytes:
    """docker 25+ ``docker save``: an OCI layout plus manifest.json naming blob paths."""
    layout.extra.append(("manifest.json", json.dumps(entries).encode()))
    return layout.tar()
