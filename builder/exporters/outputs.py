"""Build outputs (``-o``): where the built image goes besides the local store.

The image is always committed to the local store (its layers are there already, so this
costs one config and one manifest blob); ``-o`` adds exports: ``type=oci,dest=FILE``,
``type=docker,dest=FILE``, ``type=local,dest=DIR`` (the root filesystem) and
``type=tar,dest=FILE`` (the root filesystem as one tar, as BuildKit's tar exporter).
``dest=-`` writes a file output to stdout; ``-o -`` is ``type=tar,dest=-``, as in buildx.
``type=registry[,name=REF][,compression=...][,force-compression=true]`` pushes the image
(to ``name``, else to every ``-t``; gzip layers unless told otherwise, see
``builder.exporters.push``); the push itself is the CLI's (``builder.cli.registry_commands``), which
holds the credentials.

Archives take ``compression=gzip|zstd|uncompressed``, default gzip as BuildKit's oci and
docker exporters: older docker and umoci 0.4.7 (Debian 12) cannot read zstd layers.
Layers are converted once per store (``cache.convert``) and those already in the
requested compression are copied as they are.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

from builder.errors import UsageError
from builder.images.names import normalize
from builder.images.store import Storage
from cache.digest import Digest
from cache.images import is_index
from cache.layers import Compression

OUTPUT_TYPES = ("oci", "docker", "local", "tar", "registry")
# What users type (BuildKit's names) -> how layers are compressed.
COMPRESSIONS = {
    "gzip": Compression.GZIP,
    "zstd": Compression.ZSTD,
    "uncompressed": Compression.NONE,
}
DEFAULT_EXPORT_COMPRESSION = Compression.GZIP
STDOUT = "-"


@dataclass(frozen=True)
class Output:
    """One ``-o``. ``compression`` is for archives and pushes only (None for type=local
    and type=tar; for type=registry None means the push default, gzip). ``force``:
    BuildKit's force-compression, for type=registry."""

    type: str
    dest: Path
    name: str | None = None
    compression: Compression | None = None
    force: bool = False

    @property
    def to_stdout(self) -> bool:
        return str(self.dest) == STDOUT


@dataclass(frozen=True)
class PushCompression:
    """How a push sends layers (``builder.exporters.push``): as ``target``; under zstd, gzip layers
    stay gzip unless ``force``. Here, not in push, so parsing never imports httpx."""

    target: Compression = Compression.GZIP
    force: bool = False


def parse_compression(value: str, where: str) -> Compression:
    """``gzip``, ``zstd`` or ``uncompressed``; UsageError naming ``where`` otherwise."""
    if value not in COMPRESSIONS:
        raise UsageError(
            f"{where}: unknown compression {value!r}",
            hint="use " + ", ".join(COMPRESSIONS),
        )
    return COMPRESSIONS[value]


def parse_output(spec: str) -> Output:
    """``type=oci,dest=out.tar[,name=app:1][,compression=zstd]``; a bare path means
    ``type=local,dest=PATH``, and ``-`` means ``type=tar,dest=-`` (stdout). Raises
    UsageError naming the spec."""
    if spec == STDOUT:
        return Output("tar", Path(STDOUT))
    if "=" not in spec:
        return Output("local", Path(spec))
    fields = _spec_fields(spec)
    kind = fields.pop("type", "local")
    dest = fields.pop("dest", None)
    name = fields.pop("name", None)
    compression = fields.pop("compression", None)
    if kind not in OUTPUT_TYPES:
        raise UsageError(
            f"-o {spec}: unknown output type {kind!r}",
            hint="use type=oci, type=docker, type=local, type=tar or type=registry",
        )
    if kind == "registry":
        return _registry_output(spec, dest, name, compression, fields)
    if not dest:
        raise UsageError(f"-o {spec}: dest= is required")
    if fields:
        raise UsageError(f"-o {spec}: unknown option(s) {', '.join(sorted(fields))}")
    if kind in ("local", "tar"):
        return _filesystem_output(spec, kind, dest, name, compression)
    chosen = (
        DEFAULT_EXPORT_COMPRESSION
        if compression is None
        else parse_compression(compression, f"-o {spec}")
    )
    return Output(kind, Path(dest), name, chosen)


def _spec_fields(spec: str) -> dict[str, str]:
    """The ``key=value`` pairs of an ``-o`` spec, blanks around each trimmed; a later
    key wins."""
    fields: dict[str, str] = {}
    for part in spec.split(","):
        key, sep, value = part.partition("=")
        if not sep:
            raise UsageError(f"-o {spec}: expected key=value pairs, got {part!r}")
        fields[key.strip()] = value.strip()
    return fields


def _filesystem_output(
    spec: str, kind: str, dest: str, name: str | None, compression: str | None
) -> Output:
    """``type=local`` (a directory) or ``type=tar`` (one tar): the root filesystem, never
    compressed; only the tar may go to stdout."""
    if compression is not None:
        raise UsageError(
            f"-o {spec}: compression= applies to archives only",
            hint="use it with type=oci or type=docker",
        )
    if kind == "local" and dest == STDOUT:
        raise UsageError(
            f"-o {spec}: a directory cannot go to stdout",
            hint="use type=tar,dest=- (or -o -) for the root filesystem as a tar",
        )
    return Output(kind, Path(dest), name)


def _registry_output(
    spec: str, dest: str | None, name: str | None, compression: str | None, rest: dict[str, str]
) -> Output:
    """``type=registry[,name=REF][,push=true][,compression=C][,force-compression=B]``:
    BuildKit's image exporter, pushing."""
    if rest.pop("push", "true").lower() not in ("true", "1"):
        raise UsageError(f"-o {spec}: type=registry always pushes", hint="drop push=")
    force = parse_bool(rest.pop("force-compression", "false"), f"-o {spec}: force-compression")
    if dest is not None or rest:
        extra = sorted([*rest, *(["dest"] if dest is not None else [])])
        raise UsageError(
            f"-o {spec}: type=registry takes no {', '.join(extra)}",
            hint="name the target with name=REF (or -t); choose layers with compression=",
        )
    chosen = None if compression is None else parse_compression(compression, f"-o {spec}")
    return Output("registry", Path(), name, chosen, force)


def parse_bool(value: str, where: str) -> bool:
    """BuildKit's booleans: true/false/1/0; UsageError naming ``where`` otherwise."""
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise UsageError(f"{where}: expected true or false, got {value!r}")


def write_output(
    storage: Storage,
    output: Output,
    image: Digest,
    tags: Sequence[str],
    stdout: BinaryIO | None = None,
) -> None:
    """Write one archive, tar or directory output; type=registry is left to the CLI's push.

    ``dest=-`` goes to ``stdout`` (the file is made in the store's tmp dir, then copied,
    so a failed export writes nothing there)."""
    from builder.images.save import write_docker_archive, write_oci_archive, write_rootfs

    if output.type == "registry":
        return
    if output.type in ("local", "tar") and is_index(storage.blobs, image):
        raise UsageError(
            f"-o type={output.type}: a multi-platform build has one root filesystem per platform",
            hint="write them all with type=oci, or build one platform (--platform P) for "
            f"type={output.type}",
        )
    if output.type == "local":
        write_rootfs(storage.blobs, image, output.dest)
        return
    if output.to_stdout:
        if stdout is None:
            raise UsageError(f"-o type={output.type},dest=-: no stdout to write to")
        tmp = storage.blobs.tmp_dir / f"output-{uuid.uuid4().hex}.tar"
        try:
            write_output(storage, replace(output, dest=tmp), image, tags)
            with open(tmp, "rb") as f:
                shutil.copyfileobj(f, stdout)
            stdout.flush()
        finally:
            tmp.unlink(missing_ok=True)
        return
    names = [normalize(output.name)] if output.name else [normalize(t) for t in tags]
    refs = [(n, image) for n in names] or [("", image)]
    if output.type == "oci":
        write_oci_archive(storage.blobs, refs, output.dest, compression=output.compression)
    elif output.type == "docker":
        write_docker_archive(storage.blobs, refs, output.dest, compression=output.compression)
    else:
        from builder.exporters.tar import write_rootfs_tar

        write_rootfs_tar(storage.blobs, image, output.dest)
