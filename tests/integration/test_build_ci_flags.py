"""The ``docker buildx build`` flags CI scripts pass, each checked by its effect."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest

from cache.oci import host_platform
from tests.integration.clihelp import REPO, Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _rootfs(pybuild: Pybuild, ctx: Path, dest: Path, *args: str) -> Path:
    pybuild.build(ctx, "-o", f"type=local,dest={dest}", *args)
    return dest


def _steps(pybuild: Pybuild, ctx: Path, meta: Path, *args: str) -> list[dict[str, Any]]:
    pybuild.build(ctx, "--metadata-file", meta, *args)
    steps: list[dict[str, Any]] = json.loads(meta.read_text())["steps"]
    return steps


def _raw(
    pybuild: Pybuild, *args: str | Path, stdin: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYBUILD_ROOT": str(pybuild.root)}
    return subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)],
        input=stdin,
        capture_output=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=False,
    )


def test_label_sets_image_labels_over_the_dockerfile_s(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nLABEL team=a keep=yes\n")
    pybuild.build(ctx, "-t", "lab:1", "--label", "team=b", "--label", "ci.job=42")
    labels = pybuild.config("lab:1")["Labels"]
    assert labels == {"team": "b", "keep": "yes", "ci.job": "42"}


def test_iidfile_and_q_give_the_config_digest_as_the_image_id(
    pybuild: Pybuild, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nENV A=1\n")
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1")  # every build below makes the same image
    iid = tmp_path / "iid"
    quiet = pybuild.build(ctx, "-q", "-t", "ids:1", "--iidfile", iid).out.strip()
    doc = pybuild.inspect("ids:1")
    config_digest = doc["Manifest"]["config"]["digest"]
    assert iid.read_text() == quiet == config_digest == doc["Id"]
    assert doc["Digest"] != config_digest  # the manifest digest stays in Digest
    loud = pybuild.build(ctx, "-t", "ids:1")
    assert f"image {config_digest} tagged" in loud.err
    assert pybuild.inspect(config_digest[:19])["Digest"] == doc["Digest"]  # ID prefix finds it
    meta = tmp_path / "m.json"
    pybuild.build(ctx, "--metadata-file", meta)
    assert json.loads(meta.read_text())["containerimage.digest"] == doc["Digest"]


def test_images_shows_the_image_id_and_a_human_age(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nENV A=1\n")
    pybuild.build(ctx, "-t", "old:1", "--source-date-epoch", "0")
    row = next(line for line in pybuild("images").out.splitlines() if line.startswith("old "))
    image_id = pybuild.inspect("old:1")["Id"].removeprefix("sha256:")[:12]
    assert image_id in row.split()
    assert "56 years ago" in row or "57 years ago" in row


def test_platform_takes_the_host_s_and_a_base_for_another_must_exist(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nENV A=1\n")
    host = host_platform()
    pybuild.build(ctx, "--platform", f"{host.os}/{host.architecture}", "--load", "-t", "p:1")
    assert pybuild.inspect("p:1")["Config"]["architecture"] == host.architecture
    other = "linux/s390x" if host.architecture != "s390x" else "linux/amd64"
    # A local image only the host's platform has (no registry has its name): none for
    # the other platform, said clearly, rather than the host's image labelled as it.
    pybuild("tag", "busybox", "pybuild-local-only:1")
    local = write_context(tmp_path / "local", {}, "FROM pybuild-local-only:1\nENV A=1\n")
    refused = pybuild.build(local, "--platform", other, ok=False)
    assert refused.code == 1 and "Traceback" not in refused.err
    assert f"not in the local store for {other}" in " ".join(refused.err.split())
    bad = pybuild.build(ctx, "--platform", "linux/amd64,,linux/arm64", ok=False)
    assert bad.code == 2 and "an empty entry" in bad.err


def test_add_host_reaches_run_s_etc_hosts_and_its_key(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN cat /etc/hosts > /hosts\n")
    out = _rootfs(pybuild, ctx, tmp_path / "a", "--add-host", "db.internal:10.1.2.3")
    assert "10.1.2.3\tdb.internal" in (out / "hosts").read_text()
    steps = _steps(pybuild, ctx, tmp_path / "m.json", "--add-host", "db.internal:10.9.9.9")
    assert steps[-1]["cached"] is False  # another host list is another RUN, as in BuildKit


def test_network_default_is_a_private_network_with_an_interface_of_its_own(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\nRUN readlink /proc/self/ns/net > /netns && ls /sys/class/net > /nets\n",
    )
    ours = os.readlink("/proc/self/ns/net")
    out = _rootfs(pybuild, ctx, tmp_path / "d", "--network=default")
    assert (out / "netns").read_text().strip() != ours
    nets = (out / "nets").read_text().split()
    assert "lo" in nets
    assert len(nets) == 2  # loopback and pasta's interface, none of the host's others
    host = _rootfs(pybuild, ctx, tmp_path / "h", "--network=host")
    assert (host / "netns").read_text().strip() == ours
    assert (host / "nets").read_text().split() == sorted(os.listdir("/sys/class/net"))
    none = _rootfs(pybuild, ctx, tmp_path / "n", "--network=none")
    assert (none / "nets").read_text().split() == ["lo"]


def test_shm_size_and_ulimit_apply_to_run(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\nRUN grep ' /dev/shm ' /proc/mounts > /shm && "
        "ulimit -n > /soft && ulimit -Hn > /hard\n",
    )
    out = _rootfs(pybuild, ctx, tmp_path / "o", "--shm-size", "128m", "--ulimit", "nofile=512:1024")
    assert "size=131072k" in (out / "shm").read_text()
    assert (out / "soft").read_text().strip() == "512"
    assert (out / "hard").read_text().strip() == "1024"
    default = _rootfs(pybuild, ctx, tmp_path / "d")
    assert "size=65536k" in (default / "shm").read_text()
    bad = pybuild.build(ctx, "--ulimit", "nofiles=1", ok=False)
    assert bad.code == 2 and "NAME is one of" in bad.err


def test_no_cache_filter_reruns_only_that_stage(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox AS deps\nRUN echo deps > /deps\n"
        "FROM busybox AS app\nCOPY --from=deps /deps /deps\nRUN echo app > /app\n",
    )
    pybuild.build(ctx)
    steps = _steps(pybuild, ctx, tmp_path / "m.json", "--no-cache-filter", "app")
    by_instruction = {s["instruction"]: s for s in steps}
    assert by_instruction["RUN echo deps > /deps"]["cached"] is True
    for instruction in ("COPY --from=deps /deps /deps", "RUN echo app > /app"):
        assert by_instruction[instruction]["cached"] is False
        assert by_instruction[instruction]["reason"] == "--no-cache-filter"
    typo = pybuild.build(ctx, "--no-cache-filter", "ap", ok=False)
    assert typo.code != 0 and "no stage named ap" in typo.err


def test_build_context_dir_image_and_oci_layout(pybuild: Pybuild, tmp_path: Path) -> None:
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "data.txt").write_text("from a named context\n")
    pybuild.build(
        write_context(tmp_path / "b", {}, "FROM busybox\nRUN echo v > /v\n"), "-t", "lay:1"
    )
    archive = tmp_path / "lay.tar"
    pybuild("save", "--format", "oci", "-o", archive, "lay:1")
    layout = tmp_path / "layout"
    with tarfile.open(archive) as tar:
        tar.extractall(layout, filter="tar")
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM base\nCOPY --from=extra /data.txt /data.txt\nCOPY --from=laid /v /v\n",
    )
    out = _rootfs(
        pybuild, ctx, tmp_path / "out",
        "--build-context", f"extra={extra}",
        "--build-context", "base=docker-image://busybox:latest",
        "--build-context", f"laid=oci-layout://{layout}:lay:1",
    )  # fmt: skip
    assert (out / "data.txt").read_text() == "from a named context\n"
    assert (out / "v").read_text() == "v\n"
    assert (out / "bin" / "busybox").exists()
    bad = pybuild.build(ctx, "--build-context", "extra=git://x", ok=False)
    assert bad.code == 2 and "not supported" in bad.err


def test_progress_quiet_and_rawjson(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN echo hi\n")
    quiet = pybuild("build", "--progress=quiet", ctx)
    assert quiet.out.strip().startswith("sha256:") and "#1" not in quiet.err
    raw = pybuild("build", "--progress=rawjson", "--no-cache", ctx)
    docs = [json.loads(line) for line in raw.err.splitlines() if line.startswith("{")]
    vertexes = [v for d in docs for v in d.get("vertexes", [])]
    assert any(v.get("completed") and v["cached"] is False for v in vertexes)
    assert any(d.get("logs") for d in docs)


def test_dockerfile_and_context_from_stdin(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {"f.txt": "file\n"}, "FROM scratch\n")
    dockerfile = b"FROM busybox\nCOPY f.txt /f.txt\n"
    done = _raw(
        pybuild, "build", "--progress", "plain", "-f", "-", "-t", "in:1", ctx, stdin=dockerfile
    )
    assert done.returncode == 0, done.stderr.decode()
    assert pybuild.inspect("in:1")["Manifest"]["layers"]  # busybox + the COPY
    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        for name, content in (
            ("Dockerfile", b"FROM busybox\nCOPY g.txt /g.txt\n"),
            ("g.txt", b"g\n"),
        ):
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    out = tmp_path / "out"
    done = _raw(
        pybuild,
        "build",
        "--progress",
        "plain",
        "-o",
        f"type=local,dest={out}",
        "-",
        stdin=data.getvalue(),
    )
    assert done.returncode == 0, done.stderr.decode()
    assert (out / "g.txt").read_text() == "g\n"
    lone = _raw(
        pybuild,
        "build",
        "--progress",
        "plain",
        "-t",
        "lone:1",
        "-",
        stdin=b"FROM busybox\nENV X=1\n",
    )
    assert lone.returncode == 0, lone.stderr.decode()
    assert "X=1" in pybuild.config("lone:1")["Env"]


def test_annotation_goes_on_the_manifest(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nENV A=1\n")
    pybuild.build(
        ctx, "-t", "ann:1",
        "--annotation", "org.opencontainers.image.source=https://example.com/repo",
        "--annotation", "manifest:com.example.k=v",
    )  # fmt: skip
    annotations = pybuild.inspect("ann:1")["Manifest"]["annotations"]
    assert annotations == {
        "org.opencontainers.image.source": "https://example.com/repo",
        "com.example.k": "v",
    }
    refused = pybuild.build(ctx, "--annotation", "index:k=v", ok=False)
    assert refused.code == 2 and "index annotations are not supported" in refused.err
