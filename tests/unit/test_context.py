"""Behaviour of the build context: ignore files, walking and COPY source lookup."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from builder.errors import BuildError
from builder.ops.context import BuildContext

Tree = Callable[..., Path]


@pytest.fixture
def tree(tmp_path: Path) -> Tree:
    """Write files (name -> content; content None makes a directory) under a context root."""

    def make(**files: str | None) -> Path:
        root = tmp_path / "ctx"
        root.mkdir(exist_ok=True)
        for name, content in files.items():
            path = root / name.replace("__", "/")
            if content is None:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
        return root

    return make


def rels(ctx: BuildContext, rel: str = "") -> list[str]:
    return [e.rel for e in ctx.walk(rel)]


def test_context_root_must_be_a_directory(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(BuildError, match="not a directory"):
        BuildContext(tmp_path / "file")
    with pytest.raises(BuildError):
        BuildContext(tmp_path / "missing")


def test_dockerignore_at_root_is_applied(tree: Tree) -> None:
    root = tree(**{".dockerignore": "*.log\n", "a.log": "", "b.txt": ""})
    ctx = BuildContext(root)
    assert ctx.is_ignored("a.log")
    assert rels(ctx) == [".dockerignore", "b.txt"]


def test_dockerfile_specific_ignore_file_replaces_dockerignore(tree: Tree) -> None:
    root = tree(**{".dockerignore": "a\n", "Dockerfile.dockerignore": "b\n", "a": "", "b": ""})
    ctx = BuildContext(root, dockerfile=root / "Dockerfile")
    assert ctx.ignore_file == root / "Dockerfile.dockerignore"
    assert not ctx.is_ignored("a")
    assert ctx.is_ignored("b")


def test_ignore_file_for_named_dockerfile_is_looked_up_beside_it(tree: Tree) -> None:
    root = tree(
        **{
            ".dockerignore": "a\n",
            "docker__app.Dockerfile": "FROM scratch\n",
            "docker__app.Dockerfile.dockerignore": "b\n",
            "a": "",
            "b": "",
        }
    )
    ctx = BuildContext(root, dockerfile=root / "docker" / "app.Dockerfile")
    assert ctx.is_ignored("b") and not ctx.is_ignored("a")


def test_dockerignore_used_when_dockerfile_has_no_own_ignore_file(tree: Tree) -> None:
    root = tree(**{".dockerignore": "a\n", "a": ""})
    assert BuildContext(root, dockerfile=root / "Other.Dockerfile").is_ignored("a")


def test_invalid_ignore_file_error_names_that_file(tree: Tree) -> None:
    root = tree(**{".dockerignore": "ok\n[oops\n"})
    with pytest.raises(BuildError) as info:
        BuildContext(root)
    assert info.value.file == str(root / ".dockerignore")
    assert info.value.hint


def test_walk_lists_dirs_before_contents_depth_first_in_byte_order(tree: Tree) -> None:
    root = tree(**{"b": "", "a__z": "", "a__y__x": "", "a-b": "", "C": ""})
    assert rels(BuildContext(root)) == ["C", "a", "a/y", "a/y/x", "a/z", "a-b", "b"]


def test_walk_of_root_never_yields_the_root(tree: Tree) -> None:
    root = tree(f="")
    assert "" not in rels(BuildContext(root))


def test_walk_of_a_dir_yields_the_dir_then_contents(tree: Tree) -> None:
    root = tree(src__a="", src__sub__b="", other="")
    assert rels(BuildContext(root), "src") == ["src", "src/a", "src/sub", "src/sub/b"]


def test_reincluded_file_brings_its_ignored_parent_dir(tree: Tree) -> None:
    root = tree(**{".dockerignore": "docs\n!docs/keep.md\n", "docs__keep.md": "", "docs__x": ""})
    assert rels(BuildContext(root)) == [".dockerignore", "docs", "docs/keep.md"]


def test_ignored_dir_with_nothing_reincluded_is_absent(tree: Tree) -> None:
    root = tree(**{".dockerignore": "docs\n!**/*.md\n", "docs__x": "", "docs__sub": None})
    assert rels(BuildContext(root)) == [".dockerignore"]


def test_walk_never_reads_a_dir_excluded_entirely(
    tree: Tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = {f"node_modules__pkg{i}__index.js": "" for i in range(200)}
    root = tree(**{".dockerignore": "node_modules\n!*.md\n", "app.js": "", **files})
    listed: list[str] = []
    real_listdir = os.listdir

    def spy(path: str | os.PathLike[str]) -> list[str]:
        listed.append(os.fspath(path))
        return real_listdir(path)

    monkeypatch.setattr(os, "listdir", spy)
    assert rels(BuildContext(root)) == [".dockerignore", "app.js"]
    assert not [p for p in listed if "node_modules" in p]


def test_entry_records_kind_mode_size_and_link(tree: Tree) -> None:
    root = tree(f="hello", d=None)
    os.chmod(root / "f", 0o4755)
    os.symlink("f", root / "l")
    os.mkfifo(root / "p")
    entries = {e.rel: e for e in BuildContext(root).walk("")}
    assert (entries["f"].kind, entries["f"].mode, entries["f"].size) == ("file", 0o4755, 5)
    assert entries["d"].kind == "dir"
    assert (entries["l"].kind, entries["l"].link_target) == ("symlink", "f")
    assert entries["p"].kind == "other"
    assert entries["f"].path == root / "f"


def test_symlinks_below_a_source_are_entries_not_followed(tree: Tree) -> None:
    root = tree(src__a="", real__inner="")
    os.symlink("../real", root / "src" / "link")
    assert rels(BuildContext(root), "src") == ["src", "src/a", "src/link"]


def test_top_level_symlink_source_is_followed(tree: Tree) -> None:
    root = tree(real__a="x")
    os.symlink("real", root / "link")
    entries = list(BuildContext(root).walk("link"))
    assert [(e.rel, e.kind) for e in entries] == [("link", "dir"), ("link/a", "file")]
    assert entries[1].path == root / "real" / "a"


def test_resolve_dot_is_the_root(tree: Tree) -> None:
    ctx = BuildContext(tree(a=""))
    assert ctx.resolve_sources(".") == [""]
    assert ctx.resolve_sources("./") == [""]


def test_resolve_plain_source_returns_it_cleaned(tree: Tree) -> None:
    ctx = BuildContext(tree(src__a=""))
    assert ctx.resolve_sources("./src//a") == ["src/a"]
    assert ctx.resolve_sources("src/") == ["src"]


def test_parent_components_are_cleaned_against_the_root(tree: Tree) -> None:
    # BuildKit joins sources onto "/": ../a and /a both mean the context's a.
    ctx = BuildContext(tree(a=""))
    assert ctx.resolve_sources("../a") == ["a"]
    assert ctx.resolve_sources("/a") == ["a"]
    assert ctx.resolve_sources("../../..") == [""]


def test_wildcards_match_per_segment_in_order(tree: Tree) -> None:
    ctx = BuildContext(tree(b__x_txt="", a_txt="", sub__a_txt="", c_md=""))
    assert ctx.resolve_sources("*_txt") == ["a_txt"]
    assert ctx.resolve_sources("*/*_txt") == ["b/x_txt", "sub/a_txt"]
    assert ctx.resolve_sources("[ab]*") == ["a_txt", "b"]


def test_wildcard_matches_dotfiles_and_skips_ignored(tree: Tree) -> None:
    ctx = BuildContext(tree(**{".dockerignore": "b.txt\n", ".a.txt": "", "b.txt": "", "c.txt": ""}))
    assert ctx.resolve_sources("*.txt") == [".a.txt", "c.txt"]


def test_wildcard_matches_ignored_dir_holding_reincluded_file(tree: Tree) -> None:
    root = tree(**{".dockerignore": "d*\n!dx/keep\n", "dx__keep": "", "dy__f": ""})
    assert BuildContext(root).resolve_sources("d*") == ["dx"]


def test_excludes_drop_wildcard_matches(tree: Tree) -> None:
    ctx = BuildContext(tree(home_a="", home_b_txt="", other=""))
    assert ctx.resolve_sources("home*", excludes=["*txt"]) == ["home_a"]


def test_walk_excludes_match_paths_relative_to_the_source(tree: Tree) -> None:
    ctx = BuildContext(tree(src__a_txt="", src__b="", src__d__c_txt=""))
    got = [e.rel for e in ctx.walk("src", excludes=["*_txt", "d"])]
    assert got == ["src", "src/b"]


def test_missing_source_error_names_the_source(tree: Tree) -> None:
    ctx = BuildContext(tree(a=""))
    with pytest.raises(BuildError) as info:
        ctx.resolve_sources("nope/x.txt")
    assert "file not found in build context" in info.value.message
    assert "nope/x.txt" in info.value.message
    assert info.value.hint


def test_wildcard_without_match_names_no_path(tree: Tree) -> None:
    # BuildKit's COPY sets AllowEmptyWildcard: `COPY foo nomatch* /` copies foo.
    assert BuildContext(tree(a="")).resolve_sources("*.go") == []


def test_ignored_source_is_not_found_and_hint_says_why(tree: Tree) -> None:
    ctx = BuildContext(tree(**{".dockerignore": "secret\n", "secret": ""}))
    with pytest.raises(BuildError) as info:
        ctx.resolve_sources("secret")
    assert info.value.hint and ".dockerignore" in info.value.hint
    with pytest.raises(BuildError):
        list(ctx.walk("secret"))


def test_file_used_as_directory_is_not_found(tree: Tree) -> None:
    with pytest.raises(BuildError, match="file not found"):
        BuildContext(tree(a="")).resolve_sources("a/b")


def test_symlink_to_absolute_host_path_cannot_escape(tree: Tree) -> None:
    root = tree(a="")
    os.symlink("/etc", root / "etc-link")
    with pytest.raises(BuildError) as info:
        BuildContext(root).resolve_sources("etc-link/passwd")
    assert info.value.hint and "outside the build context" in info.value.hint


def test_symlink_climbing_above_the_root_cannot_escape(tree: Tree, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("host file")
    root = tree(sub__a="")
    os.symlink("../../secret", root / "sub" / "link")
    with pytest.raises(BuildError) as info:
        list(BuildContext(root).walk("sub/link"))
    assert info.value.hint and "outside the build context" in info.value.hint


def test_absolute_symlink_resolves_inside_the_context(tree: Tree) -> None:
    root = tree(etc__passwd="context copy")
    os.symlink("/etc/passwd", root / "link")
    (entry,) = list(BuildContext(root).walk("link"))
    assert entry.path == root / "etc" / "passwd"


def test_symlink_loop_is_an_error(tree: Tree) -> None:
    root = tree(a="")
    os.symlink("l2", root / "l1")
    os.symlink("l1", root / "l2")
    with pytest.raises(BuildError, match="symbolic links"):
        BuildContext(root).resolve_sources("l1")


def test_ignored_symlink_component_is_not_followed(tree: Tree) -> None:
    root = tree(**{".dockerignore": "link\n", "real__a": ""})
    os.symlink("real", root / "link")
    with pytest.raises(BuildError):
        BuildContext(root).resolve_sources("link/a")


def test_symlink_to_parent_dir_resolves_to_that_dir(tree: Tree) -> None:
    root = tree(a__f="", g="")
    os.symlink("..", root / "a" / "up")
    entries = list(BuildContext(root).walk("a/up"))
    assert (entries[0].rel, entries[0].kind) == ("a/up", "dir")
    assert "a/up/g" in [e.rel for e in entries]
