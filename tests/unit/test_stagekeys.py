"""Content keys of stage sources, read from overlay-form layer dirs (no mount, no root
except where a whiteout needs mknod)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.ops.context import _read_file
from builder.ops.stagekeys import copy_content, mount_content
from builder.ops.stagetree import StageTree
from cache.keys import KeyInputs, explain_miss


def _layer(root: Path, files: dict[str, str]) -> Path:
    """A layer dir holding ``files`` (path -> content; a value "->x" is a symlink to x)."""
    root.mkdir(parents=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if content.startswith("->"):
            os.symlink(content[2:], path)
        else:
            path.write_text(content)
    return root


def _mount_fp(lowers: list[Path], source: str = "/wheels") -> str:
    return mount_content(lowers, source, "/wheels", _read_file).fingerprint


def test_mount_key_ignores_mtimes(tmp_path: Path) -> None:
    one = _layer(tmp_path / "one", {"wheels/a.whl": "A"})
    two = _layer(tmp_path / "two", {"wheels/a.whl": "A"})
    os.utime(two / "wheels" / "a.whl", (1, 1))
    os.utime(two / "wheels", (1, 1))
    assert _mount_fp([one]) == _mount_fp([two])


def test_mount_key_ignores_paths_outside_its_source(tmp_path: Path) -> None:
    one = _layer(tmp_path / "one", {"wheels/a.whl": "A", "src/main.py": "1"})
    two = _layer(tmp_path / "two", {"wheels/a.whl": "A", "src/main.py": "2"})
    assert _mount_fp([one]) == _mount_fp([two])


def test_mount_key_changes_with_content_mode_and_names_the_file(tmp_path: Path) -> None:
    base = _layer(tmp_path / "base", {"wheels/a.whl": "A", "wheels/b.whl": "B"})
    edited = _layer(tmp_path / "edited", {"wheels/a.whl": "A", "wheels/b.whl": "B2"})
    chmodded = _layer(tmp_path / "chmodded", {"wheels/a.whl": "A", "wheels/b.whl": "B"})
    (chmodded / "wheels" / "a.whl").chmod(0o600)
    old = mount_content([base], "/wheels", "/wheels", _read_file)
    new = mount_content([edited], "/wheels", "/wheels", _read_file)
    assert old.fingerprint != new.fingerprint != _mount_fp([chmodded]) != old.fingerprint
    before = KeyInputs("p", "RUN x", (), (("mount:/wheels", old.fingerprint),), files=old.files)
    after = KeyInputs("p", "RUN x", (), (("mount:/wheels", new.fingerprint),), files=new.files)
    assert explain_miss(before, after) == ["file /wheels/b.whl changed (content)"]


def test_upper_layer_wins_and_an_added_file_changes_the_key(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "lower", {"wheels/a.whl": "old"})
    upper = _layer(tmp_path / "upper", {"wheels/a.whl": "new", "wheels/c.whl": "C"})
    flat = _layer(tmp_path / "flat", {"wheels/a.whl": "new", "wheels/c.whl": "C"})
    assert _mount_fp([upper, lower]) == _mount_fp([flat])
    assert _mount_fp([upper, lower]) != _mount_fp([lower])


@pytest.mark.skipif(os.geteuid() != 0, reason="a whiteout is a 0/0 char device: needs root")
def test_whiteout_and_opaque_dir_hide_lower_entries(tmp_path: Path) -> None:
    lower = _layer(tmp_path / "lower", {"wheels/a.whl": "A", "wheels/old/x": "X", "d/y": "Y"})
    upper = _layer(tmp_path / "upper", {"wheels/old/z": "Z"})
    os.mknod(upper / "wheels" / "a.whl", stat.S_IFCHR, os.makedev(0, 0))
    os.setxattr(upper / "wheels" / "old", "user.overlay.opaque", b"y")
    flat = _layer(tmp_path / "flat", {"wheels/old/z": "Z"})
    assert _mount_fp([upper, lower]) == _mount_fp([flat])
    tree = StageTree([upper, lower])
    assert tree.lookup("/wheels/a.whl") is None
    assert tree.lookup("/d/y") is not None


def test_copy_key_follows_links_inside_the_stage_and_expands_wildcards(tmp_path: Path) -> None:
    stage = _layer(
        tmp_path / "s",
        {"opt/w/a.whl": "A", "opt/w/b.txt": "B", "wheels": "->/opt/w", "up": "->../../opt"},
    )
    linked = copy_content([stage], ["/wheels/a.whl"], _read_file)
    assert [name for name, _ in linked.files] == ["/opt/w/a.whl"]
    climbed = copy_content([stage], ["/up/w/a.whl"], _read_file)  # .. stops at the root
    assert climbed.files == linked.files
    globbed = copy_content([stage], ["/opt/w/*.whl"], _read_file)
    assert [name for name, _ in globbed.files] == ["/opt/w/a.whl"]


def test_copy_key_of_a_missing_source_differs_from_an_existing_one(tmp_path: Path) -> None:
    stage = _layer(tmp_path / "s", {"a": "A"})
    missing = copy_content([stage], ["/nope"], _read_file)
    assert missing.files == ()
    assert missing.fingerprint != copy_content([stage], ["/a"], _read_file).fingerprint
    added = _layer(tmp_path / "t", {"a": "A", "nope": ""})
    assert copy_content([added], ["/nope"], _read_file).fingerprint != missing.fingerprint


def test_wildcard_above_the_last_part_keys_the_whole_tree_below(tmp_path: Path) -> None:
    one = _layer(tmp_path / "one", {"src/a/x.py": "1", "src/b/y.txt": "1", "etc/z": "1"})
    two = _layer(tmp_path / "two", {"src/a/x.py": "1", "src/b/y.txt": "2", "etc/z": "2"})
    deep_one = copy_content([one], ["/src/*/x.py"], _read_file)
    deep_two = copy_content([two], ["/src/*/x.py"], _read_file)
    assert deep_one.fingerprint != deep_two.fingerprint  # src/b is searched too
    assert copy_content([one], ["/etc/../src/a/x.py"], _read_file).files == (
        copy_content([two], ["/src/a/x.py"], _read_file).files
    )


def test_an_unreadable_layer_is_a_build_error(tmp_path: Path) -> None:
    stage = _layer(tmp_path / "s", {"w/a": "A"})
    with pytest.raises(BuildError, match="cannot read"):
        mount_content([stage], "/w", "/w", _broken)


def _broken(path: Path, st: os.stat_result | None = None) -> bytes:
    raise PermissionError(13, "Permission denied", str(path))


@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another uid needs root")
def test_owner_counts_and_a_rootless_owner_xattr_stands_for_it(tmp_path: Path) -> None:
    plain = _layer(tmp_path / "plain", {"w/a": "A"})
    chowned = _layer(tmp_path / "chowned", {"w/a": "A"})
    os.chown(chowned / "w" / "a", 7, 8)
    recorded = _layer(tmp_path / "recorded", {"w/a": "A"})
    os.setxattr(recorded / "w" / "a", "user.pybuild.owner", b"7:8")
    assert _mount_fp([plain], "/w") != _mount_fp([chowned], "/w")
    assert _mount_fp([recorded], "/w") == _mount_fp([chowned], "/w")


def test_the_store_dir_of_the_top_layer_is_not_content(tmp_path: Path) -> None:
    one = _layer(tmp_path / "one", {"a": "A"})
    two = _layer(tmp_path / "two", {"a": "A"})
    two.chmod(0o700)
    assert _mount_fp([one], "/") == _mount_fp([two], "/")
