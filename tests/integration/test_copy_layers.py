"""COPY's layer over an overlay: entries in the way below are replaced, and what lands in
dirs the copy makes (written straight into the upper dir) is the same as what lands in
dirs that were there (written through the overlay)."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

MTIME = 1_600_000_000
DOCKERFILE = """\
FROM busybox
RUN mkdir -p /srv/site/sub /srv/site/asdir /srv/kept && echo lower > /srv/site/a \\
 && echo keep > /srv/site/sub/keep && echo in > /srv/site/asdir/in
COPY site/ /srv/site/
COPY site/ /fresh/
COPY site/ /srv/kept/
"""
FILES: dict[str, str | bytes] = {
    "site/a": "new\n",
    "site/asdir": "now a file\n",
    "site/sub/b": "b\n",
    "site/new/n": "n\n",
    "site/new/deep/d": "d\n",
}


def _context(tmp_path: Path) -> Path:
    ctx = write_context(tmp_path / "ctx", FILES, DOCKERFILE)
    os.link(ctx / "site" / "a", ctx / "site" / "new" / "h")
    os.chmod(ctx / "site" / "new" / "deep", 0o750)
    for path in (ctx / "site").rglob("*"):
        os.utime(path, (MTIME, MTIME), follow_symlinks=False)
    return ctx


Member = tuple[str, int, int, int, int, bytes, str]


def _layers(pybuild: Pybuild, tag: str, archive: Path) -> list[dict[str, Member]]:
    """Each layer of ``tag``: member name -> (type, mode, uid, gid, mtime, data, link)."""
    pybuild("save", "--format", "oci", "-o", archive, tag)
    out = []
    with tarfile.open(archive) as oci:

        def blob(digest: str) -> bytes:
            member = oci.extractfile("blobs/sha256/" + digest.split(":")[1])
            assert member is not None
            return member.read()

        index = json.loads(oci.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest = json.loads(blob(index["manifests"][0]["digest"]))
        for layer in manifest["layers"]:
            with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as tar:
                members = {}
                for m in tar:
                    data = tar.extractfile(m).read() if m.isfile() else b""  # type: ignore[union-attr]
                    members[m.name] = (m.type[0], m.mode, m.uid, m.gid, m.mtime, data, m.linkname)
                out.append(members)
    return out


def _below(layer: dict[str, Member], top: str) -> dict[str, Member]:
    """The members below ``top``, named relative to it (the dir itself left out)."""
    prefix = top + "/"
    return {n[len(prefix) :]: m for n, m in layer.items() if n.startswith(prefix)}


def test_copy_layers_replace_lower_entries_and_match_in_new_and_old_dirs(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    pybuild.build(_context(tmp_path), "-t", "copylayers:1")
    *_, over, fresh, kept = _layers(pybuild, "copylayers:1", tmp_path / "image.tar")
    below = _below(over, "srv/site")
    assert below["a"][5] == b"new\n"
    assert below["asdir"][0] == ord(tarfile.REGTYPE) and below["asdir"][5] == b"now a file\n"
    assert not any(name.startswith("asdir/") for name in below)  # the lower dir is hidden
    assert "sub/keep" not in below  # untouched lower entries stay out of the layer
    assert below["new/h"][0] == ord(tarfile.LNKTYPE) and below["new/h"][6] == "srv/site/a"
    assert below["new/deep"][1] == 0o750 and below["new/deep"][4] == MTIME
    # The same tree whatever was there: a new dest, and an empty dir from below.
    links = {"new/h"}  # a hard link names its target's full path
    same = {n: m for n, m in below.items() if n not in links}
    assert {n: m for n, m in _below(fresh, "fresh").items() if n not in links} == same
    assert {n: m for n, m in _below(kept, "srv/kept").items() if n not in links} == same
    assert _below(fresh, "fresh")["new/h"][6] == "fresh/a"


def test_copied_tree_reads_back_from_the_image(pybuild: Pybuild, tmp_path: Path) -> None:
    out = tmp_path / "rootfs"
    pybuild.build(_context(tmp_path), "-o", f"type=local,dest={out}")
    site = out / "srv" / "site"
    assert (site / "sub" / "keep").read_text() == "keep\n"
    assert (site / "asdir").read_text() == "now a file\n"
    assert os.lstat(site / "new" / "h").st_ino == os.lstat(site / "a").st_ino
    for top in (site, out / "fresh"):
        assert (top / "new" / "deep" / "d").read_text() == "d\n"
        assert os.lstat(top / "new" / "deep").st_mtime == MTIME
