"""Cache keys are stable across releases: a store built by an earlier pybuild still hits.

``fixtures/golden_keys.json`` holds the key of every step of one build that uses each
kind of step (COPY from the context, a stage and a heredoc, ADD of an archive, --parents,
--chmod, WORKDIR, RUN with bind, cache and tmpfs mounts, heredoc scripts, ARG/ENV). It was
written by the pybuild before the builder/ redesign. A change that moves code must leave
every key as it was; a change that means to change keys bumps ``cache.keys.KEY_VERSION``
and rewrites the file with ``PYBUILD_WRITE_GOLDEN_KEYS=1``, saying why in its commit.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, steps_of, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

GOLDEN = REPO / "fixtures" / "golden_keys.json"
SCRATCH_STEPS = 6  # the steps of the first stage, whose keys depend on no base image

DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM scratch AS files
COPY a.txt /a.txt
COPY --chmod=600 dir/ /dir/
ADD archive.tar /unpacked/
COPY <<EOF /heredoc.txt
hello from a heredoc
EOF
WORKDIR /w/x
ENV X=1
COPY --parents dir/sub/b.txt /p/

FROM busybox AS run
ARG V=2
RUN echo "$V" > /v
RUN --mount=type=bind,source=dir,target=/m cat /m/sub/b.txt > /copied
RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t echo cached > /c/x
COPY --from=files /a.txt /dir/ /from-files/
WORKDIR /app
USER 1000:1000
RUN <<EOF
echo heredoc > /tmp/h
EOF
COPY --chown=1000:1000 a.txt .
"""


def _archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("t/one", b"1\n"), ("t/two", b"22\n")):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _context(tmp_path: Path) -> Path:
    files: dict[str, str | bytes] = {
        "a.txt": "a\n",
        "dir/c.txt": "c\n",
        "dir/sub/b.txt": "b\n",
        "archive.tar": _archive(),
    }
    ctx = write_context(tmp_path / "ctx", files, DOCKERFILE)
    for path in sorted(ctx.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
        os.utime(path, (1_700_000_000, 1_700_000_000), follow_symlinks=False)
    return ctx


def _keys(pybuild: Pybuild, tmp_path: Path) -> dict[str, object]:
    meta = tmp_path / "meta.json"
    pybuild.build(_context(tmp_path), "-t", "golden:1", "--metadata-file", meta)
    base = pybuild.inspect("busybox:latest")
    return {
        "base": base.get("Digest") or base.get("Id"),
        "steps": [[s["instruction"], s["key"]] for s in steps_of(meta)],
    }


def test_step_keys_match_the_keys_an_earlier_pybuild_computed(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    got = _keys(pybuild, tmp_path)
    if os.environ.get("PYBUILD_WRITE_GOLDEN_KEYS") == "1":
        GOLDEN.write_text(json.dumps(got, indent=1) + "\n")
    want = json.loads(GOLDEN.read_text())
    assert got["steps"][:SCRATCH_STEPS] == want["steps"][:SCRATCH_STEPS]  # FROM scratch
    if got["base"] != want["base"]:
        pytest.skip(
            f"the busybox base built by fixtures/make_base.py is {got['base']}, not "
            f"{want['base']} (Debian's busybox-static changed); the keys of steps over "
            "it cannot be compared"
        )
    assert got["steps"] == want["steps"]
