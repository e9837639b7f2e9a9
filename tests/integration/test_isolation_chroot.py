"""--isolation chroot on this machine: the same keys, layers and images as the namespace
sandbox, and RUN steps with the step's user, environment and working dir.

The job-container half (docker's default capabilities, where auto falls back to it) is
tests/integration/test_ci_job_container.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, processes_with, write_context

pytestmark = pytest.mark.requires_root

EPOCH = ("--source-date-epoch", "1700000000")
COPY_ONLY = """\
FROM busybox AS files
COPY a.txt /src/
WORKDIR /src/deep/er
FROM busybox
COPY --chmod=0640 a.txt b/ /app/
ADD c.tar /unpacked/
WORKDIR /app/work
COPY --from=files /src /from-files
"""


def _meta(path: Path) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(path.read_text())
    return body


def _copy_only_context(tmp_path: Path) -> Path:
    import io
    import tarfile

    data = io.BytesIO()
    with tarfile.open(fileobj=data, mode="w") as tar:
        info = tarfile.TarInfo("inside/file.txt")
        info.size, info.mtime = 3, 1600000000
        tar.addfile(info, io.BytesIO(b"in\n"))
    files: dict[str, str | bytes] = {"a.txt": "a\n", "b/x.txt": "x\n", "c.tar": data.getvalue()}
    return write_context(tmp_path / "ctx", files, COPY_ONLY)


def test_copy_add_workdir_only_image_is_identical_with_namespaces_and_chroot(
    pybuild: Pybuild, base_archive: Path, tmp_path: Path
) -> None:
    ctx = _copy_only_context(tmp_path)
    chroot_store = Pybuild(tmp_path / "chroot-store")
    chroot_store("load", "-i", base_archive)
    pybuild.build(ctx, *EPOCH, "--isolation", "namespaces", "--metadata-file", tmp_path / "ns")
    chroot_store.build(ctx, *EPOCH, "--isolation", "chroot", "--metadata-file", tmp_path / "ch")
    ns, ch = _meta(tmp_path / "ns"), _meta(tmp_path / "ch")
    # The stored step layers keep the real times of the dirs a step made (two builds
    # differ there whatever the isolation); the image's layers are clamped to the epoch.
    assert [s["key"] for s in ns["steps"]] == [s["key"] for s in ch["steps"]]
    assert ns["containerimage.config.digest"] == ch["containerimage.config.digest"]
    assert ns["containerimage.digest"] == ch["containerimage.digest"]


def test_the_isolation_is_not_part_of_any_key(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {"a.txt": "a\n"},
        "FROM busybox\nRUN echo one > /one\nCOPY a.txt /a.txt\nWORKDIR /w\nRUN true\n",
    )
    first = tmp_path / "first.json"
    pybuild.build(ctx, "--isolation", "namespaces", "--metadata-file", first)
    again = pybuild.build(ctx, "--isolation", "chroot", "--metadata-file", tmp_path / "again")
    assert "100%" in again.err
    assert _meta(tmp_path / "again")["image.digest"] == _meta(first)["image.digest"]


def test_a_run_that_changes_nothing_gives_the_same_empty_layer_as_the_sandbox(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    # The nodes, /etc/hosts and /etc/resolv.conf put in place of mounts stay out of it.
    ctx = write_context(tmp_path / "ctx", {}, "FROM busybox\nRUN cat /etc/hosts >/dev/null\n")
    pybuild.build(ctx, "--isolation", "namespaces", "--metadata-file", tmp_path / "ns")
    pybuild.build(ctx, "--no-cache", "--isolation", "chroot", "--metadata-file", tmp_path / "ch")
    ns, ch = _meta(tmp_path / "ns")["steps"], _meta(tmp_path / "ch")["steps"]
    assert not ch[0]["cached"]
    assert ch[0]["layer"] == ns[0]["layer"]
    assert ch[0]["layer_size"] < 200  # BuildKit's empty layer, compressed


def test_chroot_run_has_the_steps_user_env_workdir_devices_proc_and_read_only_sys(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    # As root on a host, /proc and /sys can be mounted (in the step's own mount namespace).
    dockerfile = """\
FROM busybox
RUN echo "app:x:1000:1000::/home/app:/bin/sh" >> /etc/passwd \\
 && echo "app:x:1000:" >> /etc/group && echo "extra:x:2000:app" >> /etc/group \\
 && { test -d /sys/kernel && ! touch /sys/kernel/x 2>/dev/null && echo sys-ro; } > /sys.txt
ENV GREETING=hi
WORKDIR /work
USER app
RUN { id; pwd; echo "$GREETING $HOME"; head -c 4 /dev/zero | wc -c; \\
      test -c /dev/null && echo null-ok; grep -q "^Uid:.1000" /proc/self/status && echo proc; \\
      env | sort; } > /tmp/out.txt
"""
    ctx = write_context(tmp_path / "ctx", {}, dockerfile)
    out = pybuild.rootfs(ctx, tmp_path / "root", "--isolation", "chroot")
    lines = (out / "tmp" / "out.txt").read_text().splitlines()
    assert lines[0] == "uid=1000(app) gid=1000(app) groups=1000(app),2000(extra)"
    assert lines[1:6] == ["/work", "hi /home/app", "4", "null-ok", "proc"]
    assert (out / "sys.txt").read_text() == "sys-ro\n"
    kernel = [out / "proc", out / "sys"]  # mount points only: nothing reached a layer
    assert [entry for d in kernel if d.exists() for entry in d.iterdir()] == []
    env = dict(line.split("=", 1) for line in lines[6:])
    assert env["GREETING"] == "hi"
    # Only the step's environment: nothing of pybuild's (a CI job's tokens live there).
    assert "PYBUILD_ROOT" not in env and "PYTHONPATH" not in env
    assert not (out / "dev" / "null").exists()  # no device node reached a layer


def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("run", ["RUN exit 3", 'RUN ["/nope"]', "USER nobody-here\nRUN true"])
def test_a_failing_step_reports_as_in_the_sandbox(
    pybuild: Pybuild, tmp_path: Path, run: str
) -> None:
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\n{run}\n")
    ns = pybuild.build(ctx, "--isolation", "namespaces", ok=False)
    ch = pybuild.build(ctx, "--isolation", "chroot", ok=False)
    assert (ch.code, _error_lines(ch.err)) == (ns.code, _error_lines(ns.err))
    assert ch.code != 0 and _error_lines(ch.err) and "Traceback" not in ch.err


def test_run_mounts_are_refused_with_a_reason(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx", {}, "FROM busybox\nRUN --mount=type=tmpfs,target=/t true\n"
    )
    result = pybuild.build(ctx, "--isolation", "chroot", ok=False)
    assert result.code != 0
    assert "--isolation chroot cannot give RUN --mount" in result.err
    assert "Traceback" not in result.err


def test_what_a_step_leaves_running_in_the_background_is_killed_when_it_ends(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    import random

    seconds = random.randrange(5000, 6000)  # names this test's sleep among all processes
    ctx = write_context(tmp_path / "ctx", {}, f"FROM busybox\nRUN sleep {seconds} & echo left\n")
    pybuild.build(ctx, "--isolation", "chroot")
    assert processes_with(f"sleep {seconds}") == []
