"""Layer manifests and fingerprints: what an unpacked layer held when it was placed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cache.layermeta import LayerMeta, compare, fingerprint, manifest, manifest_row


def _tree(root: Path) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.link(root / "etc" / "passwd", root / "etc" / "passwd-")
    os.symlink("passwd", root / "etc" / "link")
    return root


def test_an_added_file_changes_fingerprint_and_manifest(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    fp, before = fingerprint(tree), manifest(tree)
    (tree / "etc" / "new").write_text("x")
    assert fingerprint(tree) != fp
    mismatch = compare(before, manifest(tree))
    assert mismatch.added == ("etc/new",)
    assert "added: etc/new" in mismatch.describe()


def test_a_same_size_edit_with_the_old_mtime_changes_the_fingerprint(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    target = tree / "etc" / "passwd"
    st = target.stat()
    fp, before = fingerprint(tree), manifest(tree)
    target.write_text("evil:x:0:0::/root:/bin/sh\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint(tree) != fp  # the ctime moved, and no user can set it back
    mismatch = compare(before, manifest(tree))
    assert set(mismatch.changed) == {"etc/passwd", "etc/passwd-"}


def test_a_changed_symlink_target_and_mode_show_in_the_manifest(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    before = manifest(tree)
    os.unlink(tree / "etc" / "link")
    os.symlink("/etc/shadow", tree / "etc" / "link")
    os.chmod(tree / "etc", 0o777)
    assert compare(before, manifest(tree)).changed == ("etc", "etc/link")


def test_an_untouched_tree_matches_itself(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    assert fingerprint(tree) == fingerprint(tree)
    assert not compare(manifest(tree), manifest(tree))


def test_walks_a_tree_deeper_than_the_recursion_limit(tmp_path: Path) -> None:
    tree = tmp_path / "deep"
    tree.mkdir()
    fd = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(1200):  # 2,400 chars: within PATH_MAX, past 1,000 stack frames
        os.mkdir("d", dir_fd=fd)
        fd, parent = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd), fd
        os.close(parent)
    os.close(fd)
    deep = Path(os.path.join(tree, *["d"] * 1200))
    (deep / "leaf").write_text("x")
    fp, before = fingerprint(tree), manifest(tree)
    assert len(before) == 1 + 1200 + 1
    (deep / "leaf").write_text("y")
    assert fingerprint(tree) != fp
    assert compare(before, manifest(tree)).changed[-1].endswith("/leaf")
    _remove_chain(tree, 1200)  # pytest's own clean-up recurses, and would fail on it


def _remove_chain(tree: Path, depth: int) -> None:
    fds = [os.open(tree, os.O_RDONLY | os.O_DIRECTORY)]
    for _ in range(depth):
        fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    for fd in reversed(fds):
        for name in os.listdir(fd):
            if name == "d":
                os.rmdir(name, dir_fd=fd)
            else:
                os.unlink(name, dir_fd=fd)
        os.close(fd)


def test_manifests_record_contents_as_xxh3(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    row = json.loads(next(line for line in manifest(tree) if line.startswith('["etc/passwd"')))
    assert row[6].startswith("xxh3:")


def test_a_manifest_recorded_with_sha256_is_checked_with_sha256(tmp_path: Path) -> None:
    tree = _tree(tmp_path / "t")
    meta = LayerMeta(tmp_path, tmp_path)
    (meta.root / "l.manifest").write_text("\n".join(manifest(tree, legacy=True)) + "\n")
    assert meta.check("l", tree) == compare([], [])  # no difference
    target = tree / "etc" / "passwd"
    st = target.stat()
    target.write_text("evil:x:0:0::/root:/bin/sh\n")
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    mismatch = meta.check("l", tree)
    assert mismatch is not None
    assert set(mismatch.changed) == {"etc/passwd", "etc/passwd-"}


@pytest.mark.parametrize(
    "name",
    ["plain.txt", 'quote"d', "back\\slash", "tab\there", "del\x7f", "caf\u00e9", "\udcff", ""],
)
@pytest.mark.parametrize("xattrs", [(), (("user.k", b"v"),)])
def test_a_manifest_row_is_the_canonical_json_of_its_fields(
    tmp_path: Path, name: str, xattrs: tuple[tuple[str, bytes], ...]
) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = os.lstat(path)
    for content in ("xxh3:00ff", 'odd"hash'):
        fields: list[object] = [name, st.st_mode, st.st_uid, st.st_gid, st.st_size]
        fields += [st.st_mtime_ns, content, {k: v.hex() for k, v in xattrs}]
        want = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
        assert manifest_row(name, st, xattrs, content=content) == want
