"""A store on an overlayfs mount (as on a container's own root), built on with namespaces:
overlayfs refuses the 0/0 char devices of whiteouts, so unpacked layers record deletions
in the xattr form, and such lowers are never mounted as an overlay (the copy snapshotter
reads them). The job-container half, with chroot isolation, is test_ci_job_container.py.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from fstree import whiteout
from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

EPOCH = ("--source-date-epoch", "1700000000")


@pytest.fixture
def overlay_dir(tmp_path: Path) -> Iterator[Path]:
    parts = {name: tmp_path / name for name in ("lower", "upper", "work", "merged")}
    for path in parts.values():
        path.mkdir()
    options = f"lowerdir={parts['lower']},upperdir={parts['upper']},workdir={parts['work']}"
    subprocess.run(
        ["mount", "-t", "overlay", "overlay", "-o", options, str(parts["merged"])], check=True
    )
    try:
        yield parts["merged"]
    finally:
        subprocess.run(["umount", "-l", str(parts["merged"])], check=False)


def test_a_namespace_build_on_a_store_on_overlayfs_deletes_as_on_any_other_store(
    pybuild: Pybuild, base_archive: Path, overlay_dir: Path, tmp_path: Path
) -> None:
    base_ctx = write_context(tmp_path / "base", {}, "FROM busybox\nRUN rm /etc/group\n")
    base = tmp_path / "w.tar"
    plain = pybuild.build(
        base_ctx, *EPOCH, "-t", "wbase:1", "-o", f"type=docker,dest={base}", "-q"
    ).out.strip()
    # A step on layers without deletions: its upper is on overlayfs, so no overlay mount.
    on_overlay = Pybuild(overlay_dir / "first")
    on_overlay("load", "-i", base_archive)
    assert plain.startswith("sha256:")
    assert on_overlay.build(base_ctx, *EPOCH, "-q").out.strip() == plain
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM wbase:1\nRUN test ! -e /etc/group && rm /etc/passwd\n"
    )
    stores = {"overlay": Pybuild(overlay_dir / "store"), "plain": Pybuild(tmp_path / "plain")}
    digests = {}
    for name, store in stores.items():
        store("load", "-i", base)
        meta = tmp_path / f"{name}.json"
        store.build(ctx, *EPOCH, "--isolation", "namespaces", "--metadata-file", meta)
        digests[name] = json.loads(meta.read_text())["containerimage.digest"]
    assert digests["overlay"] == digests["plain"]
    layers = sorted((overlay_dir / "store" / "layers").iterdir())
    assert sum(whiteout.marked(layer) for layer in layers) == 2  # the base's, the RUN's
