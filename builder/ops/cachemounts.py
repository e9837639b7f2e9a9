"""Persistent directories for ``RUN --mount=type=cache``.

Each cache id has a home ``<store>/cachemounts/<sha256 of id and seed>/`` holding the
id (for people), numbered instances ``0``, ``1``... and one lock file per instance.
They outlive builds, never enter a layer or a step key, and go with
``pybuild cache prune --all``. A RUN that ignores the cache (``--no-cache``, or
``--no-cache-filter`` naming its stage) starts its caches empty: before the build,
``prune_ids`` drops every cache of those ids, as BuildKit's solver does for the cache
mounts of an op with IgnoreCache (llbsolver/vertex.go detectPrunedCacheID, #5305).

Sharing, as BuildKit's: ``shared`` users hold a shared lock on instance 0 and use it at
once; ``locked`` users take it exclusively, one RUN at a time; ``private`` users take
the first instance nobody holds, so concurrent RUNs each get their own directory.
The locks are ``flock``s on separate open files, so they also order threads of one build.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import BuildError
from builder.plan.specs import SHARING_MODES, MountSpec
from cache.digest import sha256_bytes
from fstree.tree import remove_tree

CACHE_DIR_NAME = "cachemounts"


@dataclass(frozen=True)
class CacheRequest:
    """One cache mount to provide: ``seed`` (a directory) fills a new cache once."""

    id: str
    sharing: str = "shared"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    seed: Path | None = None
    seed_key: str = ""  # what the seed is (a stage key and path): part of the cache's name


def cache_home(store_root: Path, request: CacheRequest) -> Path:
    """The directory holding every instance of ``request``'s cache."""
    name = sha256_bytes(f"{request.id}\0{request.seed_key}".encode()).hex[:32]
    return store_root / CACHE_DIR_NAME / name


@contextmanager
def cache_dir(store_root: Path, request: CacheRequest) -> Iterator[Path]:
    """The cache directory to mount, locked as ``request.sharing`` says until exit."""
    if request.sharing not in SHARING_MODES:
        raise BuildError(f"cache sharing {request.sharing!r} is not one of {SHARING_MODES}")
    home = cache_home(store_root, request)
    home.mkdir(parents=True, exist_ok=True)
    id_file = home / "id"
    if not id_file.exists():
        id_file.write_text(request.id + "\n")
    with _instance_lock(home, request.sharing) as number:
        data = home / str(number)
        if not data.is_dir():
            _create(data, request)
        yield data


def cache_mount_ids(mounts: tuple[MountSpec, ...]) -> dict[str, bool]:
    """The cache ids ``mounts`` use -> whether one has a parent (``from=``, or its own
    mode/uid/gid), whose caches BuildKit prunes as well on ``--no-cache``."""
    ids: dict[str, bool] = {}
    for m in mounts:
        if m.kind == "cache":
            ids[m.id] = ids.get(m.id, False) or m.from_stage is not None or m.owner_set
    return ids


def prune_ids(store_root: Path, ids: Mapping[str, bool]) -> None:
    """Drop the caches of ``ids`` (id -> also those seeded from a stage or image).

    Each home is renamed aside first, so a build starting meanwhile makes a new one
    instead of finding a half-removed tree; one in use keeps its open mounts.
    """
    top = store_root / CACHE_DIR_NAME
    if not ids or not top.is_dir():
        return
    for home in sorted(top.iterdir()):
        try:
            cache_id = (home / "id").read_text().removesuffix("\n")
        except OSError:
            continue  # not a cache home (or one being removed)
        if cache_id not in ids:
            continue
        plain = home == cache_home(store_root, CacheRequest(cache_id))
        if not plain and not ids[cache_id]:
            continue
        doomed = top / f".pruned-{home.name}-{os.getpid()}-{threading.get_ident()}"
        try:
            os.rename(home, doomed)
        except FileNotFoundError:
            continue  # pruned by a concurrent build
        remove_tree(doomed, ignore_errors=True)


@contextmanager
def _instance_lock(home: Path, sharing: str) -> Iterator[int]:
    number = 0
    while True:
        fd = os.open(home / f"{number}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if sharing == "private":
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            else:
                fcntl.flock(fd, fcntl.LOCK_SH if sharing == "shared" else fcntl.LOCK_EX)
        except BlockingIOError:
            os.close(fd)
            number += 1  # private: that instance is in use; try the next one
            continue
        except BaseException:
            os.close(fd)
            raise
        try:
            yield number
        finally:
            os.close(fd)  # releases the lock
        return


def _create(data: Path, request: CacheRequest) -> None:
    """Make instance ``data`` atomically: a temp dir, filled, then renamed into place."""
    tmp = data.with_name(f".{data.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    remove_tree(tmp, ignore_errors=True)
    try:
        if request.seed is not None:
            _seed(request.seed, tmp)
        else:
            tmp.mkdir()
            os.chown(tmp, request.uid, request.gid)
            os.chmod(tmp, request.mode)
        try:
            os.rename(tmp, data)
        except OSError:
            if not data.is_dir():  # else another user of a shared cache made it first
                raise
    finally:
        remove_tree(tmp, ignore_errors=True)


def _seed(source: Path, tmp: Path) -> None:
    if not source.is_dir():
        raise BuildError(
            "RUN --mount=type=cache: the from/source path is not a directory",
            hint="point source= at a directory of the from= stage or image",
        )
    # cp -a keeps owners, modes, links and times, which shutil.copytree does not.
    done = subprocess.run(
        ["cp", "-a", "--", f"{source}/.", str(tmp)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BuildError(f"cannot seed the cache mount from {source}: {done.stderr.strip()}")
