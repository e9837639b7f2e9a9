"""Pulls under pressure: endless manifests, a concurrent prune, a stored blob gone bad."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.integration.clihelp import REPO, Pybuild
from tests.integration.registry_server import FakeRegistry, _serving, fake_image

LAYER = os.urandom(200_000)
GIB = 1 << 30
_CHUNK = b"{" * (64 << 10)

# Runs pybuild as a child and reports its exit, output and peak RSS (ru_maxrss, KiB).
_MEASURE = """
import json, resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"code": done.returncode, "err": done.stderr, "peak_kib": peak}))
"""


@contextmanager
def _endless_manifest(declare_length: bool) -> Iterator[tuple[str, list[int]]]:
    """A registry whose manifest is 1 GiB of "{", streamed without holding it; yields
    its host and a list that receives how many bytes each manifest GET got out."""
    sent: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/v2/":
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
            if declare_length:
                self.send_header("Content-Length", str(GIB))
            self.end_headers()  # without a length the body ends when we close
            count = 0
            try:
                while count < GIB:
                    self.wfile.write(_CHUNK)
                    count += len(_CHUNK)
            except OSError:
                pass  # the client hung up, as it should
            sent.append(count)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    with _serving(httpd):
        yield f"127.0.0.1:{httpd.server_address[1]}", sent


def _pull_measured(store_root: Path, image: str) -> dict[str, Any]:
    env = {**os.environ, "PYBUILD_ROOT": str(store_root)}
    cli = [sys.executable, "-m", "builder.cli", "pull", image]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *cli],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_endless_manifest_is_refused_at_the_limit_with_bounded_memory(store_root: Path) -> None:
    for declare_length in (False, True):
        with _endless_manifest(declare_length) as (host, sent):
            result = _pull_measured(store_root, f"{host}/huge/app:1")
        err = " ".join(result["err"].split())
        assert result["code"] == 1, err
        assert "manifest larger than the 4 MiB limit" in err
        assert "Traceback" not in err
        assert result["peak_kib"] < 200 * 1024, result["peak_kib"]  # well under 200 MiB
        assert sent and max(sent) < GIB  # it stopped reading long before the end
    assert Pybuild(store_root)("images").out.strip().count("\n") == 0


def _first_blob(root: Path, timeout: float) -> None:
    blob_dir = root / "blobs" / "sha256"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if blob_dir.is_dir() and any(blob_dir.iterdir()):
            return
        time.sleep(0.02)
    raise AssertionError("the pull stored no blob in time")


def test_prune_during_a_slow_pull_waits_and_the_pulled_image_is_intact(
    store_root: Path, tmp_path: Path
) -> None:
    manifest, blobs = fake_image(LAYER, os.urandom(50_000))
    # Each blob GET waits 1.5 s: the config arrives first, the layers 1.5 s later.
    with FakeRegistry("slow/app", "1", manifest, blobs, delay=1.5).running() as server:
        env = {**os.environ, "PYBUILD_ROOT": str(store_root)}
        pull = subprocess.Popen(
            [sys.executable, "-m", "builder.cli", "pull", f"{server.host}/slow/app:1"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _first_blob(store_root, 30)  # the config is stored, untagged, the layers to come
        started = time.monotonic()
        pruned = Pybuild(store_root)("cache", "prune", "--all")
        waited = time.monotonic() - started
        _, err = pull.communicate(timeout=120)
    assert pull.returncode == 0, err
    assert pull.returncode is not None and waited > 0.5  # prune waited for the pull
    assert "Traceback" not in pruned.err
    cli = Pybuild(store_root)
    assert ": clean," in cli("cache", "verify").out
    cli("save", "--format", "oci", "-o", tmp_path / "app.tar", f"{server.host}/slow/app:1")


def test_pull_replaces_a_stored_layer_blob_whose_bytes_went_bad(store_root: Path) -> None:
    manifest, blobs = fake_image(LAYER)
    layer = next(d for d, data in blobs.items() if data == LAYER)
    with FakeRegistry("heal/app", "1", manifest, blobs).running() as server:
        cli = Pybuild(store_root)
        cli("pull", f"{server.host}/heal/app:1")
        path = store_root / "blobs" / "sha256" / layer.removeprefix("sha256:")
        data = bytearray(path.read_bytes())
        data[100] ^= 0xFF
        path.write_bytes(bytes(data))
        assert f"corrupt-blob {layer}" in cli("cache", "verify", ok=False).out
        again = cli("pull", f"{server.host}/heal/app:1")
    assert "Already exists" not in again.err
    assert path.read_bytes() == LAYER
    assert ": clean," in cli("cache", "verify").out
