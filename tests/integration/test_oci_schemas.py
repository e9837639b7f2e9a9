"""Our OCI output against the image-spec JSON schemas (../shared/conformance).

First the schema wiring itself is checked on every conformance fixture against
``expectations.json``; then the index, manifests, configs and oci-layout of archives we
write are validated, with blob digests and sizes checked.
"""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from builder.images.load import load_archive
from builder.images.save import write_docker_archive, write_oci_archive
from cache.index import Index
from cache.store import BlobStore
from tests.archive_samples import make_base_module
from tests.oci_schema import SPEC_DIR, check_layout, validate

CONFORMANCE = Path(__file__).parents[2].parent / "shared" / "conformance"
EXPECTATIONS = CONFORMANCE / "oci-image-spec" / "expectations.json"
needs_conformance = pytest.mark.skipif(
    not EXPECTATIONS.is_file(), reason=f"conformance data not found at {CONFORMANCE}"
)
needs_busybox = pytest.mark.skipif(
    not Path("/bin/busybox").is_file(), reason="needs /bin/busybox: apt-get install busybox-static"
)


def _fixtures() -> list[dict[str, Any]]:
    if not EXPECTATIONS.is_file():
        return []
    fixtures: list[dict[str, Any]] = json.loads(EXPECTATIONS.read_text())["fixtures"]
    return fixtures


@needs_conformance
def test_helper_reads_the_same_conformance_folder() -> None:
    assert SPEC_DIR.resolve() == (CONFORMANCE / "oci-image-spec").resolve()
    assert len(_fixtures()) == 77


@needs_conformance
@pytest.mark.parametrize("case", _fixtures(), ids=lambda case: str(case["file"]))
@pytest.mark.conformance("oci-image-spec fixtures/")
def test_conformance_fixture_meets_its_expectation(case: dict[str, Any]) -> None:
    text = (SPEC_DIR / case["file"]).read_text()
    try:
        document = json.loads(text)
    except ValueError:
        assert case.get("not_json") and not case["expect_valid"]
        return
    assert not case.get("not_json")
    errors = validate(document, case["media_type"])
    assert (not errors) == case["expect_valid"], errors or case["upstream_comment"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """The busybox fixture loaded into a store, saved by us in both archive formats and
    unpacked into layout directories."""
    if not Path("/bin/busybox").is_file():
        pytest.skip("needs /bin/busybox: apt-get install busybox-static")
    tmp = tmp_path_factory.mktemp("schemas")
    base = make_base_module().make_base(tmp / "base.tar", "docker", "busybox:latest")
    (tmp / "store").mkdir()
    blobs, index = BlobStore(tmp / "store"), Index(tmp / "store")
    [image] = load_archive(base, blobs, index)
    refs = [("busybox:latest", image.digest), ("", image.digest)]
    write_oci_archive(blobs, refs, tmp / "oci.tar")
    write_docker_archive(blobs, refs, tmp / "docker.tar")
    index.close()
    layouts = {}
    for fmt in ("oci", "docker"):
        layouts[fmt] = tmp / f"{fmt}-layout"
        with tarfile.open(tmp / f"{fmt}.tar") as tar:
            tar.extractall(layouts[fmt], filter="data")
    yield layouts


@needs_conformance
@needs_busybox
@pytest.mark.parametrize("fmt", ["oci", "docker"])
def test_our_archive_documents_are_schema_valid(saved: dict[str, Path], fmt: str) -> None:
    counts = check_layout(saved[fmt])
    # the unnamed ref adds nothing: the image is listed once, under its name
    assert counts == {"layout": 1, "index": 1, "manifest": 1, "config": 1, "layer": 1}


@needs_conformance
def test_schema_check_rejects_a_broken_manifest() -> None:
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2},
        "layers": [],
    }
    errors = validate(manifest, "application/vnd.oci.image.manifest.v1+json")
    assert any("digest" in e for e in errors)
