"""The live terminal view, in a real terminal (tmux): on stderr, each step shown once,
nothing stale left behind, and stdout untouched when it is redirected."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Pybuild, write_context

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt: tmux)"),
]


def _tmux(*args: str) -> str:
    done = subprocess.run(["tmux", *args], capture_output=True, text=True, check=True)
    return done.stdout


def test_live_view_is_on_stderr_and_leaves_one_clean_line_per_step(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {"a.txt": "a\n"},
        "FROM busybox\nCOPY a.txt /a.txt\nRUN echo working; sleep 2; echo done-run\n",
    )
    out, done = tmp_path / "stdout.txt", tmp_path / "exit"
    command = (
        f"cd {shlex.quote(str(REPO))} && PYBUILD_ROOT={shlex.quote(str(pybuild.root))} "
        f"{shlex.quote(sys.executable)} -m builder.cli build --progress tty -t tty:1 "
        f"{shlex.quote(str(ctx))} > {shlex.quote(str(out))}; echo $? > {shlex.quote(str(done))}"
    )
    session = f"pybuild-{uuid.uuid4().hex[:8]}"
    _tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", command + "; sleep 30")
    try:
        live_seen = False
        deadline = time.monotonic() + 120
        while not done.exists() and time.monotonic() < deadline:
            screen = _tmux("capture-pane", "-p", "-t", session)
            live_seen = live_seen or "RUN echo working" in screen
            time.sleep(0.2)
        assert done.exists() and done.read_text().strip() == "0"
        screen = _tmux("capture-pane", "-p", "-t", session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], check=False)
    assert live_seen  # the live region was drawn although stdout went to a file
    assert out.read_text() == ""  # nothing of the view (nor escape codes) on stdout
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    run_lines = [line for line in lines if "RUN echo working" in line]
    copy_lines = [line for line in lines if "COPY a.txt /a.txt" in line]
    assert len(run_lines) == 1 and len(copy_lines) == 1, screen  # no duplicates
    assert not any(c in screen for c in "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"), screen  # no stale spinner rows
    assert any(line.startswith("image sha256:") for line in lines), screen
