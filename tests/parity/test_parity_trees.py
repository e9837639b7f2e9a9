"""The parity comparer itself: whiteouts, hard links and normalisations (no root needed)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from pathlib import Path

from tests.parity.trees import read_archive

Entry = tuple[str, str, bytes | str | None, int]  # name, kind, data or link target, mode


def _layer(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, str(data)
                tar.addfile(info)
            else:
                body = data if isinstance(data, bytes) else b""
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _archive(tmp_path: Path, layers: list[list[Entry]], config: Mapping[str, object]) -> Path:
    path = tmp_path / "image.tar"
    names = [f"l{i}/layer.tar" for i in range(len(layers))]
    files = {"config.json": json.dumps(config).encode()}
    files |= {n: _layer(entries) for n, entries in zip(names, layers, strict=True)}
    manifest = [{"Config": "config.json", "Layers": names}]
    files["manifest.json"] = json.dumps(manifest).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_whiteout_and_opaque_dir_remove_lower_entries(tmp_path: Path) -> None:
    lower: list[Entry] = [
        ("a", "dir", None, 0o755),
        ("a/gone", "file", b"1", 0o644),
        ("b", "dir", None, 0o755),
        ("b/old", "file", b"2", 0o644),
        ("keep", "file", b"3", 0o600),
    ]
    upper: list[Entry] = [
        ("a/.wh.gone", "file", b"", 0o644),
        ("b/.wh..wh..opq", "file", b"", 0o644),
        ("b/new", "file", b"4", 0o644),
    ]
    view = read_archive(_archive(tmp_path, [lower, upper], {}))
    assert sorted(view["tree"]) == ["a", "b", "b/new", "keep"]
    assert view["tree"]["keep"]["mode"] == "0o600"
    assert view["tree"]["b/new"]["content"] == "4"


def test_hard_links_compare_as_groups_whichever_path_the_tar_names_first(
    tmp_path: Path,
) -> None:
    one: list[Entry] = [("x", "file", b"data", 0o755), ("y", "hardlink", "x", 0o755)]
    other: list[Entry] = [("y", "file", b"data", 0o755), ("x", "hardlink", "y", 0o755)]
    a = read_archive(_archive(_dir(tmp_path / "a"), [one], {}))
    b = read_archive(_archive(_dir(tmp_path / "b"), [other], {}))
    assert a == b
    assert a["hardlinks"] == [["x", "y"]]


def test_a_mode_difference_is_not_normalised_away(tmp_path: Path) -> None:
    a = read_archive(_archive(_dir(tmp_path / "a"), [[("f", "file", b"x", 0o644)]], {}))
    b = read_archive(_archive(_dir(tmp_path / "b"), [[("f", "file", b"x", 0o640)]], {}))
    assert a != b


def test_go_omitempty_and_old_healthcheck_history_are_normalised(tmp_path: Path) -> None:
    old = 'HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" \'\\x02\'}'
    new = 'HEALTHCHECK &{["CMD-SHELL" "true"] "5s" "0s" "0s" "0s" \'\\x02\'}'
    a_cfg = {"config": {"Env": ["A=1"], "Cmd": None}, "history": [{"created_by": old}]}
    b_cfg = {"config": {"Env": ["A=1"], "Labels": {}}, "history": [{"created_by": new}]}
    a = read_archive(_archive(_dir(tmp_path / "a"), [[]], a_cfg))
    b = read_archive(_archive(_dir(tmp_path / "b"), [[]], b_cfg))
    assert a == b


def _dir(path: Path) -> Path:
    path.mkdir()
    return path
