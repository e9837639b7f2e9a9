"""Path resolution inside a root, mount-point stubs and their removal (no mounts needed)."""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import cast

import pytest

from runtime import rootfs as rootfs_mod
from runtime.errors import SandboxError, SyscallError, UserNotFound
from runtime.init import failure_from_dict, failure_to_dict
from runtime.rootfs import make_mountpoint, remove_stubs, resolve_in_root
from runtime.spec import Rootfs


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "usr" / "lib").mkdir(parents=True)
    (root / "lib").symlink_to("usr/lib")
    (root / "abs").symlink_to("/usr/lib")
    (root / "up").symlink_to("../../../..")
    (root / "loop").symlink_to("loop")
    return root


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/", ""),
        ("/usr/lib/x", "usr/lib/x"),
        ("/lib/x", "usr/lib/x"),
        ("/abs/x", "usr/lib/x"),
        ("/up/etc/passwd", "etc/passwd"),
        ("/../../etc", "etc"),
        ("usr/./lib/../lib", "usr/lib"),
        ("/missing/../lib", "usr/lib"),
    ],
)
def test_resolve_in_root_never_leaves_the_root(root: Path, path: str, expected: str) -> None:
    assert resolve_in_root(root, path) == root / expected


def test_resolve_in_root_refuses_symlink_loops(root: Path) -> None:
    with pytest.raises(SandboxError, match="too many levels"):
        resolve_in_root(root, "/loop/x")


def _overlay(tmp_path: Path) -> tuple[Path, Rootfs]:
    """A fake overlay: 'merged' plays the mounted root, and what we create in it is
    mirrored by hand into 'upper' where overlayfs would have put it."""
    lower, upper, merged = tmp_path / "lower", tmp_path / "upper", tmp_path / "merged"
    for d in (lower, upper, merged):
        d.mkdir()
    return merged, Rootfs((lower,), upper, tmp_path / "work")


def test_make_mountpoint_records_what_upper_lacked(tmp_path: Path) -> None:
    merged, rootfs = _overlay(tmp_path)
    (merged / "etc").mkdir()
    (rootfs.upper / "etc").mkdir()
    path, stub = make_mountpoint(merged, "/etc/ssl/cert.pem", is_dir=False, upper=rootfs.upper)
    assert path == merged / "etc" / "ssl" / "cert.pem"
    assert path.is_file() and path.stat().st_size == 0
    assert stub is not None
    assert (stub.paths, stub.is_dir) == (("etc/ssl", "etc/ssl/cert.pem"), False)


def test_make_mountpoint_leaves_existing_targets_alone(tmp_path: Path) -> None:
    merged, rootfs = _overlay(tmp_path)
    (merged / "proc").mkdir()
    assert make_mountpoint(merged, "/proc", is_dir=True, upper=rootfs.upper) == (
        merged / "proc",
        None,
    )


def test_remove_stubs_takes_out_empty_stubs_and_parents(tmp_path: Path) -> None:
    merged, rootfs = _overlay(tmp_path)
    _, stub = make_mountpoint(merged, "/etc/hosts", is_dir=False, upper=rootfs.upper)
    (rootfs.upper / "etc").mkdir()
    (rootfs.upper / "etc" / "hosts").touch()
    assert stub is not None
    remove_stubs(rootfs, [stub])
    assert os.listdir(rootfs.upper) == []


def test_remove_stubs_keeps_what_the_container_changed(tmp_path: Path) -> None:
    merged, rootfs = _overlay(tmp_path)
    _, stub = make_mountpoint(merged, "/etc/hosts", is_dir=False, upper=rootfs.upper)
    (rootfs.upper / "etc").mkdir()
    (rootfs.upper / "etc" / "hosts").write_text("not a stub any more")
    (rootfs.upper / "etc" / "other").touch()
    assert stub is not None
    remove_stubs(rootfs, [stub])
    assert sorted(os.listdir(rootfs.upper / "etc")) == ["hosts", "other"]


def test_remove_stubs_keeps_copied_up_dir_with_changed_mode(tmp_path: Path) -> None:
    merged, rootfs = _overlay(tmp_path)
    (rootfs.lowers[0] / "etc").mkdir(mode=0o755)
    (merged / "etc").mkdir()
    _, stub = make_mountpoint(merged, "/etc/hosts", is_dir=False, upper=rootfs.upper)
    (rootfs.upper / "etc").mkdir()
    (rootfs.upper / "etc").chmod(0o700)
    assert stub is not None
    remove_stubs(rootfs, [stub])
    assert os.listdir(rootfs.upper) == ["etc"]


def test_remove_stubs_never_follows_symlinks_in_upper(tmp_path: Path) -> None:
    merged, rootfs = _overlay(tmp_path)
    _, stub = make_mountpoint(merged, "/mnt/data", is_dir=True, upper=rootfs.upper)
    victim = tmp_path / "victim"
    (victim / "data").mkdir(parents=True)
    (rootfs.upper / "mnt").symlink_to(victim)  # swapped in by a hostile container
    assert stub is not None
    remove_stubs(rootfs, [stub])
    assert (victim / "data").is_dir()


def test_failures_cross_the_process_boundary_with_their_type() -> None:
    for error in (SandboxError("m1", hint="h1"), UserNotFound("m2")):
        back = failure_from_dict(failure_to_dict(error))
        assert (type(back), back.message, back.hint) == (type(error), error.message, error.hint)


class _Mounts:
    """linux.mount stand-in: records option strings, refuses those containing ``refused``."""

    def __init__(self, *refused: str) -> None:
        self.refused: tuple[str, ...] = refused
        self.tried: list[str] = []

    def __call__(self, source: str, target: str, fstype: str, flags: int, data: str) -> None:
        self.tried.append(data)
        if any(word in data.split(",") for word in self.refused):
            raise SyscallError("mount: invalid argument", call="mount", errno=errno.EINVAL)


def _mount_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounts: _Mounts, **kw: bool
) -> None:
    monkeypatch.setattr(rootfs_mod.linux, "mount", mounts)
    monkeypatch.setattr(rootfs_mod, "in_initial_namespace", lambda: True)
    lower = tmp_path / "lower"
    lower.mkdir()
    spec = Rootfs((lower,), tmp_path / "upper", tmp_path / "work", **kw)
    rootfs_mod.mount_overlay(spec, tmp_path / "merged", empty_lower=tmp_path / "empty")


def test_a_volatile_rootfs_is_mounted_volatile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _Mounts()
    _mount_with(tmp_path, monkeypatch, mounts, volatile=True)
    assert len(mounts.tried) == 1
    assert mounts.tried[0].split(",")[-1] == "volatile"
    assert "index=off" in mounts.tried[0].split(",")


def test_a_rootfs_that_is_a_containers_data_is_never_mounted_volatile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _Mounts()
    _mount_with(tmp_path, monkeypatch, mounts)
    assert len(mounts.tried) == 1
    assert "volatile" not in mounts.tried[0].split(",")


def test_a_kernel_without_volatile_keeps_the_other_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _Mounts("volatile")
    _mount_with(tmp_path, monkeypatch, mounts, volatile=True)
    assert len(mounts.tried) == 2
    options = mounts.tried[1].split(",")
    assert "volatile" not in options and "index=off" in options


def test_a_kernel_refusing_every_extra_option_gets_the_plain_mount(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mounts = _Mounts("volatile", "index=off")
    _mount_with(tmp_path, monkeypatch, mounts, volatile=True)
    assert len(mounts.tried) == 3
    assert mounts.tried[2].startswith("lowerdir=") and "index=off" not in mounts.tried[2]


def test_an_overlay_refused_for_another_reason_is_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def denied(*args: object) -> None:
        raise SyscallError("mount: not permitted", call="mount", errno=errno.EPERM)

    with pytest.raises(SyscallError) as caught:
        _mount_with(tmp_path, monkeypatch, cast(_Mounts, denied), volatile=True)
    assert caught.value.errno == errno.EPERM and caught.value.hint
