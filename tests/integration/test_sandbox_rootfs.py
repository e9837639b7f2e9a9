"""The sandbox's root filesystem: overlay writes, whiteouts, stub clean-up, no mount leaks."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from runtime.errors import SandboxError
from runtime.rootfs import overlay_supported
from runtime.sandbox import run
from runtime.spec import BindMount, ContainerSpec, Rootfs
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]

REPO = Path(__file__).resolve().parents[2]


def snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    """Every path under ``root`` with its mode, size and (file) content."""
    found = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = path.lstat()
            data = path.read_bytes() if stat.S_ISREG(st.st_mode) else b""
            found[str(path.relative_to(root))] = (st.st_mode, st.st_size, data)
    return found


def mountinfo() -> list[str]:
    """Our mount table without the mount ids, which are not stable."""
    return sorted(
        line.split(" ", 2)[2] for line in Path("/proc/self/mountinfo").read_text().splitlines()
    )


def sh(rootfs: Rootfs, script: str, **fields: object) -> ContainerSpec:
    return ContainerSpec(rootfs, ("sh", "-c", script), env=("PATH=/bin",), **fields)  # type: ignore[arg-type]


@pytest.fixture
def lower(tmp_path: Path) -> Path:
    return make_busybox_rootfs(tmp_path / "lower")


def test_writes_land_in_upper_and_lowers_stay_untouched(lower: Path, tmp_path: Path) -> None:
    before = snapshot(lower)
    rootfs = fresh_rootfs(tmp_path, (lower,))
    result = run(sh(rootfs, "echo new > /created; echo more >> /etc/passwd; mkdir -p /a/b"))
    assert result.exit_code == 0
    assert snapshot(lower) == before
    assert (rootfs.upper / "created").read_text() == "new\n"
    assert (rootfs.upper / "etc" / "passwd").read_text().endswith("more\n")
    assert (rootfs.upper / "a" / "b").is_dir()


def test_deleting_a_lower_file_leaves_a_whiteout_in_upper(lower: Path, tmp_path: Path) -> None:
    rootfs = fresh_rootfs(tmp_path, (lower,))
    assert run(sh(rootfs, "rm /bin/ls")).exit_code == 0
    whiteout = (rootfs.upper / "bin" / "ls").lstat()
    assert stat.S_ISCHR(whiteout.st_mode)
    assert whiteout.st_rdev == os.makedev(0, 0)
    assert (lower / "bin" / "ls").is_symlink()


def test_lowers_stack_top_most_first(tmp_path: Path) -> None:
    base = make_busybox_rootfs(tmp_path / "base")
    (base / "etc" / "motd").write_text("base\n")
    top = tmp_path / "top"
    (top / "etc").mkdir(parents=True)
    (top / "etc" / "motd").write_text("top\n")
    rootfs = fresh_rootfs(tmp_path, (top, base))
    out = tmp_path / "out"
    with out.open("wb") as f:
        run(sh(rootfs, "cat /etc/motd"), stdout=f.fileno())
    assert out.read_text() == "top\n"


@pytest.mark.parametrize("with_etc", [True, False], ids=["lower-has-etc", "lower-without-etc"])
def test_run_true_leaves_upper_empty(tmp_path: Path, with_etc: bool) -> None:
    lower = make_busybox_rootfs(tmp_path / "lower", with_etc=with_etc)
    rootfs = fresh_rootfs(tmp_path, (lower,))
    assert run(ContainerSpec(rootfs, ("/bin/true",))).exit_code == 0
    assert os.listdir(rootfs.upper) == []


def test_run_true_on_scratch_leaves_upper_empty(tmp_path: Path) -> None:
    rootfs = fresh_rootfs(tmp_path, ())
    (rootfs.upper / "bin").mkdir()
    (rootfs.upper / "bin" / "busybox").write_bytes(Path("/bin/busybox").read_bytes())
    (rootfs.upper / "bin" / "busybox").chmod(0o755)
    assert run(ContainerSpec(rootfs, ("/bin/busybox", "true"))).exit_code == 0
    assert os.listdir(rootfs.upper) == ["bin"]


def test_files_the_command_writes_next_to_stubs_are_kept(tmp_path: Path) -> None:
    lower = make_busybox_rootfs(tmp_path / "lower", with_etc=False)
    rootfs = fresh_rootfs(tmp_path, (lower,))
    assert run(sh(rootfs, "echo x > /etc/kept; mkdir /proc2")).exit_code == 0
    assert sorted(os.listdir(rootfs.upper)) == ["etc", "proc2"]
    assert os.listdir(rootfs.upper / "etc") == ["kept"]


def test_chmod_of_a_copied_up_stub_parent_is_kept(lower: Path, tmp_path: Path) -> None:
    (lower / "etc").chmod(0o755)
    rootfs = fresh_rootfs(tmp_path, (lower,))
    assert run(sh(rootfs, "chmod 700 /etc")).exit_code == 0
    assert stat.S_IMODE((rootfs.upper / "etc").stat().st_mode) == 0o700
    assert os.listdir(rootfs.upper / "etc") == []


def test_no_mounts_are_left_on_the_host(lower: Path, tmp_path: Path) -> None:
    before = mountinfo()
    shared = tmp_path / "shared"
    shared.mkdir()
    spec = sh(
        fresh_rootfs(tmp_path, (lower,)), "mount | wc -l", mounts=(BindMount(shared, "/data"),)
    )
    assert run(spec).exit_code == 0
    assert mountinfo() == before


def test_failed_setup_leaves_no_mounts_and_no_stubs(lower: Path, tmp_path: Path) -> None:
    before = mountinfo()
    rootfs = fresh_rootfs(tmp_path, (lower,))
    spec = sh(rootfs, "true", mounts=(BindMount(tmp_path / "missing", "/data"),))
    with pytest.raises(SandboxError, match="does not exist"):
        run(spec)
    assert mountinfo() == before
    assert os.listdir(rootfs.upper) == []


def test_rootfs_symlinks_cannot_point_mounts_outside(lower: Path, tmp_path: Path) -> None:
    escape = tmp_path / "escape"
    escape.mkdir()
    (lower / "mnt").symlink_to(str(escape))  # absolute: must mean <root>/<escape> inside
    rootfs = fresh_rootfs(tmp_path, (lower,))
    shared = tmp_path / "shared"
    shared.mkdir()
    assert run(sh(rootfs, "true", mounts=(BindMount(shared, "/mnt/data"),))).exit_code == 0
    assert os.listdir(escape) == []


def test_mounted_overlay_lets_the_caller_write_into_upper(lower: Path, tmp_path: Path) -> None:
    rootfs = fresh_rootfs(tmp_path, (lower,))
    target = tmp_path / "merged"
    target.mkdir()
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from runtime.mountns import enter_private_mount_namespace
        from runtime.rootfs import mounted_overlay
        from runtime.spec import Rootfs
        enter_private_mount_namespace()
        rootfs = Rootfs(
            (Path({str(lower)!r}),), Path({str(rootfs.upper)!r}), Path({str(rootfs.work)!r})
        )
        with mounted_overlay(rootfs, Path({str(target)!r})) as root:
            assert (root / "bin" / "busybox").exists()
            (root / "app").mkdir()
            (root / "app" / "file").write_text("copied")
            os.unlink(root / "bin" / "ls")
        assert not os.listdir({str(target)!r})
        """
    )
    before = mountinfo()
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO)
    assert mountinfo() == before
    assert (rootfs.upper / "app" / "file").read_text() == "copied"
    assert (rootfs.upper / "bin" / "ls").lstat().st_rdev == os.makedev(0, 0)
    assert (lower / "bin" / "ls").is_symlink()


def test_many_long_lower_paths_still_mount(tmp_path: Path) -> None:
    base = make_busybox_rootfs(tmp_path / "base")
    layers = []
    for i in range(60):
        layer = tmp_path / ("layer-" + "x" * 80 + f"-{i:03d}")
        (layer / "etc").mkdir(parents=True)
        (layer / "etc" / f"l{i}").write_text(str(i))
        layers.append(layer)
    rootfs = fresh_rootfs(tmp_path, (*reversed(layers), base))
    assert sum(len(str(p)) for p in rootfs.lowers) > 4096
    out = tmp_path / "out"
    with out.open("wb") as f:
        assert run(sh(rootfs, "ls /etc | wc -l"), stdout=f.fileno()).exit_code == 0
    assert int(out.read_text()) == 60 + 4  # the layers' files, passwd, group, hosts, resolv.conf
