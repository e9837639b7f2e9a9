"""Property: hostile Dockerfiles and tar archives end in our typed errors, or in success.

Dockerfiles are generated line by line from instructions, flags and values chosen to
hurt: NUL bytes, numbers far beyond 32 and 64 bits, deeply nested expansions, brackets
and quotes, invalid UTF-8, random words. Each goes through the real read path (bytes on
disk, ``parse_dockerfile_at``) and the planner; the only failure allowed is a
``BuildError`` that names the Dockerfile and a line in it. The values also go to the
CLI's own parsers (names, sizes, signals, URLs, durations, epochs).

Archives are written header by header (``TarInfo.tobuf``), so they may lie: NUL in
names and link names, sizes far beyond the data, odd entry types, deep and long paths,
ids, modes, times and device numbers out of range, truncation. Each goes through every
extraction path: a layer (``extract_layer``, apply and overlay forms), ``ADD`` of a local
archive and a context tar on stdin. Allowed: success, ``CacheError`` for a layer,
``BuildError`` for the others; nothing may land outside the destination.

``PYBUILD_FUZZ_EXAMPLES`` sets the example count of each test (default: modest, for the
suite's time).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from builder.cli.build_flags import extract_context_tar
from builder.dockerfiles import parse_dockerfile_at
from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.signals import parse_signal
from builder.images.names import normalize
from builder.ops.sources.add import extract_archive
from builder.plan.healthcheck import parse_duration_ns
from builder.plan.planner import ImageResolver, PlanRequest, make_plan, source_date_epoch
from builder.plan.remote import check_url
from builder.run.container_spec import parse_resources
from cache.digest import sha256_bytes
from cache.distribution.reference import parse_reference
from cache.errors import CacheError
from cache.extract import extract_layer
from cache.images import StoredImage
from cache.oci import (
    MEDIA_OCI_CONFIG,
    MEDIA_OCI_LAYER,
    ContainerConfig,
    Descriptor,
    ImageConfig,
    Manifest,
)
from cache.store import BlobStore

EXAMPLES = int(os.environ.get("PYBUILD_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# -- values that hurt ---------------------------------------------------------------

HUGE = [
    "0", "-1", "1", "65", "65535", "65536", "4294967294", "4294967295", "4294967296",
    "9223372036854775807", "9223372036854775808", "18446744073709551616",
    "99999999999999999999", "9" * 40, "1" * 5000, "-" + "9" * 30, "1e400", "nan", "inf",
    "0x10", "1_000", "²", "٣", "253402300799", "253402300800", "077777777777777",
]  # fmt: skip
NASTY = ["\0", "a\0b", "/\0", "\udcff", "\ufffd", "é", "\u202e", "'", '"', "\\", "`", "$"]
NESTED = [
    "${A:-" * 50 + "x" + "}" * 50,
    "${A:+${B:-${C:?${D}}}}" * 20,
    "[" * 200 + "]" * 200,
    '["' * 100,
    "$" * 300,
    "\\\n" * 100,
    "a/" * 3000,
]
BYTES = [b"\xff", b"\xfe\xc3", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80" * 5]
WORDS = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)
VALUE = st.sampled_from(HUGE) | st.sampled_from(NASTY) | st.sampled_from(NESTED) | WORDS
UNITS = st.sampled_from(["", "s", "ms", "h", "ns", "m", "k", "g", "t", "b", "us", "µs"])
NUMBER = st.builds(lambda v, u: v + u, st.sampled_from(HUGE), UNITS)


def _mount(draw: st.DrawFn) -> str:
    kind = draw(st.sampled_from(["bind", "cache", "tmpfs", "secret", "ssh", "x"]))
    keys = ["target", "source", "from", "uid", "gid", "mode", "size", "id", "sharing", "ro"]
    fields = [f"type={kind}"]
    for key in draw(st.lists(st.sampled_from(keys), max_size=5)):
        fields.append(f"{key}={draw(NUMBER | VALUE)}")
    return "--mount=" + ",".join(fields)


@st.composite
def instruction(draw: st.DrawFn) -> str:
    v = draw(NUMBER | VALUE)
    choices: list[Callable[[], str]] = [
        lambda: f"RUN {_mount(draw)} true",
        lambda: f"RUN --network={v} true",
        lambda: f"COPY {v} /d/",
        lambda: f"COPY f {v}",
        lambda: f"COPY --from={v} /a /b",
        lambda: f"COPY --chmod={v} --chown={v} f /x",
        lambda: f"ADD {v} /x",
        lambda: f"ADD http://{v}/x /x",
        lambda: f"ADD --checksum={v} https://h/f /f",
        lambda: f"WORKDIR {v}",
        lambda: f"ARG A={v}",
        lambda: f"ENV E={v}",
        lambda: f"LABEL l={v}",
        lambda: f"USER {v}",
        lambda: f"EXPOSE {v}",
        lambda: f"VOLUME {v}",
        lambda: f"STOPSIGNAL {v}",
        lambda: f"HEALTHCHECK --interval={draw(NUMBER)} --retries={v} CMD true",
        lambda: f"HEALTHCHECK --timeout={draw(NUMBER)} --start-period={draw(NUMBER)} CMD x",
        lambda: f"SHELL {v}",
        lambda: f"CMD {v}",
        lambda: f"ONBUILD {v}",
        lambda: f"FROM {v}",
        lambda: f"FROM base AS {v}",
        lambda: f"{draw(WORDS)} {v}",
        lambda: f"RUN <<{v}\n{v}\n{v}",
    ]
    return draw(st.sampled_from(choices))()


@st.composite
def dockerfile(draw: st.DrawFn) -> bytes:
    lines = [line.encode("utf-8", "surrogateescape") for line in draw(st.lists(instruction()))]
    for _ in range(draw(st.integers(0, 2))):  # invalid UTF-8 somewhere
        i = draw(st.integers(0, len(lines)))
        lines.insert(i, b"LABEL b=" + draw(st.sampled_from(BYTES)))
    head = draw(
        st.sampled_from([b"FROM base\n", b"ARG A=1\nFROM base\n", b"# escape=`\nFROM base\n"])
    )
    return head + b"\n".join(lines) + b"\n"


def _image() -> ImageResolver:
    def resolve(name: str, instr: ins.From) -> StoredImage:
        config_digest = sha256_bytes(name.encode("utf-8", "surrogateescape"))
        manifest = Manifest(Descriptor(MEDIA_OCI_CONFIG, config_digest, 2), ())
        config = ImageConfig(config=ContainerConfig())
        return StoredImage(
            sha256_bytes(b"m" + name.encode("utf-8", "replace")), manifest, config, config_digest
        )

    return resolve


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@FUZZ
@given(dockerfile())
@example(b"FROM base\nCOPY f /a\0b\n")
@example(b"FROM base\nRUN --mount=type=cache,target=/c,uid=99999999999999999999 true\n")
@example(b"FROM base\nADD http://[::1 /x\n")
@example(
    b"FROM base\nHEALTHCHECK --interval=9999999999h CMD true\nSTOPSIGNAL 99999999999999999999\n"
)
@example(b"FROM base\nLABEL x=\xff\n")
@example(b"FROM base\nCOPY --from=" + b"1" * 5000 + b" /a /b\n")
@example(b"FROM base\nRUN " + b"1" * 5000 + b"<<EOF cat\nx\nEOF\n")
@example(b"FROM base\nHEALTHCHECK --retries=" + b"1" * 5000 + b" CMD true\n")
def test_hostile_dockerfiles_plan_or_fail_with_our_error_and_a_line(
    scratch: Path, data: bytes
) -> None:
    path = scratch / "Dockerfile"
    path.write_bytes(data)
    try:
        df = parse_dockerfile_at(path)
        make_plan(PlanRequest(df, {"X": "y"}, None, "none"), _image())
    except BuildError as err:
        assert err.file == str(path), f"{err!r} has no file"
        assert err.line is not None and 1 <= err.line <= data.count(b"\n") + 1, repr(err)


@FUZZ
@given(st.lists(NUMBER | VALUE, min_size=1, max_size=4))
def test_hostile_flag_values_fail_with_our_errors_only(values: list[str]) -> None:
    v = values[0]
    checks: list[Callable[[], object]] = [
        lambda: normalize(v),
        lambda: parse_reference(v),
        lambda: parse_reference(f"localhost:{v}/x"),
        lambda: parse_resources(v, None, None),
        lambda: check_url(f"http://{v}/x"),
        lambda: parse_duration_ns(v),
        lambda: source_date_epoch({"SOURCE_DATE_EPOCH": v}, None),
        lambda: parse_signal(v),
    ]
    for call in checks:
        with contextlib.suppress(BuildError, CacheError):
            call()


# -- archives -------------------------------------------------------------------------

TYPES = [
    tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.LNKTYPE, tarfile.SYMTYPE, tarfile.CHRTYPE,
    tarfile.BLKTYPE, tarfile.DIRTYPE, tarfile.FIFOTYPE, tarfile.CONTTYPE, b"Z", b"V", b"S",
]  # fmt: skip
NAME_PART = st.sampled_from(["a", "b", ".", "..", "", ".wh.a", ".wh..wh..opq", "x" * 256, "\0"])
NAME = st.lists(NAME_PART | WORDS, min_size=1, max_size=6).map("/".join) | st.sampled_from(
    ["/abs", "a/" * 2100 + "f", "d/" * 300 + "f", "a\0b", "\udcff"]
)
INT = st.sampled_from([0, 1, 7, 2**21, 2**31, 2**32 - 1, 2**32, 2**63, 10**30, -1, -(2**40)])
INT |= st.integers(0, 70000)


@st.composite
def member(draw: st.DrawFn) -> bytes:
    """One header (PAX) and its data; may claim more data than it carries."""
    info = tarfile.TarInfo("placeholder")
    name = draw(NAME)
    info.type = draw(st.sampled_from(TYPES))
    info.pax_headers = {"path": name}
    if draw(st.booleans()):
        info.pax_headers["linkpath"] = draw(NAME)
    for key in ("uid", "gid", "mode", "mtime", "devmajor", "devminor"):
        if draw(st.booleans()):
            setattr(info, key, draw(INT))
    if draw(st.booleans()):
        info.pax_headers[
            "SCHILY.xattr." + draw(st.sampled_from(["user.a", "user.\0", "trusted.overlay.opaque"]))
        ] = "y"
    if draw(st.booleans()):
        info.pax_headers["mtime"] = draw(st.sampled_from(["nan", "inf", "-1e300", "1e30", "x"]))
    data = draw(st.binary(max_size=64))
    info.size = draw(st.sampled_from([len(data), len(data) + 1, 2**33, 10**20]))
    try:
        header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    except (ValueError, OverflowError, tarfile.TarError):
        header = tarfile.TarInfo("skipped").tobuf(tarfile.PAX_FORMAT)
        data = b""
    pad = (-len(data)) % 512
    return header + data + b"\0" * pad


@st.composite
def archive(draw: st.DrawFn) -> bytes:
    body = b"".join(draw(st.lists(member(), min_size=1, max_size=6)))
    end = draw(st.sampled_from([b"\0" * 1024, b"", b"\0" * 100]))
    cut = draw(st.sampled_from([None, 100, 513, 1500]))
    data = body + end
    return data[:cut] if cut is not None and cut < len(data) else data


@pytest.fixture(scope="module")
def blobs(tmp_path_factory: pytest.TempPathFactory) -> BlobStore:
    return BlobStore(tmp_path_factory.mktemp("store"))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("work")


def _fresh(work: Path) -> Iterator[Path]:
    """An empty destination beside a sentinel dir that must stay empty."""
    case = Path(tempfile.mkdtemp(dir=work))
    (case / "dest").mkdir()
    (case / "outside").mkdir()
    try:
        yield case / "dest"
        assert list((case / "outside").iterdir()) == [], "an entry landed outside"
    finally:
        shutil.rmtree(case, ignore_errors=True)


@FUZZ
@given(archive(), st.sampled_from(["apply", "overlay"]))
@example(b"", "apply")
def test_hostile_layers_extract_or_fail_with_a_cache_error(
    blobs: BlobStore, work: Path, data: bytes, mode: str
) -> None:
    if mode == "overlay" and os.geteuid() != 0:
        mode = "apply"
    digest = blobs.put_bytes(data)
    layer = Descriptor(MEDIA_OCI_LAYER, digest, len(data))
    for dest in _fresh(work):
        with contextlib.suppress(CacheError):
            extract_layer(blobs, layer, dest, mode=mode)


def _self_link(target: bytes = b".") -> bytes:
    """A dir ``a`` and a symlink ``a/.`` to ``target``, which cannot be made: tarfile's
    fallback copies the target, and for ``.`` that copy recurses without end."""
    top = tarfile.TarInfo("a")
    top.type = tarfile.DIRTYPE
    link = tarfile.TarInfo("a/.")
    link.type, link.linkname = tarfile.SYMTYPE, target.decode()
    return top.tobuf(tarfile.PAX_FORMAT) + link.tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024


def _huge_member() -> bytes:
    info = tarfile.TarInfo("a")
    info.size = 10**20  # past 2**63: a seek over its data overflows
    return info.tobuf(tarfile.PAX_FORMAT)


@FUZZ
@given(archive())
@example(_huge_member() + tarfile.TarInfo("b").tobuf(tarfile.PAX_FORMAT))
def test_hostile_archives_added_or_fail_with_a_build_error(work: Path, data: bytes) -> None:
    for dest in _fresh(work):
        source = dest.parent / "a.tar"
        source.write_bytes(data)
        with contextlib.suppress(BuildError):
            extract_archive(dest, source, "/x")


@FUZZ
@given(archive())
@example(tarfile.TarInfo("").tobuf(tarfile.PAX_FORMAT) + b"\0" * 1024)
@example(_huge_member() + tarfile.TarInfo("b").tobuf(tarfile.PAX_FORMAT))
@example(_self_link())
def test_hostile_context_tars_extract_or_fail_with_a_build_error(work: Path, data: bytes) -> None:
    for dest in _fresh(work):
        with contextlib.suppress(BuildError):
            extract_context_tar(data, dest)
