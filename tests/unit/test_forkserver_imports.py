"""The sandbox fork server starts on what its inits run: a build's first RUN waits for it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from runtime.forkserver import LATER_IMPORTS, socket_fd

REPO = Path(__file__).resolve().parents[2]
# What other entry points use (python -m runtime.init's arguments, rootless start-up,
# pybuild run's temp dirs), only some inits use (LATER_IMPORTS: the copy snapshotter,
# resource limits), or nothing in the runtime uses at run time (typing).
UNUSED_BY_THE_SERVER = (
    "argparse",
    "typing",
    "secrets",
    "hashlib",
    "tempfile",
    "shutil",
    "random",
    "subprocess",
    "platform",
    "threading",
    "uuid",
    "bz2",
    "lzma",
    "runtime.warmcopies",
    *LATER_IMPORTS,
)
# What the server runs before serving, in a new interpreter started as ForkServer starts
# it (-S), reporting what it loaded and whether its filter is the one compiled here.
SCRIPT = f"""
import json, sys
from runtime import forkserver
program = forkserver.prepare()
loaded = sorted(set({UNUSED_BY_THE_SERVER!r}) & set(sys.modules))
init = "runtime.init" in sys.modules
from runtime.errors import SandboxError
from runtime.seccomp import compile_default_filter
try:
    here = compile_default_filter()
except SandboxError:
    here = None
same = program == here
print(json.dumps({{"loaded": loaded, "init": init, "same": same, "filter": here is not None}}))
"""


@pytest.fixture(scope="module")
def started() -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, check=True
    )
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def test_a_started_fork_server_leaves_what_its_inits_never_run_unloaded(
    started: dict[str, Any],
) -> None:
    assert started["init"], "prepare() must load runtime.init before any init is forked"
    assert started["loaded"] == []


def test_the_fork_server_compiles_the_same_seccomp_program_as_an_init_would(
    started: dict[str, Any],
) -> None:
    if not started["filter"]:
        pytest.skip("libseccomp.so.2 cannot be loaded here (Debian's libseccomp2)")
    assert started["same"]


@pytest.mark.parametrize(
    ("argv", "fd"),
    [
        (["--socket-fd=7"], 7),
        (["--socket-fd", "12"], 12),
        (["--socket-fd"], None),
        (["--socket-fd=x"], None),
        (["--socket-fd=-1"], None),
        (["--socket-fd=3", "--extra"], None),
        ([], None),
    ],
)
def test_the_server_takes_one_socket_fd_argument(argv: list[str], fd: int | None) -> None:
    assert socket_fd(argv) == fd
