"""A registry that misbehaves: corrupt blobs and dropped connections never corrupt the store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.registry.pull import RemoteOptions, pull_image
from cache.distribution.client import RegistryOptions
from cache.distribution.errors import RegistryUnreachable
from cache.index import Index as TagIndex
from cache.store import BlobStore
from tests.integration.clihelp import Pybuild
from tests.integration.registry_server import FakeRegistry, fake_image, non_loopback_address

LAYER = os.urandom(300_000)


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    manifest, blobs = fake_image(LAYER)
    with FakeRegistry("bad/app", "1", manifest, blobs).running() as server:
        yield server


def _layer_digest(fake: FakeRegistry) -> str:
    return next(d for d, data in fake.blobs.items() if data == LAYER)


def _assert_store_clean(root: Path) -> BlobStore:
    """Our own check, then the user's: ``pybuild cache verify`` exits 0 and says clean."""
    assert ": clean," in Pybuild(root)("cache", "verify").out
    blobs = BlobStore(root)
    for digest in blobs.digests():
        blobs.read_bytes(digest)  # raises DigestMismatch on a corrupt blob
    assert [p for p in blobs.tmp_dir.iterdir() if p.name.startswith("blob-")] == []
    return blobs


def test_corrupt_blob_fails_the_pull_and_stores_nothing_of_it(
    fake: FakeRegistry, store_root: Path
) -> None:
    layer = _layer_digest(fake)
    fake.corrupt.add(layer)
    result = Pybuild(store_root)("pull", f"{fake.host}/bad/app:1", ok=False)
    err = " ".join(result.err.split())
    assert result.code == 1
    assert f"blob {layer}" in err
    assert "does not match its digest; nothing was stored" in err
    assert "Traceback" not in err
    blobs = _assert_store_clean(store_root)
    assert layer.removeprefix("sha256:") not in {d.hex for d in blobs.digests()}
    assert Pybuild(store_root)("images").out.strip().count("\n") == 0


def test_connection_dropped_mid_blob_resumes_with_range(
    fake: FakeRegistry, store_root: Path
) -> None:
    layer = _layer_digest(fake)
    fake.drops[layer] = 1
    Pybuild(store_root)("pull", f"{fake.host}/bad/app:1")
    assert fake.ranged == [f"bytes={len(LAYER) // 2}-"]
    blobs = _assert_store_clean(store_root)
    assert layer.removeprefix("sha256:") in {d.hex for d in blobs.digests()}


def test_connection_that_keeps_dropping_gives_up_cleanly(
    fake: FakeRegistry, store_root: Path
) -> None:
    layer = _layer_digest(fake)
    fake.drops[layer] = 100
    blobs, tags = BlobStore(store_root), TagIndex(store_root)
    options = RemoteOptions(registry=RegistryOptions(retries=2, backoff=0.01))
    try:
        with pytest.raises(RegistryUnreachable, match="gave up"):
            pull_image(f"{fake.host}/bad/app:1", blobs, tags, options)
        assert tags.tags() == []
    finally:
        tags.close()
    # Each retry resumed where the last one broke off, halving what was left.
    assert len(fake.ranged) == 2
    blobs = _assert_store_clean(store_root)
    assert layer.removeprefix("sha256:") not in {d.hex for d in blobs.digests()}


def test_layers_are_fetched_concurrently_with_a_line_per_layer(store_root: Path) -> None:
    layers = [os.urandom(50_000) for _ in range(4)]
    manifest, blobs = fake_image(*layers)
    with FakeRegistry("many/app", "1", manifest, blobs, delay=0.3).running() as server:
        seen: list[str] = []
        tags = TagIndex(store_root)
        try:
            pull_image(
                f"{server.host}/many/app:1",
                BlobStore(store_root),
                tags,
                RemoteOptions(jobs=4),
                seen.append,
            )
        finally:
            tags.close()
    assert server.most_at_once >= 3  # four layer GETs overlapped (one worker each)
    assert len([line for line in seen if "Pull complete" in line]) == 4
    _assert_store_clean(store_root)


@pytest.mark.skipif(non_loopback_address() is None, reason="needs a non-loopback address")
def test_plain_http_only_with_insecure_registry_for_a_non_loopback_host(
    store_root: Path,
) -> None:
    manifest, blobs = fake_image(LAYER)
    fake = FakeRegistry("plain/app", "1", manifest, blobs, address=str(non_loopback_address()))
    with fake.running() as server:
        image = f"{server.host}/plain/app:1"
        refused = Pybuild(store_root)("pull", image, ok=False)
        err = " ".join(refused.err.split())
        assert refused.code == 1
        assert f"--insecure-registry {server.host}" in err
        assert "Traceback" not in err
        Pybuild(store_root)("pull", "--insecure-registry", server.host, image)
    _assert_store_clean(store_root)
