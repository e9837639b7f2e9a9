"""RUN --mount=type=secret|ssh, RUN --network and RUN --security through the CLI."""

from __future__ import annotations

import hashlib
import json
import socket
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, Result, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _fail_build(pybuild: Pybuild, ctx: Path, *args: str | Path) -> Result:
    """A build expected to fail; stderr unwrapped (rich wraps at the terminal width)."""
    result = pybuild(*args, "--progress", "plain", ctx, ok=False, env={"COLUMNS": "2000"})
    return Result(result.code, result.out, " ".join(result.err.split()))


SECRET = b"s3cr3t-Value-9f8e7d"


def _archive_bytes(path: Path) -> bytes:
    """Every member of an (uncompressed) OCI archive, concatenated."""
    chunks = []
    with tarfile.open(path) as archive:
        for member in archive.getmembers():
            handle = archive.extractfile(member)
            if handle is not None:
                data = handle.read()
                chunks.append(data)
                if data[:262].find(b"ustar") >= 0 or member.name.startswith("blobs/"):
                    chunks.append(_inner_tar_bytes(data))
    return b"".join(chunks)


def _inner_tar_bytes(data: bytes) -> bytes:
    import io

    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as layer:
            return b"".join(
                (h.read() if (h := layer.extractfile(m)) else b"") + m.name.encode()
                for m in layer.getmembers()
            )
    except tarfile.TarError:
        return b""


def test_secret_file_is_readable_in_run_and_nowhere_else(pybuild: Pybuild, tmp_path: Path) -> None:
    secret = tmp_path / "token.txt"
    secret.write_bytes(SECRET)
    digest = hashlib.sha256(SECRET).hexdigest()  # the Dockerfile must not hold the secret
    dockerfile = (
        "FROM busybox\n"
        "RUN --mount=type=secret,id=tok "
        f"test \"$(sha256sum < /run/secrets/tok | cut -d' ' -f1)\" = {digest} "
        "&& stat -c '%a %u' /run/secrets/tok > /perm\n"
        "RUN --mount=type=secret,id=tok,env=TOKEN,required "
        f'test "$(printf %s "$TOKEN" | sha256sum | cut -d\' \' -f1)" = {digest} '
        "&& test ! -e /run/secrets/tok && touch /env-ok\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    archive, meta, out = tmp_path / "img.tar", tmp_path / "meta.json", tmp_path / "rootfs"
    result = pybuild.build(
        ctx,
        "-t",
        "sec:1",
        "--secret",
        f"id=tok,src={secret}",
        "--metadata-file",
        meta,
        "-o",
        f"type=oci,dest={archive},compression=uncompressed",
        "-o",
        f"type=local,dest={out}",
    )
    assert (out / "perm").read_text() == "400 0\n"
    assert (out / "env-ok").exists()
    assert not (out / "run" / "secrets").exists()
    everything = _archive_bytes(archive)
    assert b"env-ok" in everything  # the check below can see layer content
    assert SECRET not in everything
    assert SECRET.decode() not in meta.read_text()
    assert SECRET.decode() not in json.dumps(pybuild.inspect("sec:1"))
    assert SECRET.decode() not in result.out + result.err


def test_secret_from_env_var(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN --mount=type=secret,id=api,target=/k "
        'test "$(cat /k)" = from-env && touch /ok\n'
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild(
        "--progress",
        "plain",
        "--secret",
        "id=api,env=MY_API_KEY",
        "-o",
        f"type=local,dest={out}",
        ctx,
        env={"MY_API_KEY": "from-env"},
    )
    assert (out / "ok").exists()
    assert not (out / "k").exists()


def test_missing_required_secret_fails_with_line(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\nRUN true\nRUN --mount=type=secret,id=npmrc,required=true cat /x\n",
    )
    result = _fail_build(pybuild, ctx)
    assert result.code == 1
    assert f"{ctx / 'Dockerfile'}:3:" in result.err
    assert "secret 'npmrc' is required but was not given" in result.err
    assert "--secret id=npmrc" in result.err


def test_missing_optional_secret_is_skipped(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\nRUN --mount=type=secret,id=opt test ! -e /run/secrets/opt && touch /ok\n",
    )
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-o", f"type=local,dest={out}")
    assert (out / "ok").exists()


def test_bad_secret_flag_is_a_usage_error(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\n")
    result = _fail_build(
        pybuild,
        ctx,
        "--secret",
        "src=/etc/hostname",
    )
    assert result.code == 2
    assert "id= is required" in result.err


@pytest.fixture
def agent_socket(tmp_path: Path) -> Iterator[Path]:
    """A plain unix socket server standing in for ssh-agent."""
    path = tmp_path / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.sendall(b"agent-here\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join()
    server.close()


def test_ssh_mount_binds_the_agent_socket(
    pybuild: Pybuild, tmp_path: Path, agent_socket: Path
) -> None:
    # busybox nc has no -U, so the RUN checks the socket node and SSH_AUTH_SOCK.
    dockerfile = (
        "FROM busybox\nRUN --mount=type=ssh,required "
        'test -S "$SSH_AUTH_SOCK" && echo "$SSH_AUTH_SOCK" > /sock\n'
        "RUN --mount=type=ssh,id=work,target=/agent,uid=1000,mode=0660 "
        "stat -c '%u %a' /agent > /named\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(
        ctx,
        "--ssh",
        f"default={agent_socket}",
        "--ssh",
        f"work={agent_socket}",
        "-o",
        f"type=local,dest={out}",
    )
    assert (out / "sock").read_text() == "/run/buildkit/ssh_agent.0\n"
    assert (out / "named").read_text() == "1000 660\n"
    assert not (out / "run" / "buildkit").exists()
    assert not (out / "agent").exists()


def test_required_ssh_without_agent_fails(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN --mount=type=ssh,required true\n")
    result = _fail_build(pybuild, ctx)
    assert result.code == 1 and f"{ctx / 'Dockerfile'}:2:" in result.err
    assert "ssh agent 'default' is required" in result.err


def test_ssh_flag_refuses_a_key_file(pybuild: Pybuild, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    key.write_text("not a socket")
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\n")
    result = _fail_build(
        pybuild,
        ctx,
        "--ssh",
        f"default={key}",
    )
    assert result.code == 2 and "is not a unix socket" in result.err


def _interfaces(netdev: str) -> set[str]:
    return {line.split(":")[0].strip() for line in netdev.splitlines()[2:]}


def test_run_network_overrides_the_build_network(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN --network=none cat /proc/net/dev > /none\n"
        "RUN --network=host cat /proc/net/dev > /host\n"
        "RUN --network=default cat /proc/net/dev > /default\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(
        ctx, "--network", "none", "--allow", "network.host", "-o", f"type=local,dest={out}"
    )
    assert _interfaces((out / "none").read_text()) == {"lo"}
    assert _interfaces((out / "default").read_text()) == {"lo"}
    host = _interfaces(Path("/proc/net/dev").read_text())
    assert _interfaces((out / "host").read_text()) == host


def test_security_insecure_needs_allow(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nRUN --security=sandbox grep CapEff /proc/self/status > /sandboxed\n"
        "RUN --security=insecure grep CapEff /proc/self/status > /insecure\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    refused = _fail_build(pybuild, ctx)
    assert refused.code == 1 and f"{ctx / 'Dockerfile'}:3:" in refused.err
    assert "--allow security.insecure" in refused.err
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "--allow", "security.insecure", "-o", f"type=local,dest={out}")
    sandboxed = int((out / "sandboxed").read_text().split()[1], 16)
    insecure = int((out / "insecure").read_text().split()[1], 16)
    assert insecure > sandboxed  # every capability, not docker's default set
    assert insecure & (1 << 21)  # CAP_SYS_ADMIN
