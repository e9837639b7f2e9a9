"""`pybuild load` unpacks the image's layers, as `docker load` does: the first build
from a freshly loaded base starts its first step without extracting anything."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _diff_ids(pybuild: Pybuild, image: str) -> list[str]:
    config = pybuild.inspect(image)["Config"]
    return [d.removeprefix("sha256:") for d in config["rootfs"]["diff_ids"]]


def test_load_as_root_leaves_every_layer_of_the_image_unpacked(
    pybuild: Pybuild, store_root: Path
) -> None:
    diff_ids = _diff_ids(pybuild, "busybox:latest")
    assert diff_ids
    for hex_id in diff_ids:
        layer = store_root / "layers" / hex_id
        assert (layer / "bin" / "busybox").is_file(), layer
    report = json.loads(pybuild("cache", "verify", "--json").out)
    assert report["clean"], report


def test_build_on_a_loaded_base_reuses_the_layer_load_unpacked(
    pybuild: Pybuild, store_root: Path, tmp_path: Path
) -> None:
    (hex_id,) = _diff_ids(pybuild, "busybox:latest")
    layer = store_root / "layers" / hex_id
    before = layer.stat().st_ino
    context = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo hi > /hi\n")
    pybuild.build(context, "-t", "hi")
    assert layer.stat().st_ino == before  # used as it was, not unpacked again
