"""``/images/...``: list, inspect, history, tag and remove read and write the store's
index here; save, load, pull and push are in ``transfers``.

An image's ``Id`` is its config digest (docker's image ID); ``RepoTags`` are the store's
names for its manifest.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from builder.engine.errors import ApiError, bad_request, not_found
from builder.engine.state import Engine
from builder.engine.wire import Reply, Request
from builder.errors import BuildError
from builder.images.names import normalize
from builder.images.store import Storage
from cache.digest import Digest
from cache.errors import CacheError
from cache.images import StoredImage


@contextmanager
def opened(engine: Engine) -> Iterator[Storage]:
    storage = Storage.open(engine.root)
    try:
        yield storage
    finally:
        storage.close()


def find(storage: Storage, name: str) -> StoredImage:
    """The image ``name`` names (a tag, an ID or its prefix, a manifest digest); 404."""
    try:
        image = storage.find_image(name)
    except (BuildError, CacheError, ValueError):
        image = None
    if image is None:
        image = _by_id_prefix(storage, name)
    if image is None:
        raise not_found(f"No such image: {name}")
    return image


def _by_id_prefix(storage: Storage, name: str) -> StoredImage | None:
    prefix = name.removeprefix("sha256:")
    if len(prefix) < 4 or any(c not in "0123456789abcdef" for c in prefix):
        return None
    for _tag, digest in storage.index.tags():
        image = storage.find_image(str(digest))
        if image is not None and image.config_digest.hex.startswith(prefix):
            return image
    return None


def tags_of(storage: Storage, image: StoredImage) -> list[str]:
    return sorted(n for n, d in storage.index.tags() if d == image.digest)


def _seconds(created: str) -> int:
    if not created:
        return 0
    try:
        return int(datetime.fromisoformat(created.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0


def _size(image: StoredImage) -> int:
    return sum(layer.size for layer in image.manifest.layers)


def summary(storage: Storage, image: StoredImage, tags: list[str]) -> dict[str, Any]:
    """One entry of ``GET /images/json``."""
    labels = image.config.config.to_json().get("Labels") or {}
    return {
        "Id": str(image.config_digest),
        "ParentId": "",
        "RepoTags": tags,
        "RepoDigests": [],
        "Created": _seconds(image.config.created),
        "Size": _size(image),
        "VirtualSize": _size(image),
        "SharedSize": -1,
        "Labels": labels,
        "Containers": -1,
    }


def list_images(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    filters = request.json_arg("filters") or {}
    references = _filter_values(filters, "reference") + request.args("filter")
    labels = _filter_values(filters, "label")
    by_digest: dict[Digest, list[str]] = {}
    with opened(engine) as storage:
        for name, digest in storage.index.tags():
            by_digest.setdefault(digest, []).append(name)
        out = []
        for digest, names in by_digest.items():
            image = storage.find_image(str(digest))
            if image is None:
                continue
            if references and not [n for n in names if _matches(n, references)]:
                continue
            entry = summary(storage, image, sorted(names))
            if all(_has_label(entry["Labels"], want) for want in labels):
                out.append(entry)
    reply.json(200, sorted(out, key=lambda e: -e["Created"]))


def _filter_values(filters: Any, key: str) -> list[str]:
    value = filters.get(key) if isinstance(filters, dict) else None
    if isinstance(value, dict):  # the old {"value": true} form
        return [k for k, v in value.items() if v]
    return [str(v) for v in value] if isinstance(value, list) else []


def _matches(name: str, patterns: list[str]) -> bool:
    repo = name.rpartition(":")[0] if ":" in name.rsplit("/", 1)[-1] else name
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(repo, p) for p in patterns)


def _has_label(labels: dict[str, str], want: str) -> bool:
    key, sep, value = want.partition("=")
    return key in labels and (not sep or labels[key] == value)


def inspect(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    with opened(engine) as storage:
        image = find(storage, params["name"])
        tags = tags_of(storage, image)
    config = image.config
    reply.json(
        200,
        {
            "Id": str(image.config_digest),
            "RepoTags": tags,
            "RepoDigests": [],
            "Parent": "",
            "Comment": "",
            "Created": config.created or "1970-01-01T00:00:00Z",
            "Container": "",
            "DockerVersion": "",
            "Author": config.author,
            "Config": _run_config(config.config.to_json()),
            "Architecture": config.architecture,
            "Variant": config.variant or None,
            "Os": config.os,
            "Size": _size(image),
            "VirtualSize": _size(image),
            "GraphDriver": {"Name": "overlay", "Data": None},
            "RootFS": {"Type": "layers", "Layers": [str(d) for d in config.diff_ids]},
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
            "Descriptor": {
                "mediaType": image.manifest.media_type,
                "digest": str(image.digest),
            },
        },
    )


def _run_config(doc: dict[str, Any]) -> dict[str, Any]:
    """The image's run config with the keys docker always has (clients index them)."""
    base: dict[str, Any] = {
        "Hostname": "",
        "User": "",
        "Env": None,
        "Cmd": None,
        "Entrypoint": None,
        "WorkingDir": "",
        "Labels": None,
        "Volumes": None,
        "ExposedPorts": None,
        "OnBuild": None,
    }
    return {**base, **doc}


def history(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    with opened(engine) as storage:
        image = find(storage, params["name"])
        tags = tags_of(storage, image)
    layers = list(image.manifest.layers)
    entries = []
    for item in image.config.history:
        size = 0
        if not item.empty_layer and layers:
            size = layers.pop(0).size
        entries.append(
            {
                "Id": "<missing>",
                "Created": _seconds(item.created),
                "CreatedBy": item.created_by,
                "Tags": None,
                "Size": size,
                "Comment": item.comment,
            }
        )
    entries.reverse()  # newest first, as docker
    if entries:
        entries[0].update(Id=str(image.config_digest), Tags=tags or None)
    reply.json(200, entries)


def tag(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    repo = request.arg("repo")
    if not repo:
        raise bad_request("repo is required")
    target = f"{repo}:{request.arg('tag') or 'latest'}"
    try:
        target = normalize(target)
    except (BuildError, ValueError) as exc:
        raise bad_request(f"invalid reference {target!r}: {exc}") from None
    with opened(engine) as storage:
        image = find(storage, params["name"])
        storage.index.set_tag(target, image.digest)
    reply.empty(201)


def remove(engine: Engine, request: Request, reply: Reply, params: dict[str, str]) -> None:
    """Untag ``name``; an image ID removes every tag of its image (``force`` or not:
    pybuild keeps no image that containers hold)."""
    name = params["name"]
    with opened(engine) as storage:
        image = find(storage, name)
        tags = tags_of(storage, image)
        normal = _normal(name)
        named = [normal] if normal in tags else tags
        if len(named) > 1 and not request.flag("force"):
            raise ApiError(
                409,
                f"conflict: unable to delete {image.config_digest.short} (must be forced) - "
                "image is referenced in multiple repositories",
            )
        for each in named:
            storage.index.remove_tag(each)
        left = [t for t in tags if t not in named]
    result: list[dict[str, str]] = [{"Untagged": t} for t in named]
    if not left:
        result.append({"Deleted": str(image.config_digest)})
    reply.json(200, result)


def _normal(name: str) -> str:
    try:
        return normalize(name)
    except (BuildError, ValueError):
        return name
