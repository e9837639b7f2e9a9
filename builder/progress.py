"""What the user sees while building: a rich live view on a terminal, a plain log elsewhere.

Both views print a line per step with its cache result (CACHED, or the miss reason and
time), the RUN output (plain: every line; tty: the last lines under the running step),
and a closing summary with the hit rate. All output goes to stderr, as docker's does.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from builder.plan import PlannedStep, StagePlan
from builder.solve import StepResult

_TTY_TAIL = 6


def step_label(stage: StagePlan, step: PlannedStep) -> str:
    total = sum(1 for s in stage.steps if s.action is not None)
    number = sum(1 for s in stage.steps[: step.position] if s.action is not None)
    return f"[{stage.label} {number}/{total}] {step.title}"


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

    def close(self) -> None:
        return None


class TtyProgress:
    """A live view: one line per step, a spinner and the last output lines while running."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float, deque[str]]] = {}
        self._live = Live(
            console=console, refresh_per_second=8, transient=True, get_renderable=self._render
        )
        self._live.start()

    def _render(self) -> Group:
        with self._lock:
            rows: list[Text] = []
            for label, started, tail in self._running.values():
                rows.append(
                    Text(f" => {label}  {time.monotonic() - started:.1f}s", style="bold blue")
                )
                rows.extend(Text(f"    {line}", style="dim") for line in tail)
        return Group(*rows)

    def step_started(self, stage: StagePlan, step: PlannedStep) -> None:
        with self._lock:
            self._running[step.id] = (
                step_label(stage, step),
                time.monotonic(),
                deque(maxlen=_TTY_TAIL),
            )

    def step_log(self, step: PlannedStep, line: str) -> None:
        with self._lock:
            if step.id in self._running:
                self._running[step.id][2].append(line[:200])

    def step_finished(self, stage: StagePlan, step: PlannedStep, result: StepResult) -> None:
        with self._lock:
            self._running.pop(step.id, None)
        label = Text(f" => {step_label(stage, step)}")
        if result.cached:
            label.append("  CACHED", style="green")
        else:
            label.append(f"  {result.duration:.1f}s", style="yellow")
            label.append(f"  (miss: {result.reason})", style="dim")
        self._console.print(label)

    def warning(self, message: str) -> None:
        self._console.print(Text(f"WARNING: {message}", style="yellow"))

    def close(self) -> None:
        self._live.stop()


def make_progress(mode: str, *, quiet: bool) -> PlainProgress | TtyProgress:
    """``auto`` picks the live view when stderr is a terminal."""
    console = Console(stderr=True)
    if quiet:
        return PlainProgress(quiet=True)
    if mode == "tty" or (mode == "auto" and console.is_terminal):
        return TtyProgress(console)
    return PlainProgress()


def print_explain(steps: Sequence[StepResult], mode: str = "auto") -> None:
    """``build --explain``: per step, cached or not, why, and how long (stderr).

    A rich table on a terminal (``mode`` as for ``--progress``), aligned text otherwise.
    """
    console = Console(stderr=True, highlight=False)
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
    if mode == "tty" or (mode == "auto" and console.is_terminal):
        table = Table(*header, title="cache explanation", title_justify="left")
        for step, result, took, reason in rows:
            table.add_row(
                step, Text(result, style="green" if result == "CACHED" else "yellow"), took, reason
            )
        console.print(table)
        return
    widths = [min(50, max(len(r[i]) for r in [header, *rows])) for i in range(3)]
    for row in [header, *rows]:
        cells = [c[:50].ljust(w) for c, w in zip(row[:3], widths, strict=True)]
        print_line(("  ".join(cells) + "  " + row[3]).rstrip())


def print_error(message: str, hint: str | None) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(Text("error: ", style="bold red") + Text(message))
    if hint:
        console.print(Text("hint: ", style="bold") + Text(hint))


def print_line(message: str, *, err: bool = True) -> None:
    stream = sys.stderr if err else sys.stdout
    stream.write(message + "\n")
    stream.flush()
