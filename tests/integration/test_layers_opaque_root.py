"""An opaque whiteout at a layer's root hides every layer below it, in every view of
the image: `pybuild run`, a RUN step over it, and the exported root filesystem."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

BUSYBOX = Path("/bin/busybox")


def _tar(members: list[tuple[str, bytes | None, str | None]]) -> bytes:
    """(path, data or None for a dir, hard link target) entries, in order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path, data, link in members:
            info = tarfile.TarInfo(path)
            info.mtime = 1704067200
            if link is not None:
                info.type, info.linkname = tarfile.LNKTYPE, link
                tar.addfile(info)
            elif data is None:
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o755
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _opaque_root_archive(base: Path, dest: Path) -> Path:
    """busybox:latest plus a top layer with ``.wh..wh..opq`` at its root, a new busybox
    and /top-only: a docker-save archive tagged opq:1."""
    top = _tar(
        [
            (".wh..wh..opq", b"", None),
            ("bin", None, None),
            ("bin/busybox", BUSYBOX.read_bytes(), None),
            ("bin/sh", None, "bin/busybox"),
            ("bin/ls", None, "bin/busybox"),
            ("top-only", b"top\n", None),
        ]
    )
    top_id = hashlib.sha256(top).hexdigest()
    with tarfile.open(base) as src, tarfile.open(dest, "w") as out:
        manifest = json.load(src.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(src.extractfile(manifest[0]["Config"]))  # type: ignore[arg-type]
        config["rootfs"]["diff_ids"].append(f"sha256:{top_id}")
        config["history"].append({"created_by": "opaque root layer"})
        config["config"]["Cmd"] = ["/bin/ls", "/"]
        config_bytes = json.dumps(config).encode()
        config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
        layers = [*manifest[0]["Layers"], f"{top_id}/layer.tar"]
        doc = [{"Config": config_name, "RepoTags": ["opq:1"], "Layers": layers}]
        for member in src.getmembers():
            if member.name in manifest[0]["Layers"]:
                out.addfile(member, src.extractfile(member))
        for name, data in (
            (f"{top_id}/layer.tar", top),
            (config_name, config_bytes),
            ("manifest.json", json.dumps(doc).encode()),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
    return dest


@pytest.fixture
def opq(pybuild: Pybuild, base_archive: Path, tmp_path: Path) -> Pybuild:
    pybuild("load", "-i", _opaque_root_archive(base_archive, tmp_path / "opq.tar"))
    return pybuild


def test_run_hides_the_layers_below_an_opaque_root(opq: Pybuild) -> None:
    seen = opq("run", "--rm", "opq:1").out.split()
    assert "top-only" in seen and "bin" in seen
    assert not {"home", "usr", "var", "root"} & set(seen)  # busybox's layer is hidden


@pytest.mark.parametrize("snapshotter", ["overlay", "copy"])
def test_run_step_and_export_agree_on_an_opaque_root(
    opq: Pybuild, tmp_path: Path, snapshotter: str
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM opq:1\nRUN ls / > /seen\n")
    out = tmp_path / "rootfs"
    opq(
        "build", "--progress", "plain", "-o", f"type=local,dest={out}", ctx,
        env={"PYBUILD_SNAPSHOTTER": snapshotter},
    )  # fmt: skip
    exported = {p.name for p in out.iterdir()}
    assert "home" not in exported and "top-only" in exported
    seen = set((out / "seen").read_text().split())
    # The step saw what the export holds, less what only the sandbox adds.
    assert seen - {"dev", "proc", "sys", "etc"} == exported
