"""Leases: what live containers use, which prune and repair keep without waiting for them.

A lease is ``<root>/leases/<name>.json``: the blobs (manifest, config, layers) and the
diff_ids of the image a container runs. The process that runs the container holds an
``flock`` on it for the container's whole life; a detached container's monitor inherits
the locked descriptor from the CLI that made it. A lease whose lock is free belongs to a
dead process: prune and repair delete it. A lease appears only whole and locked (it is
written under a temp name, locked, then renamed into place).

Take a lease while holding ``build_guard`` (cache/gc.py) from before the image's layers
are unpacked: a prune, which holds the guard exclusively, then never runs between the
unpack and the lease.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from cache.digest import Digest
from cache.errors import CacheError, InvalidDigest
from cache.images import StoredImage


@dataclass(frozen=True)
class Leased:
    """What one live lease keeps."""

    name: str
    blobs: frozenset[Digest]
    diff_ids: frozenset[Digest]


class Lease:
    """A held lease; ``release`` (or leaving the with-block) ends it."""

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self.fd: int | None = fd

    def __enter__(self) -> Lease:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def release(self) -> None:
        """Delete the lease and drop its lock. Idempotent."""
        if self.fd is not None:
            self.path.unlink(missing_ok=True)  # before the unlock: never seen unlocked
            os.close(self.fd)
            self.fd = None

    def hand_off(self) -> None:
        """Close this process's descriptor only: a child that inherited it holds the lock."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def _dir(root: Path) -> Path:
    return root / "leases"


def take_lease(root: Path, name: str, image: StoredImage) -> Lease:
    """Lease everything ``image`` needs, under ``name`` (e.g. a container id)."""
    if not name or "/" in name or name.startswith("."):
        raise CacheError(f"invalid lease name {name!r}")
    body = {
        "blobs": sorted(
            str(d)
            for d in (image.digest, image.config_digest, *(x.digest for x in image.manifest.layers))
        ),
        "diff_ids": sorted(str(d) for d in image.config.diff_ids),
    }
    directory = _dir(root)
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / f".{name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps(body).encode())
        os.fsync(fd)
        path = directory / f"{name}.json"
        os.rename(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        os.close(fd)
        raise
    return Lease(path, fd)


def adopt_lease(root: Path, name: str, fd: int) -> Lease:
    """The lease ``name`` whose locked descriptor ``fd`` this process inherited."""
    os.set_inheritable(fd, False)  # the container's processes must not hold it
    return Lease(_dir(root) / f"{name}.json", fd)


def live_leases(root: Path, *, clean: bool = False) -> list[Leased]:
    """Every lease a live process holds; with ``clean``, delete the dead ones."""
    directory = _dir(root)
    try:
        names = sorted(p.name for p in directory.iterdir())
    except FileNotFoundError:
        return []
    found = []
    for file_name in names:
        path = directory / file_name
        if file_name.startswith("."):
            if clean:
                _remove_if_dead(path)
            continue
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # released meanwhile
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                found.append(_read(fd, file_name))  # held: its container is alive
                continue
            if clean:
                path.unlink(missing_ok=True)
        finally:
            os.close(fd)
    return found


def _remove_if_dead(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        path.unlink(missing_ok=True)
    except BlockingIOError:
        pass  # being made right now
    finally:
        os.close(fd)


def _read(fd: int, file_name: str) -> Leased:
    name = file_name.removesuffix(".json")
    try:
        with os.fdopen(os.dup(fd), "rb") as f:
            body = json.loads(f.read())
        return Leased(
            name,
            frozenset(Digest.parse(d) for d in body["blobs"]),
            frozenset(Digest.parse(d) for d in body["diff_ids"]),
        )
    except (OSError, ValueError, KeyError, TypeError, InvalidDigest) as exc:
        raise CacheError(
            f"lease {file_name} of a running container is unreadable: {exc}",
            hint="stop the container (`pybuild ps` lists them), then retry",
        ) from None
