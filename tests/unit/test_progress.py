"""What a build prints: plain logs off a terminal (no rich), a live view on one."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from builder.cli.progress import print_error
from builder.cli.progress_tty import TtyProgress, print_table

REPO = Path(__file__).resolve().parents[2]


def test_plain_cli_run_never_imports_rich(tmp_path: Path) -> None:
    """Off a terminal nothing needs rich, and its import is a tenth of a no-change build."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\nENV A=1\nLABEL b=2\n")
    probe = (
        "import sys\n"
        "from builder.cli.main import main\n"
        "code = main(['--root', sys.argv[1], 'build', '--progress', 'auto', sys.argv[2]])\n"
        "print('rich' in sys.modules, code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "store"), str(tmp_path / "ctx")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
        stdin=subprocess.DEVNULL,
    )
    assert done.stdout.split() == ["False", "0"], done.stderr


def test_error_off_a_terminal_is_plain_text(capsys: object) -> None:
    print_error("no such image: x", "load it first")
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert err == "error: no such image: x\nhint: load it first\n"


def test_live_view_prints_warnings_through_its_console() -> None:
    out = io.StringIO()
    view = TtyProgress(Console(file=out, force_terminal=True, width=100))
    view.warning("careful")
    view.close()
    assert "WARNING: careful" in out.getvalue()


def test_table_colours_only_the_result_column(capsys: object) -> None:
    print_table("t", ("STEP", "RESULT"), [("a", "CACHED"), ("b", "MISS")])
    err = capsys.readouterr().err  # type: ignore[attr-defined]
    assert "CACHED" in err and "MISS" in err
