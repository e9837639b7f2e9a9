"""Hostile and unlucky inputs through the CLI: each ends in a clear error, never a traceback.

NUL bytes in tar names (load, pull, ADD, a context tar on stdin) and in Dockerfile
paths, a malformed ADD URL, numbers beyond what the kernel, Go or docker take. Each
test checks the exit code, the message (with the Dockerfile line where there is one)
and that neither a traceback nor the CLI's "internal error" backstop shows.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from tests.archive_samples import REF, Layout, docker_classic
from tests.integration.clihelp import REPO, Pybuild, Result, write_context
from tests.integration.registry_server import FakeRegistry, fake_image


def _clean_failure(result: Result, *needles: str) -> str:
    assert result.code != 0, result.out
    assert "Traceback" not in result.err and "internal error" not in result.err, result.err
    for needle in needles:
        assert needle in result.err, result.err
    return result.err


def _layer(name: str, link: str | None = None) -> bytes:
    """A layer tar with a good file and one entry whose PAX path (or linkpath) is given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        ok = tarfile.TarInfo("ok")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"hi"))
        info = tarfile.TarInfo("placeholder")
        info.pax_headers = {"path": name}
        if link is None:
            info.size = 1
            tar.addfile(info, io.BytesIO(b"x"))
        else:
            info.type, info.linkname = tarfile.SYMTYPE, "placeholder"
            info.pax_headers["linkpath"] = link
            tar.addfile(info)
    return buf.getvalue()


def _build(pybuild: Pybuild, tmp_path: Path, dockerfile: str, *args: str) -> Result:
    ctx = write_context(tmp_path / "ctx", {"f": "data\n"}, dockerfile)
    return pybuild.build(ctx, *args, ok=False)


@pytest.mark.parametrize("fmt", ["docker", "oci"])
@pytest.mark.parametrize(
    ("layer", "what"),
    [(_layer("a\0b"), "its name holds a NUL byte"), (_layer("l", "x\0y"), "link name holds")],
    ids=["name", "linkname"],
)
def test_a_loaded_layer_with_a_nul_in_a_tar_name_is_refused_when_unpacked(
    pybuild: Pybuild, tmp_path: Path, fmt: str, layer: bytes, what: str
) -> None:
    archive = tmp_path / "nul.tar"
    if fmt == "docker":
        archive.write_bytes(docker_classic([(["nul:1"], [layer])]))
    else:
        layout = Layout()
        layout.tag(layout.image([layer]), {REF: "nul:1"})
        archive.write_bytes(layout.tar())
    pybuild("load", "-i", archive)
    err = _clean_failure(pybuild("run", "nul:1", "true", ok=False), what, "layer sha256:")
    assert "malformed or hostile" in err
    ctx = write_context(tmp_path / "ctx", {}, "FROM nul:1\nRUN true\n")
    _clean_failure(pybuild.build(ctx, ok=False), what)


def test_a_pulled_layer_with_a_nul_in_a_tar_name_is_refused_when_unpacked(
    pybuild: Pybuild,
) -> None:
    manifest, blobs = fake_image(_layer("a\0b"))
    with FakeRegistry("bad/app", "1", manifest, blobs).running() as server:
        pybuild("pull", f"{server.host}/bad/app:1")
        result = pybuild("run", f"{server.host}/bad/app:1", "true", ok=False)
    _clean_failure(result, "'a\\x00b': its name holds a NUL byte")


def test_add_of_a_local_archive_with_a_nul_in_a_name_is_refused_with_its_line(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx", {"a.tar": _layer("a\0b")}, "FROM busybox\nADD a.tar /x/\n"
    )
    result = pybuild.build(ctx, ok=False)
    _clean_failure(result, "Dockerfile:2: a.tar: tar entry 'a\\x00b': its name holds a NUL byte")


def test_a_context_tar_on_stdin_with_a_nul_in_a_name_is_refused(pybuild: Pybuild) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(b"FROM busybox\n")
        tar.addfile(info, io.BytesIO(b"FROM busybox\n"))
        bad = tarfile.TarInfo("x")
        bad.pax_headers = {"path": "a\0b"}
        tar.addfile(bad)
    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", "--root", str(pybuild.root), "build", "-"],
        input=buf.getvalue(),
        capture_output=True,
        cwd=REPO,
        timeout=120,
        check=False,
    )
    result = Result(done.returncode, done.stdout.decode(), done.stderr.decode())
    _clean_failure(result, "the context tar on stdin: tar entry 'a\\x00b'")


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("COPY f /a\0b", "COPY: the destination '/a\\x00b'"),
        ("COPY f\0x /a", "COPY: the source 'f\\x00x'"),
        ("ADD f\0x /a", "ADD: the source 'f\\x00x'"),
        ("WORKDIR /a\0b", "WORKDIR: the working directory '/a\\x00b'"),
        ("RUN --mount=type=bind,target=/a\0b true", "RUN: the --mount=type=bind target"),
        ("RUN --mount=type=bind,source=a\0b,target=/m true", "RUN: the --mount=type=bind source"),
        ("RUN --mount=type=cache,target=/a\0b true", "RUN: the --mount=type=cache target"),
        ("ARG D=/a\0b\nWORKDIR $D", "WORKDIR: the working directory '/a\\x00b'"),
    ],
    ids=["copy-dest", "copy-src", "add-src", "workdir", "bind-target", "bind-source",
         "cache-target", "workdir-from-arg"],
)  # fmt: skip
def test_a_nul_in_a_dockerfile_path_is_refused_with_its_line(
    pybuild: Pybuild, tmp_path: Path, line: str, what: str
) -> None:
    result = _build(pybuild, tmp_path, f"FROM busybox\n{line}\n")
    last = 2 + line.count("\n")
    err = _clean_failure(result, f"Dockerfile:{last}: {what}", "holds a NUL byte")
    assert "hint: remove the \\0" in err


def test_a_malformed_add_url_is_refused_with_its_line(pybuild: Pybuild, tmp_path: Path) -> None:
    result = _build(pybuild, tmp_path, "FROM busybox\nADD http://[::1 /x\n")
    _clean_failure(result, "Dockerfile:2: invalid URL 'http://[::1'")
    result = _build(pybuild, tmp_path, "FROM busybox\nADD http://h:99999/x /x\n")
    _clean_failure(result, "Dockerfile:2: invalid URL 'http://h:99999/x'", "out of range")


@pytest.mark.parametrize(
    ("mount", "message"),
    [
        ("type=cache,target=/c,uid=99999999999999999999", "mode, uid or gid out of range"),
        ("type=cache,target=/c,gid=4294967296", "mode, uid or gid out of range"),
        ("type=cache,target=/c,mode=077777777777777", "mode, uid or gid out of range"),
        ("type=tmpfs,target=/c,size=99999999999999999999999", "invalid value for size"),
    ],
    ids=["uid", "gid", "mode", "tmpfs-size"],
)
def test_a_mount_number_out_of_range_is_refused_with_its_line(
    pybuild: Pybuild, tmp_path: Path, mount: str, message: str
) -> None:
    result = _build(pybuild, tmp_path, f"FROM busybox\nRUN --mount={mount} true\n")
    _clean_failure(result, "Dockerfile:2: ", message)


def test_the_largest_cache_mount_owner_still_builds(pybuild: Pybuild, tmp_path: Path) -> None:
    line = "RUN --mount=type=cache,target=/c,uid=4294967294,gid=0 stat -c %u /c > /u"
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\n{line}\n")
    out = pybuild.rootfs(ctx, tmp_path / "out")
    assert (out / "u").read_text() == "4294967294\n"


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (("--source-date-epoch", "99999999999999999"), {}),
        (("--source-date-epoch", "-1"), {}),
        ((), {"SOURCE_DATE_EPOCH": "999999999999999999999"}),
        (("--build-arg", "SOURCE_DATE_EPOCH=253402300800"), {}),
    ],
    ids=["flag-huge", "flag-negative", "env-huge", "build-arg-year-10000"],
)
def test_a_source_date_epoch_out_of_range_is_refused(
    pybuild: Pybuild, tmp_path: Path, args: tuple[str, ...], env: dict[str, str]
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN true\n")
    result = pybuild(*args, "--progress", "plain", ctx, ok=False, env=env)
    _clean_failure(result, "invalid SOURCE_DATE_EPOCH", "out of range", "253402300799")


def test_the_last_second_of_year_9999_is_a_valid_epoch(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nLABEL a=b\n")
    pybuild.build(ctx, "-t", "e:1", "--source-date-epoch", "253402300799")
    assert pybuild.inspect("e:1")["Config"]["created"].startswith("9999-12-31T23:59:59")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("HEALTHCHECK --interval=2562048h CMD true", 'time: invalid duration "2562048h"'),
        ("HEALTHCHECK --timeout=9223372036854775808ns CMD true", "time: invalid duration"),
        ("STOPSIGNAL 99999999999999999999", "invalid signal: 99999999999999999999"),
        ("STOPSIGNAL 65", "invalid signal: 65"),
        ("STOPSIGNAL SIGNOPE", "invalid signal: SIGNOPE"),
    ],
    ids=["interval", "timeout", "signal-huge", "signal-65", "signal-name"],
)
def test_metadata_values_docker_refuses_are_refused_with_their_line(
    pybuild: Pybuild, tmp_path: Path, line: str, message: str
) -> None:
    _clean_failure(_build(pybuild, tmp_path, f"FROM busybox\n{line}\n"), f"Dockerfile:2: {message}")


def test_the_largest_go_duration_and_named_signals_build(pybuild: Pybuild, tmp_path: Path) -> None:
    dockerfile = (
        "FROM busybox\nHEALTHCHECK --interval=2562047h47m16.854775807s CMD true\n"
        "STOPSIGNAL rtmin+3\n"
    )
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    pybuild.build(ctx, "-t", "h:1")
    config = pybuild.config("h:1")
    assert config["Healthcheck"]["Interval"] == 2**63 - 1
    assert config["StopSignal"] == "rtmin+3"


def test_image_names_docker_refuses_are_refused(pybuild: Pybuild) -> None:
    # docker.io/library/NAME: the 255 characters count "library/" (distribution/reference)
    long_name = "a" * 248
    _clean_failure(pybuild("tag", "busybox", long_name, ok=False), "not be more than 255")
    pybuild("tag", "busybox", "a" * 247)
    _clean_failure(pybuild("tag", "busybox", "localhost:65536/x", ok=False), "port 65536")
    _clean_failure(pybuild("pull", "localhost:99999/x:1", ok=False), "port 99999 is out of range")


def test_resource_flags_below_dockers_minimum_are_refused(pybuild: Pybuild, tmp_path: Path) -> None:
    _clean_failure(pybuild("run", "-m", "1", "busybox", "true", ok=False), "6MB")
    _clean_failure(pybuild("run", "-m", "9" * 400, "busybox", "true", ok=False), "too large")
    _clean_failure(pybuild("run", "--cpus", "0.001", "busybox", "true", ok=False), "0.01")
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\n")
    _clean_failure(pybuild.build(ctx, "--jobs", "0", ok=False), "--jobs 0")


def test_invalid_utf8_in_a_dockerfile_becomes_the_replacement_character(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "")
    (ctx / "Dockerfile").write_bytes(b'FROM busybox\nLABEL x="a\xffb"\nRUN printf "\xfe" > /f\n')
    out = pybuild.rootfs(ctx, tmp_path / "out", "-t", "u:1")
    assert (out / "f").read_bytes() == "\ufffd".encode()
    labels = json.dumps(pybuild.config("u:1")["Labels"])
    assert labels == json.dumps({"x": "a\ufffdb"})
