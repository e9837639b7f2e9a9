"""What a push sends to Debian's docker-registry, as skopeo, umoci and docker read it.

A docker-schema2 base gives OCI layer types in the pushed image, ``-o type=registry``
needs a name, zstd layers go up, come down and build on, a default push from a zstd store
sends gzip, and big blobs go up in chunks; ``pybuild cache verify`` stays clean after each.
"""

from __future__ import annotations

import math
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from cache.distribution.client import RegistryClient, RegistryOptions
from cache.distribution.reference import parse_reference
from cache.oci import (
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_LAYER_GZIP,
    MEDIA_OCI_LAYER_ZSTD,
    MEDIA_OCI_MANIFEST,
    Descriptor,
)
from cache.store import BlobStore
from tests.docker_cli import docker
from tests.integration.clihelp import Pybuild, Result, assert_verified_clean, write_context
from tests.integration.registry_server import (
    HTPASSWD_BIN,
    MISSING_REASON,
    REGISTRY_BIN,
    Registry,
    run_registry,
)
from tests.integration.test_registry import Cli, _inspect, _seed, _skopeo

pytestmark = pytest.mark.skipif(
    REGISTRY_BIN is None or HTPASSWD_BIN is None or shutil.which("skopeo") is None,
    reason=MISSING_REASON + " and skopeo",
)


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, base_archive: Path) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("push-registry")) as reg:
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")  # docker schema2
        yield reg


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _pushed_digest(result: Result, target: str) -> str:
    return " ".join(result.err.split()).split(f"pushed {target} digest: ")[1].split()[0]


@pytest.mark.requires_root
@pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci (apt: umoci)")
def test_image_built_from_a_docker_schema2_base_is_pushed_with_oci_layer_types(
    cli: Cli, registry: Registry, tmp_path: Path
) -> None:
    base = f"{registry.host}/lib/busybox:1"
    assert _inspect(registry, base, "--raw")["mediaType"] == MEDIA_DOCKER_MANIFEST
    context = write_context(
        tmp_path / "ctx", {"hello.txt": "hello\n"}, f"FROM {base}\nCOPY hello.txt /hello.txt\n"
    )
    target = f"{registry.host}/built/from-docker:1"
    built = cli(
        "build", "--progress", "plain", "--compression", "gzip",
        "-o", f"type=registry,name={target}", context,
    )  # fmt: skip
    digest = _pushed_digest(built, target)
    raw = _inspect(registry, target, "--raw")
    assert raw["mediaType"] == MEDIA_OCI_MANIFEST
    layers = raw["layers"]
    assert isinstance(layers, list)
    assert {layer["mediaType"] for layer in layers} == {MEDIA_OCI_LAYER_GZIP}
    assert _inspect(registry, target)["Digest"] == digest
    oci = tmp_path / "oci"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{oci}:app")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{oci}:app", str(bundle)], check=True)
    assert (bundle / "rootfs" / "hello.txt").read_text() == "hello\n"
    assert (bundle / "rootfs" / "bin" / "busybox").exists()
    assert_verified_clean(cli.pybuild)


@pytest.mark.requires_root
def test_output_type_registry_needs_a_name(cli: Cli, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {}, "FROM scratch\nENV A=1\n")
    result = cli("build", "-o", "type=registry", context, ok=False)
    assert result.code == 2
    assert "type=registry needs a name" in result.err
    bad = cli("build", "-o", "type=registry,dest=x", "-t", "r/a:1", context, ok=False)
    assert bad.code == 2
    assert "type=registry takes no dest" in bad.err


@pytest.mark.requires_root
def test_zstd_layers_push_pull_and_build_from(
    cli: Cli, pybuild: Pybuild, registry: Registry, tmp_path: Path
) -> None:
    target = f"{registry.host}/zstd/app:1"
    ctx = write_context(tmp_path / "ctx", {"z.txt": "zstd\n"}, "FROM busybox\nCOPY z.txt /z.txt\n")
    zstd_push = f"type=registry,name={target},compression=zstd"
    pybuild("build", "--progress", "plain", "--compression", "zstd", "-o", zstd_push, ctx)
    raw = _inspect(registry, target, "--raw")
    layers = raw["layers"]
    assert isinstance(layers, list)
    assert layers[-1]["mediaType"] == MEDIA_OCI_LAYER_ZSTD
    cli("pull", target)  # into an empty store: every blob fetched and verified
    out = tmp_path / "rootfs"
    ctx2 = write_context(tmp_path / "ctx2", {"y.txt": "y\n"}, f"FROM {target}\nCOPY y.txt /y\n")
    cli("build", "--progress", "plain", "-o", f"type=local,dest={out}", ctx2)
    assert (out / "z.txt").read_text() == "zstd\n"
    assert (out / "y").read_text() == "y\n"
    assert (out / "bin" / "busybox").exists()
    assert_verified_clean(cli.pybuild)


def _pushed_with_defaults(pybuild: Pybuild, registry: Registry, tmp_path: Path, name: str) -> str:
    """Build on the default (zstd) store, push with no options; the pushed reference."""
    target = f"{registry.host}/defaults/{name}:1"
    dockerfile = "FROM busybox\nCOPY hi.txt /hi.txt\nRUN echo ran > /ran\n"
    ctx = write_context(tmp_path / "ctx", {"hi.txt": "hi\n"}, dockerfile)
    pybuild("build", "--progress", "plain", "-t", target, ctx)
    stored = pybuild.inspect(target)["Manifest"]["layers"]
    assert stored[-1]["mediaType"] == MEDIA_OCI_LAYER_ZSTD  # the store keeps zstd
    pybuild("push", target)
    return target


@pytest.mark.requires_root
@pytest.mark.skipif(shutil.which("umoci") is None, reason="needs umoci (apt: umoci)")
def test_default_push_from_a_zstd_store_is_gzip_and_umoci_unpacks_it(
    pybuild: Pybuild, registry: Registry, tmp_path: Path
) -> None:
    target = _pushed_with_defaults(pybuild, registry, tmp_path, "umoci")
    raw = _inspect(registry, target, "--raw")
    layers = raw["layers"]
    assert isinstance(layers, list)
    assert {layer["mediaType"] for layer in layers} == {MEDIA_OCI_LAYER_GZIP}
    oci = tmp_path / "oci"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{oci}:app")
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{oci}:app", str(bundle)], check=True)
    assert (bundle / "rootfs" / "hi.txt").read_text() == "hi\n"
    assert (bundle / "rootfs" / "ran").read_text() == "ran\n"
    # The image ID (config digest) is the same on the registry as in the store.
    assert raw["config"]["digest"] == pybuild.inspect(target)["Manifest"]["config"]["digest"]


@pytest.mark.requires_root
@pytest.mark.requires_docker
def test_docker_pulls_and_runs_what_a_default_push_sent(
    pybuild: Pybuild, registry: Registry, tmp_path: Path
) -> None:
    target = _pushed_with_defaults(pybuild, registry, tmp_path, "docker")
    pulled = subprocess.run([docker(), "pull", target], capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    try:
        ran = subprocess.run(
            [docker(), "run", "--rm", "--network", "none", target, "cat", "/hi.txt", "/ran"],
            capture_output=True,
            text=True,
        )
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == "hi\nran\n"
    finally:
        subprocess.run([docker(), "rmi", "-f", target], capture_output=True)


class _Recording(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.methods: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.methods.append(request.method)
        return super().handle_request(request)


def test_chunked_upload_to_the_real_registry_reads_back_intact(
    pybuild: Pybuild, registry: Registry, tmp_path: Path
) -> None:
    target = f"{registry.host}/chunked/bb:1"
    pybuild("tag", "busybox:latest", target)
    image = pybuild.inspect(target)
    layer = Descriptor.from_json(image["Manifest"]["layers"][0])
    chunk = 64 << 10
    assert layer.size > 2 * chunk
    sent = _Recording()
    options = RegistryOptions(chunk_size=chunk)
    with RegistryClient(
        parse_reference(target), push=True, options=options, transport=sent
    ) as client:
        assert client.push_blob(layer, BlobStore(pybuild.root)) == "pushed"
    assert sent.methods.count("PATCH") == math.ceil(layer.size / chunk)
    assert sent.methods[-1] == "PUT"
    fresh = BlobStore(tmp_path / "fresh")
    with RegistryClient(parse_reference(target)) as client:
        client.fetch_blob(layer, fresh)  # verified against the digest as it streams
    assert fresh.read_bytes(layer.digest) == BlobStore(pybuild.root).read_bytes(layer.digest)
