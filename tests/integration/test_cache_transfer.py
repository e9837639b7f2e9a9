"""--cache-to / --cache-from through the CLI: build on store A, export, build on an empty
store B from the export; B hits every step it should and makes A's image digest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, Result, steps_of, write_context
from tests.integration.registry_server import (
    HTPASSWD_BIN,
    MISSING_REASON,
    REGISTRY_BIN,
    Registry,
    run_registry,
)

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

EPOCH = ("--source-date-epoch", "1700000000")
# A pre-stage read only through COPY --from: mode=max exports it, mode=min does not.
DOCKERFILE = (
    "FROM busybox AS pre\n"
    "RUN echo built > /pre.txt\n"
    "FROM busybox\n"
    "COPY --from=pre /pre.txt /pre.txt\n"
    "COPY a.txt /a.txt\n"
    "RUN cat /a.txt /pre.txt > /out\n"
)
needs_registry = pytest.mark.skipif(
    REGISTRY_BIN is None or HTPASSWD_BIN is None, reason=MISSING_REASON
)


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    return write_context(tmp_path / "ctx", {"a.txt": "hello\n"}, DOCKERFILE)


@pytest.fixture
def store_b(tmp_path: Path, base_archive: Path) -> Pybuild:
    """A second, empty store with only the busybox base loaded."""
    (tmp_path / "store-b").mkdir()
    cli = Pybuild(tmp_path / "store-b")
    cli("load", "-i", base_archive)
    return cli


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    if REGISTRY_BIN is None or HTPASSWD_BIN is None:
        pytest.skip(MISSING_REASON)
    with run_registry(tmp_path_factory.mktemp("cache-registry")) as reg:
        yield reg


def _build(cli: Pybuild, ctx: Path, meta: Path, *args: str, ok: bool = True) -> Result:
    return cli.build(ctx, *EPOCH, "--metadata-file", meta, *args, ok=ok)


def _digest(meta: Path) -> str:
    return str(json.loads(meta.read_text())["image.digest"])


def _cached_by_stage(meta: Path) -> dict[int, list[bool]]:
    """Per stage index: each filesystem step's cached flag, in order."""
    out: dict[int, list[bool]] = {}
    for step in steps_of(meta):
        stage = int(step["id"].split("#")[-2])
        out.setdefault(stage, []).append(bool(step["cached"]))
    return out


def _assert_verify_clean(cli: Pybuild) -> None:
    result = cli("cache", "verify", ok=False)
    assert result.code == 0, result.out + result.err


def test_local_max_export_gives_every_step_a_hit_on_an_empty_store(
    pybuild: Pybuild, store_b: Pybuild, ctx: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    meta_a, meta_b = tmp_path / "a.json", tmp_path / "b.json"
    exported = _build(pybuild, ctx, meta_a, "--cache-to", f"type=local,dest={cache},mode=max")
    assert "exported cache (4 records, mode=max)" in exported.err
    assert (cache / "index.json").is_file() and (cache / "oci-layout").is_file()
    result = _build(store_b, ctx, meta_b, "--cache-from", f"type=local,src={cache}")
    assert _cached_by_stage(meta_b) == {0: [True], 1: [True, True, True]}
    assert "4/4 steps cached (100%)" in result.err
    assert json.loads(meta_b.read_text())["totals"]["sandbox_runs"] == 0
    assert _digest(meta_b) == _digest(meta_a)
    _assert_verify_clean(store_b)


def test_local_min_export_leaves_the_pre_stage_out(
    pybuild: Pybuild, store_b: Pybuild, ctx: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    meta_a, meta_b = tmp_path / "a.json", tmp_path / "b.json"
    _build(pybuild, ctx, meta_a, "--cache-to", f"type=local,dest={cache}")  # min by default
    _build(store_b, ctx, meta_b, "--cache-from", f"type=local,src={cache}")
    # The pre-stage runs again; its key is the same, so COPY --from still hits.
    assert _cached_by_stage(meta_b) == {0: [False], 1: [True, True, True]}
    assert _digest(meta_b) == _digest(meta_a)
    _assert_verify_clean(store_b)


def test_cache_from_a_missing_dir_fails_with_a_hint(
    pybuild: Pybuild, ctx: Path, tmp_path: Path
) -> None:
    result = pybuild.build(ctx, "--cache-from", f"type=local,src={tmp_path / 'nope'}", ok=False)
    assert result.code == 1
    err = " ".join(result.err.split())
    assert "does not exist" in err and "hint:" in err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("index_json", "expected"),
    [
        (None, "no index.json"),
        ("{not json", "not valid JSON"),
        ('{"schemaVersion": 2, "manifests": []}', "names 0 image manifests"),
    ],
)
def test_cache_from_a_malformed_layout_fails(
    pybuild: Pybuild, ctx: Path, tmp_path: Path, index_json: str | None, expected: str
) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    if index_json is not None:
        (bad / "index.json").write_text(index_json)
    result = pybuild.build(ctx, "--cache-from", f"type=local,src={bad}", ok=False)
    assert result.code == 1
    assert expected in " ".join(result.err.split())
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("flag", "spec", "expected"),
    [
        ("--cache-to", "type=gha", "unsupported cache type 'gha'"),
        ("--cache-to", "type=local", "dest= is required"),
        ("--cache-to", "type=local,dest=/tmp/x,mode=all", "mode must be min or max"),
        ("--cache-from", "type=local,dest=/tmp/x", "src= is required"),
        ("--cache-from", "type=local,src=/tmp/x,colour=red", "unknown option(s) colour"),
    ],
)
def test_bad_cache_specs_are_usage_errors(
    pybuild: Pybuild, ctx: Path, flag: str, spec: str, expected: str
) -> None:
    result = pybuild.build(ctx, flag, spec, ok=False)
    assert result.code == 2
    assert expected in " ".join(result.err.split())


def _rewrite_config(layout: Path, change: dict[str, object]) -> None:
    """Change fields of the export's config, re-linking manifest and index.json as a
    writer would (so only the change itself is wrong)."""
    import hashlib

    blobs = layout / "blobs" / "sha256"

    def put(data: bytes) -> str:
        hexd = hashlib.sha256(data).hexdigest()
        (blobs / hexd).write_bytes(data)
        return f"sha256:{hexd}"

    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((blobs / index["manifests"][0]["digest"][7:]).read_bytes())
    config = json.loads((blobs / manifest["config"]["digest"][7:]).read_bytes())
    config.update(change)
    data = json.dumps(config).encode()
    manifest["config"].update(digest=put(data), size=len(data))
    data = json.dumps(manifest).encode()
    index["manifests"][0].update(digest=put(data), size=len(data))
    (layout / "index.json").write_text(json.dumps(index))


def test_key_version_mismatch_ignores_the_records_with_a_warning(
    pybuild: Pybuild, store_b: Pybuild, ctx: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    _build(pybuild, ctx, tmp_path / "a.json", "--cache-to", f"type=local,dest={cache}")
    _rewrite_config(cache, {"keyVersion": 0})
    meta = tmp_path / "b.json"
    result = _build(store_b, ctx, meta, "--cache-from", f"type=local,src={cache}")
    err = " ".join(result.err.split())
    assert "key format version 0" in err and "records are ignored" in err
    assert not any(s["cached"] for s in steps_of(meta))


def test_a_corrupt_layer_in_the_export_is_not_imported(
    pybuild: Pybuild, store_b: Pybuild, ctx: Path, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    meta_a = tmp_path / "a.json"
    _build(pybuild, ctx, meta_a, "--cache-to", f"type=local,dest={cache},mode=max")
    run_layer = steps_of(meta_a)[-1]["layer"]
    blob = cache / "blobs" / "sha256" / run_layer[7:]
    blob.write_bytes(b"X" * blob.stat().st_size)
    meta = tmp_path / "b.json"
    result = _build(store_b, ctx, meta, "--cache-from", f"type=local,src={cache}")
    assert "does not match its digest" in " ".join(result.err.split())
    assert [s["cached"] for s in steps_of(meta)] == [True, True, True, False]
    assert _digest(meta) == _digest(meta_a)  # the step ran again and made the same layer
    _assert_verify_clean(store_b)


@needs_registry
def test_registry_cache_round_trip_gives_every_step_a_hit(
    pybuild: Pybuild, store_b: Pybuild, ctx: Path, tmp_path: Path, registry: Registry
) -> None:
    ref = f"{registry.host}/cache/app:buildcache"
    meta_a, meta_b = tmp_path / "a.json", tmp_path / "b.json"
    _build(pybuild, ctx, meta_a, "--cache-to", f"type=registry,ref={ref},mode=max")
    result = _build(store_b, ctx, meta_b, "--cache-from", f"type=registry,ref={ref}")
    assert _cached_by_stage(meta_b) == {0: [True], 1: [True, True, True]}
    assert "4/4 steps cached (100%)" in result.err
    assert _digest(meta_b) == _digest(meta_a)
    _assert_verify_clean(store_b)


@needs_registry
def test_registry_min_cache_leaves_the_pre_stage_out(
    pybuild: Pybuild, store_b: Pybuild, ctx: Path, tmp_path: Path, registry: Registry
) -> None:
    ref = f"{registry.host}/cache/min:latest"
    meta_a, meta_b = tmp_path / "a.json", tmp_path / "b.json"
    _build(pybuild, ctx, meta_a, "--cache-to", f"type=registry,ref={ref},mode=min")
    _build(store_b, ctx, meta_b, "--cache-from", ref)  # a bare ref means type=registry
    assert _cached_by_stage(meta_b) == {0: [False], 1: [True, True, True]}
    assert _digest(meta_b) == _digest(meta_a)


@needs_registry
def test_a_missing_registry_cache_is_a_warning(
    pybuild: Pybuild, ctx: Path, tmp_path: Path, registry: Registry
) -> None:
    ref = f"{registry.host}/cache/never-pushed:latest"
    result = pybuild.build(ctx, "--cache-from", f"type=registry,ref={ref}")
    assert "WARNING" in result.err and "no cache there yet" in " ".join(result.err.split())


@needs_registry
def test_cache_from_an_image_that_is_no_cache_fails(
    pybuild: Pybuild, ctx: Path, tmp_path: Path, registry: Registry
) -> None:
    image = f"{registry.host}/plain/app:1"
    pybuild.build(ctx, "-t", image, "--push")
    result = pybuild.build(ctx, "--cache-from", f"type=registry,ref={image}", ok=False)
    assert result.code == 1
    assert "is not a pybuild cache" in " ".join(result.err.split())
