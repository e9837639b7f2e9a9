"""Validators at the edge: tar members, signals, URLs, names, durations, epochs, resources."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from builder.errors import BuildError, DockerfileError, UsageError
from builder.frontend.durations import MAX_NS as MAX_DURATION_NS
from builder.frontend.signals import parse_signal
from builder.plan.healthcheck import parse_duration_ns
from builder.plan.mounts import parse_mount
from builder.plan.planner import MAX_EPOCH, check_epoch, source_date_epoch
from builder.plan.remote import check_url
from builder.run.container_spec import parse_resources
from cache.extract import extract_layer
from cache.oci import MEDIA_OCI_LAYER, Descriptor
from cache.store import BlobStore
from cache.tarcheck import UnsafeTarEntry, check_member, member_problem


def _member(name: str = "f", **fields: object) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    for key, value in fields.items():
        setattr(info, key, value)
    return info


def test_an_ordinary_member_passes_the_tar_check() -> None:
    assert member_problem(_member("usr/bin/x", uid=1000, gid=1000, mode=0o104755)) is None
    assert member_problem(_member("l", type=tarfile.SYMTYPE, linkname="../x")) is None
    assert member_problem(_member("d" * 255 + "/" + "e" * 255)) is None


@pytest.mark.parametrize(
    ("member", "why"),
    [
        (_member("a\0b"), "name holds a NUL byte"),
        (_member("l", type=tarfile.SYMTYPE, linkname="x\0"), "link name holds a NUL byte"),
        (_member("x" * 256), "a component of 256 bytes"),
        (_member("a/" * 2048), "bytes long"),
        (_member(uid=2**32 - 1), "owner 4294967295:0 is out of range"),
        (_member(gid=-1), "out of range"),
        (_member(mode=2**40), "mode"),
        (_member(type=tarfile.CHRTYPE, devmajor=2**32), "device"),
        (_member(mtime=float("nan")), "modification time"),
        (_member(mtime=10**12), "modification time"),
        (_member(pax_headers={"SCHILY.xattr.user.a\0b": "v"}), "PAX header"),
    ],
    ids=["nul-name", "nul-link", "long-component", "long-path", "uid", "gid", "mode",
         "device", "nan-mtime", "huge-mtime", "nul-xattr"],
)  # fmt: skip
def test_a_member_no_file_system_takes_is_refused_with_its_name(
    member: tarfile.TarInfo, why: str
) -> None:
    with pytest.raises(UnsafeTarEntry, match=why) as info:
        check_member(member, "layer sha256:ab")
    assert info.value.message.startswith("layer sha256:ab: tar entry ")
    assert info.value.hint and "hostile" in info.value.hint


@pytest.mark.parametrize(
    ("text", "number"),
    [("SIGTERM", 15), ("term", 15), ("9", 9), ("64", 64), ("RTMIN+3", 37), ("sigrtmax-1", 63)],
)
def test_signals_are_read_by_name_or_number(text: str, number: int) -> None:
    assert parse_signal(text) == number


@pytest.mark.parametrize("text", ["0", "65", "99999999999999999999", "SIGNOPE", "", "-9", "²"])
def test_a_string_that_names_no_signal_gives_none(text: str) -> None:
    assert parse_signal(text) is None


@pytest.mark.parametrize("url", ["http://[::1", "http://h:99999/x", "https:///x", "http://h:0/"])
def test_a_malformed_url_is_a_build_error(url: str) -> None:
    with pytest.raises(BuildError, match="invalid URL"):
        check_url(url)


def test_a_well_formed_url_passes() -> None:
    check_url("http://[::1]:8080/a.tar")
    check_url("https://user:pw@example.com/x")


def test_durations_beyond_gos_int64_are_invalid() -> None:
    assert parse_duration_ns("2562047h47m16.854775807s") == MAX_DURATION_NS
    assert parse_duration_ns("-2562047h47m16.854775808s") == -(2**63)
    for bad in ("2562047h47m16.854775808s", "9223372036854775808ns", "1" * 40 + "h"):
        with pytest.raises(DockerfileError, match="invalid duration"):
            parse_duration_ns(bad)


def test_epochs_run_from_1970_to_the_end_of_year_9999() -> None:
    assert check_epoch(0, "x") == 0 and check_epoch(MAX_EPOCH, "x") == MAX_EPOCH
    assert check_epoch(None, "x") is None
    for bad in (-1, MAX_EPOCH + 1):
        with pytest.raises(BuildError, match="out of range"):
            check_epoch(bad, "x")
    with pytest.raises(BuildError, match="out of range"):
        source_date_epoch({"SOURCE_DATE_EPOCH": str(10**30)}, None)
    with pytest.raises(BuildError, match="out of range"):
        source_date_epoch({}, 10**30)


def test_resource_limits_below_dockers_minimum_are_refused() -> None:
    assert parse_resources("6m", None, 0.01).memory == 6 * 2**20
    for memory, cpus in (("6291455", None), ("1", None), (None, 0.009), ("9" * 400, None)):
        with pytest.raises(UsageError):
            parse_resources(memory, None, cpus)


def test_mount_owner_ids_are_32_bit_and_tmpfs_sizes_int64() -> None:
    def stage(ref: str) -> int:
        return 0

    assert parse_mount("type=cache,target=/c,uid=4294967294", stage).uid == 2**32 - 2
    for raw in (
        "type=cache,target=/c,uid=4294967295",
        "type=cache,target=/c,gid=99999999999999999999",
        "type=tmpfs,target=/t,size=9999999999999g",
        "type=tmpfs,target=/t,size=²",
    ):
        with pytest.raises(DockerfileError):
            parse_mount(raw, stage)


def _sparse_bomb() -> bytes:
    """A PAX 1.0 sparse entry: 512 bytes of map claiming a 1 TB file of holes."""
    info = tarfile.TarInfo("placeholder")
    info.pax_headers = {
        "GNU.sparse.major": "1",
        "GNU.sparse.minor": "0",
        "GNU.sparse.name": "bomb",
        "GNU.sparse.realsize": str(10**12),
    }
    sparse_map = b"1\n0\n0\n".ljust(512, b"\0")
    info.size = len(sparse_map)
    return info.tobuf(tarfile.PAX_FORMAT) + sparse_map + b"\0" * 1024


def test_a_sparse_entry_is_refused_before_its_holes_fill_the_disk(tmp_path: Path) -> None:
    data = _sparse_bomb()
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        member = tar.next()
    assert member is not None and member.issparse()  # tarfile would write 1 TB of zeros
    blobs = BlobStore(tmp_path / "store")
    layer = Descriptor(MEDIA_OCI_LAYER, blobs.put_bytes(data), len(data))
    (tmp_path / "out").mkdir()
    with pytest.raises(UnsafeTarEntry, match="sparse file"):
        extract_layer(blobs, layer, tmp_path / "out", mode="apply")
    assert list((tmp_path / "out").iterdir()) == []
