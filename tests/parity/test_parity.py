"""Parity corpus: each case builds with pybuild and with BuildKit, and the images must match.

A case is a directory ``cases/<name>/``: its ``Dockerfile`` and context files, plus
optional

- ``case.json``: ``{"build_args": {...}, "target": "stage", "bases": {"subdir": "tag"},
  "buildkit": "why the Debian BuildKit cannot build it", "known_mismatch": {...},
  "mount_stubs": ["/mnt"]}``. ``bases`` are built first (by
  each builder into its own store) and tagged, for cases that need a base image of their
  own (inherited labels, ONBUILD). ``known_mismatch`` (``{"why": ..., "copy_history":
  true, "history": true, "layers": true, "paths": [...]}``) is a difference found here in code this
  corpus does not own: only that difference is masked, the rest must match, and the case
  xfails with the reason; it fails once the images match unmasked (remove the note).
- ``expect.json``: the hand-written expectation (from the Dockerfile reference or
  BuildKit's source, named in its ``source`` key) for a case the Debian BuildKit (dockerd
  20.10, Dockerfile frontend 1.2) cannot build: ``config``/``author``/``history``
  compared exactly, ``files`` (path -> fields) and ``absent`` (paths) compared with the
  pybuild tree; ``stderr``: texts the build's output must show, in this order (warnings),
  and ``stderr_absent`` texts it must not show;
  ``fails``: texts the failed build's error output must show, in this order (the build
  must fail, with no traceback; BuildKit must fail too); ``created``: the image
  config's ``created`` time (SOURCE_DATE_EPOCH).
- ``case.json`` may also give ``"no_cache": true`` (the case is built with
  ``--no-cache``; its ``bases`` are not), ``cached_with`` (build args of a second pybuild
  build that must take every step from the cache), and ``sockets`` (context path -> mode,
  as ``"0o751"``): git cannot hold a unix socket, so the case is copied to a temp dir and
  these are bound there before both builds. A case is built without ``-f``; one whose
  Dockerfile has another name (Dockerfile discovery) needs a ``case.json``.

The pybuild half always runs. The BuildKit half runs when a dockerd answers and a docker
client that can drive BuildKit is found; otherwise it is skipped with the reason. Both
images are saved as docker-archives and read by the same code (``tests/parity/trees.py``,
which lists every normalisation).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import REPO, Pybuild
from tests.parity.trees import read_archive

sys.path.insert(0, str(REPO / "fixtures"))

from make_base import make_base

CASES = Path(__file__).parent / "cases"
CASE_NAMES = sorted(
    p.name for p in CASES.iterdir() if (p / "Dockerfile").is_file() or (p / "case.json").is_file()
)

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


def _options(case: Path) -> dict[str, Any]:
    file = case / "case.json"
    options: dict[str, Any] = json.loads(file.read_text()) if file.is_file() else {}
    return options


def _build_flags(options: dict[str, Any]) -> list[str]:
    flags = []
    for key, value in options.get("build_args", {}).items():
        flags += ["--build-arg", f"{key}={value}"]
    if options.get("target"):
        flags += ["--target", options["target"]]
    if options.get("no_cache"):
        flags.append("--no-cache")
    return flags


def _docker_client() -> tuple[str | None, str]:
    """A docker CLI that runs BuildKit builds: a pre-23 client (BuildKit built in, as
    Debian's docker.io 20.10) or a newer one with the buildx plugin; else a reason."""
    seen = []
    for cand in (shutil.which("docker"), "/usr/bin/docker", "/usr/local/bin/docker"):
        if not cand or cand in seen or not os.access(cand, os.X_OK):
            continue
        seen.append(cand)
        info = subprocess.run([cand, "info"], capture_output=True, timeout=20, check=False)
        if info.returncode != 0:
            return None, "no dockerd answers `docker info`"
        version = subprocess.run(
            [cand, "version", "--format", "{{.Client.Version}}"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        major = int(version.split(".")[0]) if version[:1].isdigit() else 0
        if 0 < major < 23:
            return cand, ""
        buildx = subprocess.run([cand, "buildx", "version"], capture_output=True, check=False)
        if buildx.returncode == 0:
            return cand, ""
    if not seen:
        return None, "no docker client installed"
    return None, "no docker client with BuildKit (pre-23 CLI or buildx plugin)"


@pytest.fixture(scope="session")
def parity_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pybuild]:
    """One pybuild store for the corpus (cases tag ``parity-<name>``), busybox loaded."""
    work = tmp_path_factory.mktemp("parity")
    base = work / "busybox.tar"
    make_base(base, "docker", "busybox:latest")
    store = work / "store"
    store.mkdir()
    cli = Pybuild(store)
    cli("load", "-i", base)
    yield cli


@pytest.fixture(scope="session")
def docker(tmp_path_factory: pytest.TempPathFactory) -> tuple[str | None, str]:
    """The docker client to use (busybox:latest loaded into the daemon), or a skip reason."""
    client, reason = _docker_client()
    if client is None:
        return None, reason
    base = tmp_path_factory.mktemp("docker-base") / "busybox.tar"
    make_base(base, "docker", "busybox:latest")
    subprocess.run([client, "load", "-i", str(base)], capture_output=True, check=True)
    return client, ""


@pytest.fixture(scope="session")
def old_copy_history(docker: tuple[str | None, str]) -> bool:
    """Normalisation: BuildKit before v0.13 (moby/buildkit#4597; dockerd before 26, such as
    Debian's 20.10) writes no flags in COPY/ADD history; current BuildKit, like pybuild,
    writes ``--parents``, ``--chown`` and ``--chmod``. Against such a daemon those flags are
    dropped from pybuild's COPY/ADD history (tests/unit/test_copy_history.py checks the text)."""
    client = docker[0]
    if client is None:
        return False
    version = subprocess.run(
        [client, "version", "--format", "{{.Server.Version}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    major = version.split(".")[0]
    return major.isdigit() and int(major) < 26


def _in_order(text: str, wanted: list[str]) -> str:
    """The first of ``wanted`` not found in ``text`` after the previous one ("" if none)."""
    at = 0
    for piece in wanted:
        found = text.find(piece, at)
        if found < 0:
            return piece
        at = found + len(piece)
    return ""


def _pybuild_failure(cli: Pybuild, case: Path, flags: list[str], wanted: list[str]) -> None:
    done = cli.build(case, *flags, ok=False)
    assert done.code != 0, f"the build should fail; it succeeded:\n{done.err}"
    assert "Traceback" not in done.err, done.err
    missing = _in_order(done.err, wanted)
    assert not missing, f"error output lacks {missing!r} (in order):\n{done.err}"


def _pybuild_image(cli: Pybuild, case: Path, tag: str, flags: list[str], out: Path) -> Path:
    options = _options(case)
    for sub, base_tag in options.get("bases", {}).items():
        cli.build(case / sub, "-t", base_tag)
    done = cli.build(case, "-t", tag, *flags)
    expect_file = case / "expect.json"
    wanted = json.loads(expect_file.read_text()).get("stderr", []) if expect_file.is_file() else []
    missing = _in_order(done.err + done.out, wanted)
    assert not missing, f"build output lacks {missing!r} (in order):\n{done.err}"
    unwanted = json.loads(expect_file.read_text()).get("stderr_absent", []) if wanted else []
    shown = [text for text in unwanted if text in done.err + done.out]
    assert not shown, f"build output shows {shown}:\n{done.err}"
    if "cached_with" in options:
        again = cli.build(case, "-t", tag, *_build_flags({"build_args": options["cached_with"]}))
        counts = re.search(r"(\d+)/(\d+) steps cached", again.err)
        assert counts and counts[1] == counts[2], f"rebuild missed the cache:\n{again.err}"
    archive = out / "pybuild.tar"
    cli("save", "--format", "docker", "--compression", "uncompressed", "-o", archive, tag)
    return archive


def _docker_build(
    client: str, context: Path, name: str, extra: list[str]
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    return subprocess.run(
        [client, "build", "--network", "none", "-q", "-t", name, *extra, str(context)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


def _docker_image(client: str, case: Path, tag: str, flags: list[str], out: Path) -> Path:
    def build(context: Path, name: str, extra: list[str]) -> None:
        done = _docker_build(client, context, name, extra)
        assert done.returncode == 0, f"BuildKit failed on {context}:\n{done.stderr}"

    bases = list(_options(case).get("bases", {}).items())
    try:
        for sub, base_tag in bases:
            build(case / sub, base_tag, [])
        build(case, tag, flags)
        archive = out / "buildkit.tar"
        subprocess.run([client, "save", "-o", str(archive), tag], check=True, capture_output=True)
    finally:  # the daemon is shared: leave no tags behind (layers stay in its cache)
        names = [tag, *(base_tag for _, base_tag in bases)]
        subprocess.run([client, "rmi", *names], capture_output=True, check=False)
    return archive


def _diff(ours: dict[str, Any], theirs: dict[str, Any]) -> str:
    lines = []
    for key in sorted(set(ours) | set(theirs)):
        if ours.get(key) == theirs.get(key):
            continue
        if key == "tree":
            a, b = ours["tree"], theirs["tree"]
            for path in sorted(set(a) | set(b)):
                if a.get(path) != b.get(path):
                    lines.append(f"  /{path}: pybuild {a.get(path)} != {b.get(path)}")
        else:
            lines.append(f"  {key}:\n    pybuild {ours.get(key)}\n    other   {theirs.get(key)}")
    return "\n".join(lines[:60])


def _check_expectation(view: dict[str, Any], expect: dict[str, Any]) -> None:
    problems = []
    for key in ("config", "author", "history", "platform"):
        if key in expect and view[key] != expect[key]:
            problems.append(f"  {key}:\n    pybuild {view[key]}\n    expect  {expect[key]}")
    for path, fields in expect.get("files", {}).items():
        got = view["tree"].get(path.lstrip("/"))
        if got is None or {k: got.get(k) for k in fields} != fields:
            problems.append(f"  {path}: pybuild {got} != expected {fields}")
    for path in expect.get("absent", []):
        if path.lstrip("/") in view["tree"]:
            problems.append(f"  {path}: should not exist")
    assert not problems, "pybuild differs from expect.json:\n" + "\n".join(problems)


def _created(archive: Path) -> str:
    """The image config's ``created`` (the view drops times: they differ by build)."""
    with tarfile.open(archive) as tar:
        manifest = tar.extractfile("manifest.json")
        assert manifest is not None
        config = tar.extractfile(json.load(manifest)[0]["Config"])
        assert config is not None
        created: str = json.load(config)["created"]
    return created


def _drop_mount_stubs(view: dict[str, Any], stubs: list[str]) -> None:
    """Normalisation: dockerd 20.10's BuildKit (v0.8) leaves the empty directories it made
    as RUN --mount targets in the layer; BuildKit 0.9+ removes these mount stubs after the
    step, as pybuild does. Only the listed paths, and only while empty, are dropped."""
    tree = view["tree"]
    for stub in sorted((s.strip("/") for s in stubs), reverse=True):
        if tree.get(stub, {}).get("type") == "dir" and not any(
            p.startswith(stub + "/") for p in tree
        ):
            del tree[stub]


def _mask_known(
    ours: dict[str, Any], theirs: dict[str, Any], known: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Hide only the known difference, so the rest of the case is still compared:
    ``copy_history`` drops the flags from pybuild's COPY/ADD history text (BuildKit
    writes none), ``history`` skips the history, ``layers`` the layer count, ``paths`` those tree
    entries."""
    ours, theirs = dict(ours), dict(theirs)
    if known.get("copy_history"):
        ours["history"] = [_strip_copy_flags(h) for h in ours["history"]]
    if known.get("history"):
        ours["history"] = theirs["history"] = []
    if known.get("layers"):
        ours["layers"] = theirs["layers"] = 0
    for path in known.get("paths", []):
        for view in (ours, theirs):
            view["tree"] = {p: e for p, e in view["tree"].items() if p != path.strip("/")}
    return ours, theirs


def _expose_as_set(entry: dict[str, Any]) -> dict[str, Any]:
    """Normalisation: EXPOSE history is ``EXPOSE [80/tcp 53/udp]`` (the parsed list) from
    Dockerfile 1.19 (BuildKit 98eab3257), as pybuild writes it, and ``EXPOSE map[53/udp:{}
    80/tcp:{}]`` before; against an older daemon both become the sorted set of ports."""
    text = entry["created_by"]
    if not text.startswith("EXPOSE "):
        return entry
    ports = re.findall(r"\d+/[a-z]+", text)
    return {**entry, "created_by": "EXPOSE " + " ".join(sorted(set(ports)))}


def _strip_copy_flags(entry: dict[str, Any]) -> dict[str, Any]:
    words = entry["created_by"].split(" ")
    if words[0] not in ("COPY", "ADD"):
        return entry
    kept = [words[0], *(w for w in words[1:] if not w.startswith("--"))]
    return {**entry, "created_by": " ".join(kept)}


def _with_sockets(case: Path, sockets: dict[str, str], tmp_path: Path) -> Path:
    """A copy of ``case`` with unix sockets bound at the given paths (then closed: the
    socket file stays)."""
    copy = tmp_path / "context" / case.name
    shutil.copytree(case, copy, symlinks=True)
    here = Path.cwd()
    for rel, mode in sockets.items():
        path = copy / rel
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            os.chdir(path.parent)  # a relative name: AF_UNIX paths are short
            sock.bind(path.name)
        finally:
            os.chdir(here)
            sock.close()
        os.chmod(path, int(mode, 8))
    return copy


def _check_buildkit_fails(
    docker: tuple[str | None, str], case: Path, tag: str, flags: list[str], options: dict[str, Any]
) -> None:
    """BuildKit refuses ``case`` too, unless the case is one BuildKit cannot build (the
    Debian BuildKit lacks the feature) or no docker client is there to ask."""
    client, _ = docker
    if options.get("buildkit") or client is None:
        return
    done = _docker_build(client, case, tag, flags)
    assert done.returncode != 0, f"BuildKit built {case.name}, which should fail"


def test_corpus_has_enough_cases() -> None:
    assert len(CASE_NAMES) >= 30, CASE_NAMES


@pytest.mark.parametrize("name", CASE_NAMES)
def test_parity(
    name: str,
    parity_store: Pybuild,
    docker: tuple[str | None, str],
    old_copy_history: bool,
    tmp_path: Path,
) -> None:
    case = CASES / name
    options = _options(case)
    if "sockets" in options:
        case = _with_sockets(case, options["sockets"], tmp_path)
    flags = _build_flags(options)
    tag = f"parity-{name}:latest"
    expect_file = case / "expect.json"
    expect = json.loads(expect_file.read_text()) if expect_file.is_file() else {}
    if "fails" in expect:
        _pybuild_failure(parity_store, case, flags, expect["fails"])
        _check_buildkit_fails(docker, case, tag, flags, options)
        return
    archive = _pybuild_image(parity_store, case, tag, flags, tmp_path)
    ours = read_archive(archive)
    if expect:
        _check_expectation(ours, expect)
    if "created" in expect:
        assert _created(archive) == expect["created"], "image config `created` differs"
    if options.get("buildkit"):
        # Checked against expect.json above: the Debian BuildKit lacks the feature.
        assert expect_file.is_file(), "a case BuildKit cannot build needs an expect.json"
        return
    client, reason = docker
    if client is None:
        pytest.skip(f"BuildKit half not run: {reason}")
    theirs = read_archive(_docker_image(client, case, tag, flags, tmp_path))
    _drop_mount_stubs(theirs, options.get("mount_stubs", []))
    if old_copy_history:
        ours["history"] = [_strip_copy_flags(h) for h in ours["history"]]
        ours["history"] = [_expose_as_set(h) for h in ours["history"]]
        theirs["history"] = [_expose_as_set(h) for h in theirs["history"]]
    known = options.get("known_mismatch")
    if known:
        assert ours != theirs, f"{name} now matches BuildKit: remove known_mismatch"
        ours, theirs = _mask_known(ours, theirs, known)
    assert ours == theirs, f"{name}: pybuild differs from BuildKit:\n{_diff(ours, theirs)}"
    if known:
        pytest.xfail(f"known mismatch, masked (everything else matched): {known['why']}")
