"""COPY/ADD flags through the CLI: --chmod, --link, --parents, --exclude, heredocs,
--from=<image>, ADD of local archives and --unpack."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
from pathlib import Path

import pytest
import zstandard

from tests.integration.clihelp import Pybuild, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _rootfs(
    pybuild: Pybuild, tmp_path: Path, dockerfile: str, files: dict[str, str | bytes], *args: str
) -> Path:
    ctx = write_context(tmp_path / "ctx", files, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}", *args)
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_copy_chmod_symbolic_applies_to_each_entry(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"d/a": "a", "d/b": "b"}, "FROM busybox\nCOPY --chmod=u+x,g=r d /d\n"
    )
    os.chmod(ctx / "d" / "a", 0o664)
    os.chmod(ctx / "d" / "b", 0o600)
    os.chmod(ctx / "d", 0o750)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert _mode(out / "d" / "a") == 0o744
    assert _mode(out / "d" / "b") == 0o740
    # The destination dir is made like a missing parent (fsutil prepareTargetDir: 0755),
    # not copied from the source dir, so --chmod does not reach it.
    assert _mode(out / "d") == 0o755


def test_copy_chmod_invalid_fails_with_line(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "c", {"f": "x"}, "FROM busybox\nCOPY --chmod=u+q f /f\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0 and "Dockerfile:2" in result.err and "--chmod=u+q" in result.err


def test_copy_link_gives_same_filesystem_as_plain_copy(pybuild: Pybuild, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"src/a.txt": "a", "src/sub/b.txt": "b", "f": "f"}
    plain = _rootfs(pybuild, tmp_path / "p", "FROM busybox\nCOPY src /app/\nCOPY f /x/\n", files)
    linked = _rootfs(
        pybuild, tmp_path / "l", "FROM busybox\nCOPY --link src /app/\nCOPY --link f /x/\n", files
    )
    for rel in ("app/a.txt", "app/sub/b.txt", "x/f"):
        assert (plain / rel).read_text() == (linked / rel).read_text()
        assert _mode(plain / rel) == _mode(linked / rel)


def test_copy_parents_keeps_source_paths(pybuild: Pybuild, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"x/a.txt": "a", "y/z/b.txt": "b", "src/pkg/c.txt": "c"}
    out = _rootfs(
        pybuild,
        tmp_path,
        "FROM busybox\nCOPY --parents x/a.txt y/z/b.txt /dest/\n"
        "COPY --parents src/./pkg/c.txt /pivot/\n",
        files,
    )
    assert (out / "dest" / "x" / "a.txt").read_text() == "a"
    assert (out / "dest" / "y" / "z" / "b.txt").read_text() == "b"
    assert (out / "pivot" / "pkg" / "c.txt").read_text() == "c"


def test_copy_exclude_drops_matches(pybuild: Pybuild, tmp_path: Path) -> None:
    files: dict[str, str | bytes] = {"app/a.py": "1", "app/b.txt": "2", "app/sub/c.txt": "3"}
    out = _rootfs(
        pybuild, tmp_path, "FROM busybox\nCOPY --exclude=*.txt --exclude=sub app /app\n", files
    )
    assert sorted(p.name for p in (out / "app").iterdir()) == ["a.py"]


def test_copy_heredoc_expands_unless_quoted(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nARG NAME=world\n"
        'COPY <<EOF /hello\nhi "$NAME"\nEOF\n'
        "COPY <<'EOF' /raw\nhi $NAME\nEOF\n"
        "COPY --chmod=0755 <<run.sh <<other /bin2/\necho x\nrun.sh\ny\nother\n"
    )
    out = _rootfs(pybuild, tmp_path, dockerfile, {})
    assert (out / "hello").read_text() == 'hi "world"\n'
    assert _mode(out / "hello") == 0o644
    assert (out / "raw").read_text() == "hi $NAME\n"
    assert (out / "bin2" / "run.sh").read_text() == "echo x\n"
    assert (out / "bin2" / "other").read_text() == "y\n"
    assert _mode(out / "bin2" / "run.sh") == 0o755


def test_copy_from_local_image(pybuild: Pybuild, tmp_path: Path) -> None:
    src = write_context(tmp_path / "src", {}, "FROM busybox\nRUN echo from-image > /payload\n")
    pybuild.build(src, "-t", "payload:1")
    out = _rootfs(pybuild, tmp_path, "FROM scratch\nCOPY --from=payload:1 /payload /p\n", {})
    assert (out / "p").read_text() == "from-image\n"


def test_copy_from_missing_image_fails_clearly(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "c", {}, "FROM busybox\nCOPY --from=nope:1 /x /x\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code != 0 and "Dockerfile:2" in result.err and "nope" in result.err
    assert "Traceback" not in result.err


def _tar_bytes() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("pkg/hello.txt")
        data = b"hello from tar\n"
        info.size, info.mode, info.uid, info.gid = len(data), 0o640, 7, 8
        tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("pkg/link")
        link.type, link.linkname = tarfile.SYMTYPE, "hello.txt"
        tar.addfile(link)
    return buf.getvalue()


@pytest.mark.parametrize(
    "compress",
    [
        lambda b: b,
        gzip.compress,
        bz2.compress,
        lzma.compress,
        lambda b: zstandard.ZstdCompressor().compress(b),
    ],
    ids=["tar", "gzip", "bzip2", "xz", "zstd"],
)
def test_add_extracts_local_archives_by_content(
    pybuild: Pybuild, tmp_path: Path, compress: object
) -> None:
    data = compress(_tar_bytes())  # type: ignore[operator]
    out = _rootfs(pybuild, tmp_path, "FROM busybox\nADD archive.bin /opt/\n", {"archive.bin": data})
    hello = out / "opt" / "pkg" / "hello.txt"
    assert hello.read_text() == "hello from tar\n"
    assert _mode(hello) == 0o640
    assert (os.lstat(hello).st_uid, os.lstat(hello).st_gid) == (7, 8)
    assert os.readlink(out / "opt" / "pkg" / "link") == "hello.txt"


def test_add_unpack_false_copies_archive_as_file(pybuild: Pybuild, tmp_path: Path) -> None:
    data = gzip.compress(_tar_bytes())
    out = _rootfs(
        pybuild, tmp_path, "FROM busybox\nADD --unpack=false a.tgz /opt/\n", {"a.tgz": data}
    )
    assert (out / "opt" / "a.tgz").read_bytes() == data


def test_add_plain_gzip_file_is_copied_not_extracted(pybuild: Pybuild, tmp_path: Path) -> None:
    data = gzip.compress(b"not a tar")
    out = _rootfs(pybuild, tmp_path, "FROM busybox\nADD f.gz /opt/\n", {"f.gz": data})
    assert (out / "opt" / "f.gz").read_bytes() == data


def test_copy_never_extracts_archives(pybuild: Pybuild, tmp_path: Path) -> None:
    data = _tar_bytes()
    out = _rootfs(pybuild, tmp_path, "FROM busybox\nCOPY a.tar /opt/\n", {"a.tar": data})
    assert (out / "opt" / "a.tar").read_bytes() == data


def test_add_local_chown_chmod_link_exclude(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\n"
        "ADD --chown=7:8 --chmod=640 f.txt /a/f.txt\n"
        "ADD --link d /linked/\n"
        "ADD --exclude=*.log --exclude=skip d /excl/\n"
    )
    files: dict[str, str | bytes] = {"f.txt": "f", "d/keep.txt": "k", "d/x.log": "l", "d/skip": "s"}
    out = build_rootfs(pybuild, tmp_path, dockerfile, files)
    st = os.lstat(out / "a" / "f.txt")
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (7, 8, 0o640)
    assert sorted(p.name for p in (out / "linked").iterdir()) == ["keep.txt", "skip", "x.log"]
    assert sorted(p.name for p in (out / "excl").iterdir()) == ["keep.txt"]
