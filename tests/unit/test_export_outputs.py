"""``-o`` specs: output types and the archive ``compression=`` option."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import UsageError
from builder.exporters.outputs import Output, parse_compression, parse_output
from cache.layers import Compression


@pytest.mark.parametrize("kind", ["oci", "docker"])
def test_archive_outputs_default_to_gzip_like_buildkit(kind: str) -> None:
    assert parse_output(f"type={kind},dest=out.tar") == Output(
        kind, Path("out.tar"), None, Compression.GZIP
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [("gzip", Compression.GZIP), ("zstd", Compression.ZSTD), ("uncompressed", Compression.NONE)],
)
def test_compression_option_picks_the_layer_compression(value: str, expected: Compression) -> None:
    spec = f"type=oci,dest=o.tar,compression={value},name=app:1"
    assert parse_output(spec) == Output("oci", Path("o.tar"), "app:1", expected)


def test_unknown_compression_names_the_spec_and_the_choices() -> None:
    with pytest.raises(UsageError, match="unknown compression 'lz4'") as info:
        parse_output("type=docker,dest=o.tar,compression=lz4")
    assert info.value.hint is not None and "uncompressed" in info.value.hint


def test_compression_is_refused_for_a_local_output() -> None:
    with pytest.raises(UsageError, match="archives only"):
        parse_output("type=local,dest=dir,compression=gzip")


def test_local_output_has_no_compression() -> None:
    assert parse_output("type=local,dest=dir").compression is None
    assert parse_output("some/dir").compression is None


def test_parse_compression_does_not_take_our_internal_name_none() -> None:
    with pytest.raises(UsageError):
        parse_compression("none", "--compression")
