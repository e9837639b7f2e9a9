"""Leases: what live containers use is kept by prune without waiting for them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from cache.digest import Digest
from cache.gc import PruneOptions, prune
from cache.gclock import build_guard
from cache.images import StoredImage, write_image
from cache.leases import live_leases, take_lease
from cache.oci import ImageConfig
from tests.unit.test_gc import Store, store  # noqa: F401


def _image(into: Store, content: bytes) -> tuple[StoredImage, Digest]:
    layer, diff_id = into.layer(content)
    return write_image(into.blobs, ImageConfig(diff_ids=(diff_id,)), [layer]), diff_id


def test_prune_keeps_what_a_held_lease_names_and_does_not_wait(store: Store) -> None:  # noqa: F811
    image, diff_id = _image(store, b"leased")
    with build_guard(store.blobs.root):
        lease = take_lease(store.blobs.root, "c1", image)
    with lease:
        prune(store.blobs, store.layers, store.index, PruneOptions(remove_all=True))
        assert store.blobs.has(image.digest) and store.blobs.has(image.config_digest)
        assert (store.layers.root / diff_id.hex).is_dir()
        assert [lease.name for lease in live_leases(store.blobs.root)] == ["c1"]
    assert live_leases(store.blobs.root) == []
    prune(store.blobs, store.layers, store.index, PruneOptions(remove_all=True))
    assert not store.blobs.has(image.digest)
    assert not (store.layers.root / diff_id.hex).exists()


def test_a_lease_left_by_a_killed_process_keeps_nothing(store: Store) -> None:  # noqa: F811
    image, diff_id = _image(store, b"orphan")
    root = store.blobs.root
    script = (
        "import sys, os; from pathlib import Path; from cache.leases import take_lease;"
        "from cache.images import read_image; from cache.store import BlobStore;"
        f"from cache.digest import Digest; root = Path({str(root)!r});"
        f"image = read_image(BlobStore(root), Digest.parse({str(image.digest)!r}));"
        "take_lease(root, 'dead', image);"
        "os._exit(0)"  # no release: as a SIGKILLed monitor leaves it
    )
    subprocess.run([sys.executable, "-c", script], check=True, cwd=Path(__file__).parents[2])
    assert (root / "leases" / "dead.json").exists()
    assert live_leases(root) == []
    prune(store.blobs, store.layers, store.index, PruneOptions(remove_all=True))
    assert not (root / "leases" / "dead.json").exists()
    assert not (store.layers.root / diff_id.hex).exists()


def test_a_handed_off_lease_is_held_by_the_child_that_inherited_it(store: Store) -> None:  # noqa: F811
    image, _ = _image(store, b"child")
    root = store.blobs.root
    lease = take_lease(root, "c2", image)
    assert lease.fd is not None
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; sys.stdin.read()"],
        stdin=subprocess.PIPE,
        pass_fds=(lease.fd,),
    )
    try:
        lease.hand_off()
        assert [x.name for x in live_leases(root)] == ["c2"]
    finally:
        assert child.stdin is not None
        child.stdin.close()
        child.wait()
    assert live_leases(root) == []
