"""Pull, push, login against Debian's docker-registry; skopeo and umoci check our work."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from builder.registry.pull import RemoteOptions, pull_image
from cache.distribution.client import RegistryClient
from cache.distribution.reference import parse_reference
from cache.index import Index as TagIndex
from cache.oci import MEDIA_OCI_INDEX, Descriptor, Index, Platform
from cache.store import BlobStore
from tests.integration.clihelp import Pybuild, Result, assert_verified_clean, write_context
from tests.integration.registry_server import (
    HTPASSWD_BIN,
    MISSING_REASON,
    REGISTRY_BIN,
    Registry,
    TokenServer,
    fake_image,
    free_port,
    run_registry,
)

pytestmark = pytest.mark.skipif(
    REGISTRY_BIN is None or HTPASSWD_BIN is None or shutil.which("skopeo") is None,
    reason=MISSING_REASON + " and skopeo",
)


def _skopeo(*args: str) -> str:
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _seed(reg: Registry, archive: Path, dest: str, *extra: str) -> None:
    """skopeo copies the docker-archive up: docker schema2 unless ``--format oci``."""
    creds = ["--dest-creds", reg.creds] if reg.user else []
    _skopeo("copy", "--dest-tls-verify=false", *creds, *extra, f"docker-archive:{archive}", dest)


def _inspect(reg: Registry, ref: str, *extra: str) -> dict[str, object]:
    creds = ["--creds", reg.creds] if reg.user else []
    doc: dict[str, object] = json.loads(
        _skopeo("inspect", "--tls-verify=false", *creds, *extra, f"docker://{ref}")
    )
    return doc


@pytest.fixture(scope="module")
def open_registry(
    tmp_path_factory: pytest.TempPathFactory, base_archive: Path
) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("open-registry")) as reg:
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")
        _seed(reg, base_archive, f"docker://{reg.host}/oci/busybox:1", "--format", "oci")
        yield reg


@pytest.fixture(scope="module")
def basic_registry(
    tmp_path_factory: pytest.TempPathFactory, base_archive: Path
) -> Iterator[Registry]:
    with run_registry(tmp_path_factory.mktemp("basic"), user="alice", password="s3cret") as reg:
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")
        yield reg


@pytest.fixture(scope="module")
def token_registry(
    tmp_path_factory: pytest.TempPathFactory, base_archive: Path
) -> Iterator[tuple[Registry, TokenServer]]:
    tmp = tmp_path_factory.mktemp("token")
    tokens = TokenServer(tmp / "tokens", "bob", "hunter2")
    with tokens.running(), run_registry(tmp / "registry", token=tokens) as reg:
        reg = Registry(reg.host, reg.root, "bob", "hunter2")
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")
        yield reg, tokens


class Cli:
    """pybuild with its own store and its own docker config dir."""

    def __init__(self, tmp: Path) -> None:
        (tmp / "cli-store").mkdir()
        self.pybuild = Pybuild(tmp / "cli-store")
        self.docker_config = tmp / "docker-config"

    def __call__(self, *args: str | Path, ok: bool = True, input: str | None = None) -> Result:
        """Run pybuild; stderr comes back with rich's line wrapping undone."""
        env = {"DOCKER_CONFIG": str(self.docker_config)}
        result = self.pybuild(*args, ok=ok, input=input, env=env)
        return Result(result.code, result.out, " ".join(result.err.split()))

    def login(self, reg: Registry, password: str | None = None, ok: bool = True) -> Result:
        given = reg.password if password is None else password
        return self("login", "-u", reg.user, "--password-stdin", reg.host, input=given, ok=ok)


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def _assert_store_clean(root: Path) -> None:
    """Every blob in the store hashes to its name; nothing is left in tmp."""
    blobs = BlobStore(root)
    for digest in blobs.digests():
        blobs.read_bytes(digest)
    assert [p.name for p in blobs.tmp_dir.iterdir() if p.name.startswith("blob-")] == []


def test_pull_from_open_registry_keeps_the_registry_digest(
    cli: Cli, open_registry: Registry
) -> None:
    ref = f"{open_registry.host}/lib/busybox:1"
    out = cli("pull", ref)
    assert "Pull complete" in out.err
    remote = _inspect(open_registry, ref)
    local = cli.pybuild.inspect(ref)
    assert local["Digest"] == remote["Digest"]
    assert ref in local["RepoTags"]
    again = cli("pull", ref)
    assert "0 blobs downloaded" in again.err
    _assert_store_clean(cli.pybuild.root)


def test_pull_needing_login_says_how_to_log_in(cli: Cli, basic_registry: Registry) -> None:
    result = cli("pull", f"{basic_registry.host}/lib/busybox:1", ok=False)
    assert result.code == 1
    assert "wants authentication" in result.err
    assert f"pybuild login {basic_registry.host}" in result.err
    assert "Traceback" not in result.err


def test_login_with_wrong_password_fails_and_saves_nothing(
    cli: Cli, basic_registry: Registry
) -> None:
    result = cli.login(basic_registry, password="wrong", ok=False)
    assert result.code == 1
    assert "refused the credentials" in result.err
    assert not (cli.docker_config / "config.json").exists()


def test_login_then_pull_with_basic_auth_then_logout(cli: Cli, basic_registry: Registry) -> None:
    assert "Login Succeeded" in cli.login(basic_registry).out
    saved = json.loads((cli.docker_config / "config.json").read_text())
    assert basic_registry.host in saved["auths"]
    cli("pull", f"{basic_registry.host}/lib/busybox:1")
    assert cli("logout", basic_registry.host).out.startswith("Removing login credentials")
    cli("rmi", f"{basic_registry.host}/lib/busybox:1")
    failed = cli("pull", f"{basic_registry.host}/lib/busybox:1", ok=False)
    assert "wants authentication" in failed.err


def test_missing_tag_is_a_clear_error(cli: Cli, open_registry: Registry) -> None:
    result = cli("pull", f"{open_registry.host}/lib/busybox:nope", ok=False)
    assert result.code == 1
    assert "no manifest for 'nope'" in result.err
    assert "Traceback" not in result.err
    assert cli("images").out.strip().count("\n") == 0  # only the header


def test_bearer_token_pull_and_push_round_trip(
    cli: Cli, token_registry: tuple[Registry, TokenServer]
) -> None:
    reg, tokens = token_registry
    denied = cli("pull", f"{reg.host}/lib/busybox:1", ok=False)
    assert "wants authentication" in denied.err
    assert cli.login(reg, password="nope", ok=False).code == 1
    cli.login(reg)
    cli("pull", f"{reg.host}/lib/busybox:1")
    cli("tag", f"{reg.host}/lib/busybox:1", f"{reg.host}/mine/bb:2")
    pushed = cli("push", f"{reg.host}/mine/bb:2")
    assert "Mounted from lib/busybox" in pushed.err  # both scopes in one token
    digest = pushed.out.split("digest: ")[1].split()[0]
    assert _inspect(reg, f"{reg.host}/mine/bb:2")["Digest"] == digest
    scopes = [s for q in tokens.requests for s in q.get("scope", [])]
    assert "repository:mine/bb:pull,push" in scopes
    assert "repository:lib/busybox:pull" in scopes


def test_credentials_come_from_docker_config_auths(
    cli: Cli, token_registry: tuple[Registry, TokenServer]
) -> None:
    import base64

    reg, _ = token_registry
    cli.docker_config.mkdir()
    auth = base64.b64encode(reg.creds.encode()).decode()
    (cli.docker_config / "config.json").write_text(
        json.dumps({"auths": {reg.host: {"auth": auth}}})
    )
    cli("pull", f"{reg.host}/lib/busybox:1")


def test_interrupted_push_completes_when_run_again(
    cli: Cli, pybuild: Pybuild, open_registry: Registry
) -> None:
    target = f"{open_registry.host}/resumed/bb:1"
    pybuild("tag", "busybox:latest", target)
    blobs = BlobStore(pybuild.root)
    image = json.loads(pybuild("inspect", target).out)[0]
    layer = Descriptor.from_json(image["Manifest"]["layers"][0])
    with RegistryClient(parse_reference(target), push=True) as client:
        assert client.push_blob(layer, blobs) == "pushed"  # the push "died" after this
    # busybox's layer is stored uncompressed: sent as it is, the manifest byte for byte.
    env = {"DOCKER_CONFIG": str(cli.docker_config)}
    out = pybuild("push", "--compression", "uncompressed", target, env=env)
    assert f"{layer.digest.short}: Layer already exists" in out.err
    assert "Pushed" in out.err
    assert _inspect(open_registry, target)["Digest"] == image["Digest"]


def test_pull_picks_linux_amd64_from_an_index(
    cli: Cli, pybuild: Pybuild, open_registry: Registry, store_root: Path
) -> None:
    amd64 = f"{open_registry.host}/multi/bb:amd64"
    pybuild("tag", "busybox:latest", amd64)
    pybuild("push", amd64)
    ref = parse_reference(f"{open_registry.host}/multi/bb:arm64")
    manifest, arm_blobs = fake_image(b"not really arm")
    with RegistryClient(ref, push=True) as client:
        store = BlobStore(store_root / "scratch")
        for data in arm_blobs.values():
            d = store.put_bytes(data)
            client.push_blob(Descriptor("application/octet-stream", d, len(data)), store)
        arm_digest = client.put_manifest("arm64", manifest, json.loads(manifest)["mediaType"])
        amd_found = client.get_manifest("amd64")
        index = Index(
            (
                Descriptor(
                    "application/vnd.oci.image.manifest.v1+json",
                    arm_digest,
                    len(manifest),
                    platform=Platform("linux", "arm64", "v8"),
                ),
                Descriptor(
                    amd_found.media_type,
                    amd_found.digest,
                    len(amd_found.data),
                    platform=Platform("linux", "amd64"),
                ),
            )
        )
        client.put_manifest("multi", index.to_bytes(), MEDIA_OCI_INDEX)
    cli("pull", f"{open_registry.host}/multi/bb:multi")
    assert cli.pybuild.inspect(f"{open_registry.host}/multi/bb:multi")["Digest"] == str(
        amd_found.digest
    )


def test_pull_by_digest_stores_no_tag(cli: Cli, open_registry: Registry) -> None:
    digest = _inspect(open_registry, f"{open_registry.host}/lib/busybox:1")["Digest"]
    out = cli("pull", f"{open_registry.host}/lib/busybox@{digest}")
    assert str(digest) in out.err
    assert cli("images").out.strip().count("\n") == 0
    assert cli.pybuild.inspect(str(digest))["Digest"] == digest


def test_library_pull_records_fetched_blobs(store_root: Path, open_registry: Registry) -> None:
    blobs, tags = BlobStore(store_root), TagIndex(store_root)
    try:
        result = pull_image(f"{open_registry.host}/lib/busybox:1", blobs, tags, RemoteOptions())
        assert result.fetched == 2
        assert tags.get_tag(result.local_name) == result.image.digest
    finally:
        tags.close()


@pytest.mark.requires_root
@pytest.mark.requires_overlay
def test_build_from_a_registry_base_then_push_read_back_by_skopeo_and_umoci(
    cli: Cli, open_registry: Registry, tmp_path: Path
) -> None:
    # An OCI base here; test_registry_push.py builds FROM a docker-schema2 one.
    base = f"{open_registry.host}/oci/busybox:1"
    context = write_context(
        tmp_path / "ctx",
        {"hello.txt": "hello from pybuild\n"},
        f"FROM {base}\nCOPY hello.txt /hello.txt\nRUN echo built > /built.txt\n",
    )
    target = f"{open_registry.host}/built/app:1"
    built = cli(
        "build", "--progress", "plain", "--compression", "gzip", "--push", "-t", target, context
    )
    assert f"Pulling {base}" in built.err
    assert "Mounted from oci/busybox" in built.err
    digest = built.err.split(f"pushed {target} digest: ")[1].split()[0]
    assert _inspect(open_registry, target)["Digest"] == digest
    again = cli("push", target)
    assert "Pushed" not in again.err
    assert again.out.split("digest: ")[1].split()[0] == digest
    oci = tmp_path / "oci"
    _skopeo("copy", "--src-tls-verify=false", f"docker://{target}", f"oci:{oci}:app")
    if shutil.which("umoci") is not None:
        bundle = tmp_path / "bundle"
        subprocess.run(["umoci", "unpack", "--image", f"{oci}:app", str(bundle)], check=True)
        rootfs = bundle / "rootfs"
    else:
        rootfs = tmp_path / "rootfs"
        _untar_layers(oci, rootfs)
    assert (rootfs / "hello.txt").read_text() == "hello from pybuild\n"
    assert (rootfs / "built.txt").read_text() == "built\n"
    assert (rootfs / "bin" / "busybox").exists()


@pytest.mark.requires_root
@pytest.mark.requires_overlay
def test_build_with_pull_and_registry_down_uses_the_local_base(
    cli: Cli, pybuild: Pybuild, tmp_path: Path
) -> None:
    offline = f"127.0.0.1:{free_port()}/gone/busybox:1"
    pybuild("tag", "busybox:latest", offline)
    context = write_context(tmp_path / "ctx", {}, f"FROM {offline}\nRUN true\n")
    out = pybuild("build", "--progress", "plain", "--pull", context)
    assert "using the local" in out.err
    failed = pybuild(
        "build",
        "--progress",
        "plain",
        "--pull",
        write_context(
            tmp_path / "ctx2", {}, f"FROM 127.0.0.1:{free_port()}/never/here:1\nRUN true\n"
        ),
        ok=False,
    )
    assert failed.code == 1
    assert "Dockerfile:1" in failed.err
    assert "pulling it failed" in " ".join(failed.err.split())


def _untar_layers(oci: Path, dest: Path) -> None:
    index = json.loads((oci / "index.json").read_text())
    manifest_digest = index["manifests"][0]["digest"].split(":")[1]
    manifest = json.loads((oci / "blobs" / "sha256" / manifest_digest).read_text())
    dest.mkdir()
    for layer in manifest["layers"]:
        with tarfile.open(oci / "blobs" / "sha256" / layer["digest"].split(":")[1]) as tar:
            tar.extractall(dest, filter="tar")


@pytest.mark.requires_root
def test_build_push_without_a_name_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    context = write_context(tmp_path / "ctx", {}, "FROM scratch\nENV A=1\n")
    result = cli("build", "--push", context, ok=False)
    assert result.code == 2
    assert "--push needs a name" in result.err


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
    assert_verified_clean(cli.pybuild)


def test_missing_tag_leaves_the_store_verified_clean(cli: Cli, open_registry: Registry) -> None:
    cli("pull", f"{open_registry.host}/lib/busybox:1")
    missing = cli("pull", f"{open_registry.host}/lib/busybox:nope", ok=False)
    assert missing.code == 1 and "no manifest for 'nope'" in missing.err
    assert_verified_clean(cli.pybuild)
