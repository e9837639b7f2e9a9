"""What the user sees while building: a live view on a terminal, a plain log elsewhere.

Both views print a line per step with its cache result (CACHED, or the miss reason and
time), the RUN output (plain: every line; tty: the last lines under the running step),
and a closing summary with the hit rate. All output goes to stderr, as docker's does.
The live view (``builder.cli.progress_tty``) needs rich; it is imported only on a terminal,
which keeps rich's ~50 ms import out of CI builds and scripted rebuilds.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from builder.cli.steplabel import step_label

if TYPE_CHECKING:  # annotations only: `pybuild --help` need not import the solver
    from builder.cli.progress_tty import TtyProgress
    from builder.plan.planner import PlannedStep, StagePlan
    from builder.solve import StepResult


class PlainProgress:
    """BuildKit-style plain log: ``#N [stage i/n] INSTR``, output lines, ``#N DONE 1.2s``."""

    def __init__(self, stream: TextIO | None = None, *, quiet: bool = False) -> None:
        self._out = stream or sys.stderr
        self._quiet = quiet
        self._lock = threading.Lock()
        self._numbers: dict[str, int] = {}
        self._started: dict[str, float] = {}

    def _emit(self, line: str) -> None:
        if self._quiet:
            return
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def _number(self, step: PlannedStep) -> int:
        with self._lock:
            return self._numbers.setdefault(step.id, len(self._numbers) + 1)

    def step_started(self, stage: StagePlan, step: PlannedStep) -> None:
        self._started[step.id] = time.monotonic()
        self._emit(f"#{self._number(step)} {step_label(stage, step)}")

    def step_log(self, step: PlannedStep, line: str) -> None:
        elapsed = time.monotonic() - self._started.get(step.id, time.monotonic())
        self._emit(f"#{self._number(step)} {elapsed:.3f} {line}")

    def step_finished(self, stage: StagePlan, step: PlannedStep, result: StepResult) -> None:
        n = self._number(step)
        if result.cached:
            self._emit(f"#{n} CACHED")
        else:
            self._emit(f"#{n} MISS {result.reason}")
            self._emit(f"#{n} DONE {result.duration:.1f}s")

    def warning(self, message: str) -> None:
        self._emit(f"WARNING: {message}")

    def note(self, message: str) -> None:
        """A status line (a pull, a push, a cache export), as it is."""
        self._emit(message)

    def close(self) -> None:
        return None


class JsonProgress:
    """``--progress=rawjson``: one JSON object per line on stderr, shaped like BuildKit's
    SolveStatus (``vertexes`` with name/started/completed/cached, ``logs`` with base64
    data, ``warnings``); a vertex's ``digest`` is the step's stable id, and pybuild adds
    ``reason`` (why a step missed)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._out = stream or sys.stderr
        self._lock = threading.Lock()
        self._started: dict[str, str] = {}

    def _emit(self, doc: dict[str, object]) -> None:
        import json

        with self._lock:
            self._out.write(json.dumps(doc, sort_keys=True) + "\n")
            self._out.flush()

    def step_started(self, stage: StagePlan, step: PlannedStep) -> None:
        self._started[step.id] = _now()
        vertex = {"digest": step.id, "name": step_label(stage, step), "started": _now()}
        self._emit({"vertexes": [vertex]})

    def step_log(self, step: PlannedStep, line: str) -> None:
        import base64

        data = base64.b64encode((line + "\n").encode()).decode()
        self._emit({"logs": [{"vertex": step.id, "stream": 1, "data": data, "timestamp": _now()}]})

    def step_finished(self, stage: StagePlan, step: PlannedStep, result: StepResult) -> None:
        vertex = {
            "digest": step.id,
            "name": step_label(stage, step),
            "started": self._started.get(step.id, _now()),
            "completed": _now(),
            "cached": result.cached,
            "reason": result.reason,
        }
        self._emit({"vertexes": [vertex]})

    def warning(self, message: str) -> None:
        import base64

        self._emit(
            {"warnings": [{"level": 1, "short": base64.b64encode(message.encode()).decode()}]}
        )

    def note(self, message: str) -> None:
        """A status line, as it is (not JSON: as docker's pull progress beside buildx's)."""
        with self._lock:
            self._out.write(message + "\n")
            self._out.flush()

    def close(self) -> None:
        return None


def _now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def make_progress(mode: str, *, quiet: bool) -> PlainProgress | TtyProgress | JsonProgress:
    """``auto`` picks the live view when stderr is a terminal."""
    if quiet:
        return PlainProgress(quiet=True)
    if mode == "rawjson":
        return JsonProgress()
    if _use_tty(mode):
        from builder.cli.progress_tty import TtyProgress

        return TtyProgress()
    return PlainProgress()


def _use_tty(mode: str) -> bool:
    return mode == "tty" or (mode == "auto" and sys.stderr.isatty())


def print_explain(steps: Sequence[StepResult], mode: str = "auto") -> None:
    """``build --explain``: per step, cached or not, why, and how long (stderr).

    A rich table on a terminal (``mode`` as for ``--progress``), aligned text otherwise.
    """
    rows = [
        (
            f"{s.stage}.{s.position} {s.title}",
            "CACHED" if s.cached else "MISS",
            f"{s.duration:.2f}s" + (f" (saved {s.saved:.2f}s)" if s.cached else ""),
            s.reason,
        )
        for s in steps
    ]
    header = ("STEP", "RESULT", "TIME", "REASON")
    if _use_tty(mode):
        from builder.cli.progress_tty import print_table

        print_table("cache explanation", header, rows)
        return
    widths = [min(50, max(len(r[i]) for r in [header, *rows])) for i in range(3)]
    for row in [header, *rows]:
        cells = [c[:50].ljust(w) for c, w in zip(row[:3], widths, strict=True)]
        print_line(("  ".join(cells) + "  " + row[3]).rstrip())


def print_error(message: str, hint: str | None) -> None:
    """``error: …`` and ``hint: …`` on stderr, styled when it is a terminal."""
    if sys.stderr.isatty():
        from builder.cli.progress_tty import print_styled_error

        print_styled_error(message, hint)
        return
    print_line(f"error: {message}")
    if hint:
        print_line(f"hint: {hint}")


def print_line(message: str, *, err: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()


def human_size(n: int) -> str:
    """Bytes as docker prints sizes: three significant digits, decimal units (``1.23MB``)."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000:
            return f"{value:.3g}{unit}"
        value /= 1000
    return f"{value:.3g}TB"
