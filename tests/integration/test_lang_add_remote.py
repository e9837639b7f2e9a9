"""ADD of http(s) URLs through the CLI, against a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import os
import socket
import stat
import tarfile
import threading
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

LAST_MODIFIED = 1_600_000_000  # 2020-09-13


class Files:
    """What the server serves: path -> (body, headers); it counts GETs per path."""

    def __init__(self) -> None:
        self.bodies: dict[str, tuple[bytes, dict[str, str]]] = {}
        self.gets: dict[str, int] = {}


def _handler(files: Files) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.partition("?")[0]
            files.gets[path] = files.gets.get(path, 0) + 1
            found = files.bodies.get(path)
            if found is None:
                self.send_error(404)
                return
            body, headers = found
            self.send_response(200)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def server() -> Iterator[tuple[str, Files]]:
    files = Files()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(files))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", files
    finally:
        httpd.shutdown()
        httpd.server_close()


def _serve(files: Files, path: str, body: bytes, mtime: int | None = LAST_MODIFIED) -> None:
    headers = {"Last-Modified": formatdate(mtime, usegmt=True)} if mtime is not None else {}
    files.bodies[path] = (body, headers)


def _rootfs(pybuild: Pybuild, tmp_path: Path, dockerfile: str) -> Path:
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    return out


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_add_url_into_dir_names_file_after_url_with_mode_0600_and_last_modified(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/dl/tool.sh", b"echo hi\n")
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {base}/dl/tool.sh?x=1 /opt/\n")
    got = out / "opt" / "tool.sh"
    assert got.read_bytes() == b"echo hi\n"
    assert _mode(got) == 0o600
    assert os.lstat(got).st_uid == 0
    assert int(os.lstat(got).st_mtime) == LAST_MODIFIED


def test_add_url_without_last_modified_gets_epoch_mtime(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/f.txt", b"x", mtime=None)
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {base}/f.txt /f.txt\n")
    assert int(os.lstat(out / "f.txt").st_mtime) == 0


def test_add_url_tar_is_not_extracted_and_lands_at_dest_name(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo("inside.txt")
        tar.addfile(info, io.BytesIO(b""))
    _serve(files, "/a.tar.gz", buf.getvalue())
    out = _rootfs(pybuild, tmp_path, f"FROM busybox\nADD {base}/a.tar.gz /data/archive.tgz\n")
    assert (out / "data" / "archive.tgz").read_bytes() == buf.getvalue()
    assert not (out / "data" / "inside.txt").exists()


def test_add_url_chmod_and_chown_apply(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/bin/app", b"#!/bin/sh\n")
    out = _rootfs(
        pybuild, tmp_path, f"FROM busybox\nADD --chmod=755 --chown=7:8 {base}/bin/app /\n"
    )
    st = os.lstat(out / "app")
    assert (_mode(out / "app"), st.st_uid, st.st_gid) == (0o755, 7, 8)


def test_add_url_with_matching_checksum_builds_and_rebuild_is_cached_without_download(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/f", b"pinned")
    digest = hashlib.sha256(b"pinned").hexdigest()
    ctx = write_context(
        tmp_path / "ctx", {}, f"FROM busybox\nADD --checksum=sha256:{digest} {base}/f /f\n"
    )
    pybuild.build(ctx)
    assert files.gets["/f"] == 1
    again = pybuild.build(ctx)
    assert "CACHED" in again.out + again.err
    assert files.gets["/f"] == 1  # the key came from the checksum: no request


def test_add_url_checksum_mismatch_fails_with_location(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/f", b"actual")
    wrong = "sha256:" + "0" * 64
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nADD --checksum={wrong} {base}/f /f\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code == 1
    assert "Dockerfile:2" in result.err and "checksum mismatch" in result.err
    assert "Traceback" not in result.err


def test_add_url_malformed_checksum_fails_with_location(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM busybox\nADD --checksum=md5:abc http://127.0.0.1:9/f /f\n"
    )
    result = pybuild.build(ctx, ok=False)
    assert "Dockerfile:2" in result.err and "invalid --checksum" in result.err


def test_add_url_changed_remote_content_misses_cache_unchanged_hits(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/v", b"one")
    dockerfile = f"FROM busybox\nADD {base}/v /v\nRUN cat /v > /copy\n"
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    pybuild.build(ctx)
    same = pybuild.build(ctx)
    assert "MISS" not in same.out + same.err
    _serve(files, "/v", b"two")
    out = tmp_path / "rootfs"
    changed = pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert "MISS" in changed.out + changed.err
    assert (out / "copy").read_bytes() == b"two"


def test_add_url_not_found_fails_with_location_and_status(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, _ = server
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\n\nADD {base}/missing /m\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code == 1
    assert "Dockerfile:3" in result.err and "404" in result.err
    assert "Traceback" not in result.err


def test_add_url_connection_refused_fails_with_location(pybuild: Pybuild, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nADD http://127.0.0.1:{port}/f /f\n")
    result = pybuild.build(ctx, ok=False)
    assert result.code == 1
    assert "Dockerfile:2" in result.err and "cannot download" in result.err
    assert "Traceback" not in result.err


def test_add_url_and_local_file_together_need_dir_dest(
    pybuild: Pybuild, tmp_path: Path, server: tuple[str, Files]
) -> None:
    base, files = server
    _serve(files, "/r.txt", b"remote")
    ctx = write_context(
        tmp_path / "ctx", {"l.txt": "local"}, f"FROM busybox\nADD {base}/r.txt l.txt /d/\n"
    )
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert (out / "d" / "r.txt").read_bytes() == b"remote"
    assert (out / "d" / "l.txt").read_text() == "local"
