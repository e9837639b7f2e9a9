"""Issue 6 items test_registry.py left open (tests/COVERAGE-issue6.md maps them all).

Docker-schema2 bases give OCI layer types in what we push (umoci reads it), -o
type=registry, local-first FROM / --pull / offline, zstd layers end to end, chunked
uploads against the real registry, docker-credential-* helpers through the CLI, and
``pybuild cache verify`` clean after each bad case.
"""

from __future__ import annotations

import json
import math
import os
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
from tests.integration.clihelp import Pybuild, Result, write_context
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
    with run_registry(tmp_path_factory.mktemp("audit-registry")) as reg:
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")  # docker schema2
        yield reg


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _verify_clean(pybuild: Pybuild) -> None:
    out = pybuild("cache", "verify").out  # exit 0 is asserted by the helper
    assert ": clean," in out, out


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
    _verify_clean(cli.pybuild)


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
def test_from_prefers_the_local_base_pull_re_resolves_and_offline_still_builds(
    cli: Cli, pybuild: Pybuild, base_archive: Path, tmp_path: Path
) -> None:
    with run_registry(tmp_path / "moving") as reg:
        name = f"{reg.host}/moving/base:1"
        _seed(reg, base_archive, f"docker://{name}")
        context = write_context(tmp_path / "ctx", {}, f"FROM {name}\nENV STEP=1\n")
        first = cli("build", "--progress", "plain", context)
        assert f"Pulling {name}" in first.err
        v1 = cli.pybuild.inspect(name)["Digest"]
        # The tag moves on to a new image on the registry.
        newer = write_context(tmp_path / "v2", {"v2": "2\n"}, "FROM busybox\nCOPY v2 /v2\n")
        pybuild("build", "--progress", "plain", "-t", name, "--push", newer)
        v2 = _inspect(reg, name)["Digest"]  # gzip on the registry: not the stored digest
        assert v2 != v1
        local_first = cli("build", "--progress", "plain", context)
        assert "Pulling" not in local_first.err
        assert cli.pybuild.inspect(name)["Digest"] == v1
        pulled = cli("build", "--progress", "plain", "--pull", context)
        assert f"Pulling {name}" in pulled.err
        assert cli.pybuild.inspect(name)["Digest"] == v2
    # The registry is gone: the cached manifest still builds, with and without --pull.
    offline = cli("build", "--progress", "plain", context)
    assert "Pulling" not in offline.err
    with_pull = cli("build", "--progress", "plain", "--pull", context)
    assert "using the local" in " ".join(with_pull.err.split())
    _verify_clean(cli.pybuild)


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
    _verify_clean(cli.pybuild)


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


_HELPER = """#!/usr/bin/env python3
import json, sys
store = {store!r}
data = json.load(open(store))
action, payload = sys.argv[1], sys.stdin.read().strip()
if action == "get":
    if payload not in data:
        print("credentials not found in native keychain"); sys.exit(1)
    print(json.dumps({{"ServerURL": payload, **data[payload]}}))
elif action == "store":
    doc = json.loads(payload)
    data[doc["ServerURL"]] = {{"Username": doc["Username"], "Secret": doc["Secret"]}}
    json.dump(data, open(store, "w"))
elif action == "erase":
    data.pop(payload, None); json.dump(data, open(store, "w"))
"""


def test_creds_store_and_cred_helpers_through_login_pull_logout(
    base_archive: Path, tmp_path: Path
) -> None:
    bindir, store = tmp_path / "bin", tmp_path / "helper.json"
    bindir.mkdir()
    store.write_text("{}")
    helper = bindir / "docker-credential-test"
    helper.write_text(_HELPER.format(store=str(store)))
    helper.chmod(0o755)
    cli = Cli(tmp_path)
    cli.docker_config.mkdir()
    config = cli.docker_config / "config.json"
    config.write_text(json.dumps({"credsStore": "test"}))
    env = {"DOCKER_CONFIG": str(cli.docker_config), "PATH": f"{bindir}:{os.environ['PATH']}"}
    with run_registry(tmp_path / "reg", user="carol", password="pw-9") as reg:
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")
        image = f"{reg.host}/lib/busybox:1"
        cli.pybuild("login", "-u", "carol", "--password-stdin", reg.host, input="pw-9", env=env)
        assert json.loads(store.read_text())[reg.host]["Secret"] == "pw-9"
        assert "pw-9" not in config.read_text()
        cli.pybuild("pull", image, env=env)
        cli.pybuild("logout", reg.host, env=env)
        assert json.loads(store.read_text()) == {}
        denied = cli.pybuild("pull", f"{reg.host}/lib/busybox:1", ok=False, env=env)
        assert "wants authentication" in " ".join(denied.err.split())
        # credHelpers names a helper per registry; it wins over auths.
        store.write_text(json.dumps({reg.host: {"Username": "carol", "Secret": "pw-9"}}))
        config.write_text(json.dumps({"credHelpers": {reg.host: "test"}, "auths": {}}))
        cli.pybuild("rmi", image, env=env)
        cli.pybuild("pull", image, env=env)
        # Wrong credentials from the helper: refused, and the store stays clean.
        store.write_text(json.dumps({reg.host: {"Username": "carol", "Secret": "bad"}}))
        cli.pybuild("rmi", image, env=env)
        refused = cli.pybuild("pull", image, ok=False, env=env)
        assert refused.code == 1
        assert "refused the credentials" in " ".join(refused.err.split())
        assert "Traceback" not in refused.err
    _verify_clean(cli.pybuild)


def test_missing_tag_leaves_the_store_verified_clean(cli: Cli, registry: Registry) -> None:
    cli("pull", f"{registry.host}/lib/busybox:1")
    missing = cli("pull", f"{registry.host}/lib/busybox:nope", ok=False)
    assert missing.code == 1 and "no manifest for 'nope'" in missing.err
    _verify_clean(cli.pybuild)
