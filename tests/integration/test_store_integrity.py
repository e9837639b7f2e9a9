"""The store against tampering, damage and long-lived containers: unpacked layers are
checked before use and by `cache verify`; a damaged index is rebuilt by `verify
--repair`; prune and repair work around running containers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _diff_ids(pybuild: Pybuild, image: str) -> list[str]:
    ids: list[str] = pybuild.inspect(image)["Config"]["rootfs"]["diff_ids"]
    return [d.removeprefix("sha256:") for d in ids]


def _unpacked(pybuild: Pybuild) -> set[str]:
    return {p.name for p in (pybuild.root / "layers").iterdir()}


def _status(pybuild: Pybuild, name: str) -> str:
    for line in pybuild("ps", "-a").out.splitlines()[1:]:
        if line.split()[-1] == name:
            return line
    raise AssertionError(f"no container {name}")


def test_prune_and_repair_keep_a_running_containers_layers_without_waiting_for_it(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo leased > /only-here\n")
    pybuild.build(ctx, "-t", "leased:1")
    own = _diff_ids(pybuild, "leased:1")[-1]
    pybuild("run", "-d", "--name", "long", "leased:1", "sleep", "3600")
    try:
        pybuild("rmi", "leased:1")  # now only the running container needs its image
        started = time.monotonic()
        pybuild("cache", "prune", "--all", timeout=30)
        pybuild("cache", "verify", "--repair", timeout=30)
        assert time.monotonic() - started < 20
        assert "Up" in _status(pybuild, "long")
        assert own in _unpacked(pybuild)
        assert (pybuild.root / "layers" / own / "only-here").read_text() == "leased\n"
    finally:
        pybuild("rm", "-f", "long")
    pybuild("cache", "prune", "--all")
    assert own not in _unpacked(pybuild)
    assert set(_diff_ids(pybuild, "busybox")) <= _unpacked(pybuild)


def test_a_tampered_unpacked_layer_is_reported_repaired_and_never_built_on(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "base", {}, "FROM busybox\nRUN echo clean > /etc/motd\n")
    pybuild.build(ctx, "-t", "base:1")
    layer = pybuild.root / "layers" / _diff_ids(pybuild, "base:1")[-1]
    (layer / "etc" / "motd").write_text("tampered\n")
    (layer / "planted").write_text("evil\n")

    found = pybuild("cache", "verify", ok=False)
    assert found.code == 1
    assert "tampered-layer" in found.out and "etc/motd" in found.out
    assert "planted" in found.out

    child = write_context(tmp_path / "child", {}, "FROM base:1\nRUN cat /etc/motd; ls /\n")
    out = pybuild.build(child, "--no-cache").err
    assert "clean" in out and "tampered" not in out and "planted" not in out
    assert (layer / "etc" / "motd").read_text() == "clean\n"

    (layer / "planted").write_text("again\n")
    repaired = pybuild("cache", "verify", "--repair").out
    assert "unpacked tampered layer" in repaired
    assert not (layer / "planted").exists()
    assert pybuild("cache", "verify").code == 0
    assert pybuild("run", "--rm", "base:1", "cat", "/etc/motd").out == "clean\n"


def _garbage(index: Path) -> None:
    index.write_bytes(b"this is not a database\n" * 400)


def _truncate(index: Path) -> None:
    data = index.read_bytes()
    index.write_bytes(data[: len(data) // 2 + 100])


@pytest.mark.parametrize("damage", [_garbage, _truncate], ids=["garbage", "truncated"])
def test_a_damaged_index_names_the_repair_which_rebuilds_it_with_its_tags(
    pybuild: Pybuild, tmp_path: Path, damage: object
) -> None:
    ctx = write_context(tmp_path / "app", {}, "FROM busybox\nRUN echo kept > /kept\n")
    pybuild.build(ctx, "-t", "app:1")
    for leftover in ("index.db-wal", "index.db-shm"):
        (pybuild.root / leftover).unlink(missing_ok=True)  # the damage is to the file itself
    damage(pybuild.root / "index.db")  # type: ignore[operator]

    for args in (
        ("images",),
        ("run", "--rm", "app:1", "cat", "/kept"),
        ("build", "--progress", "plain", str(ctx)),
        ("tag", "app:1", "app:2"),
        ("cache", "prune", "--all"),
        ("cache", "verify"),
    ):
        result = pybuild(*args, ok=False)
        assert result.code != 0, args
        assert "pybuild cache verify --repair" in result.err, (args, result.err)
        assert "Traceback" not in result.err

    out = pybuild("cache", "verify", "--repair").out
    assert "rebuilt the index" in out and "2 tags restored" in out
    assert "build steps and build history were lost" in out
    images = pybuild("images").out
    assert "app" in images and "busybox" in images
    assert pybuild("run", "--rm", "app:1", "cat", "/kept").out == "kept\n"
    assert pybuild("cache", "verify").code == 0
