"""Helpers for CLI-level tests: run pybuild in a subprocess, write build contexts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    out: str
    err: str


class Pybuild:
    """Runs the real CLI in a subprocess against one store."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def __call__(
        self,
        *args: str | Path,
        ok: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> Result:
        full_env = {**os.environ, "PYBUILD_ROOT": str(self.root), **(env or {})}
        done = subprocess.run(
            [sys.executable, "-m", "builder.cli", *map(str, args)],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=REPO,
            input=input,
            timeout=timeout,
            check=False,
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if ok and done.returncode != 0:
            raise AssertionError(
                f"pybuild {args} failed ({done.returncode}):\n{done.stderr}\n{done.stdout}"
            )
        return result

    def build(self, context: Path, *args: str | Path, ok: bool = True) -> Result:
        return self(*args, "--progress", "plain", context, ok=ok)

    def inspect(self, image: str) -> dict[str, Any]:
        doc: list[dict[str, Any]] = json.loads(self("inspect", image).out)
        return doc[0]

    def config(self, image: str) -> dict[str, Any]:
        cfg: dict[str, Any] = self.inspect(image)["Config"]["config"]
        return cfg

    def rootfs(self, image_context: Path, dest: Path, *args: str) -> Path:
        self.build(image_context, "-o", f"type=local,dest={dest}", *args)
        return dest


def write_context(root: Path, files: dict[str, str | bytes], dockerfile: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "Dockerfile").write_text(dockerfile)
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return root


def build_rootfs(
    pybuild: Pybuild,
    tmp_path: Path,
    dockerfile: str,
    files: dict[str, str | bytes] | None = None,
    *args: str,
) -> Path:
    """Build ``dockerfile`` over ``files`` and export the image's root filesystem."""
    ctx = write_context(tmp_path / "ctx", files or {}, dockerfile)
    out = tmp_path / "rootfs"
    pybuild.build(ctx, "-t", "t:1", "-o", f"type=local,dest={out}", *args)
    return out


def build_error(pybuild: Pybuild, tmp_path: Path, dockerfile: str, *args: str) -> str:
    """Build ``dockerfile`` expecting a clean failure (exit 1, no traceback); its stderr."""
    result = pybuild.build(write_context(tmp_path / "ctx", {}, dockerfile), *args, ok=False)
    assert result.code == 1, result.err
    assert "Traceback" not in result.err
    return result.err


def assert_verified_clean(pybuild: Pybuild) -> None:
    """``pybuild cache verify`` exits 0 and finds the store clean."""
    out = pybuild("cache", "verify").out
    assert ": clean," in out, out


def steps_of(metadata_file: Path) -> Sequence[dict[str, Any]]:
    doc = json.loads(metadata_file.read_text())
    steps: Sequence[dict[str, Any]] = doc["steps"]
    return steps


def processes_with(marker: str) -> list[int]:
    """pids of the processes whose command line contains ``marker`` (e.g. a test's own
    ``sleep 5123``, to prove a step or container left nothing running)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if marker.encode() in cmdline:
                found.append(int(entry.name))
    return found
