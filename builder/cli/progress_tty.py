"""The live build view on a terminal, and styled tables and errors: all that needs rich.

``builder.cli.progress`` imports this module only when stderr is a terminal.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Sequence

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from builder.cli.steplabel import step_label
from builder.plan.planner import PlannedStep, StagePlan
from builder.solve import StepResult

_TTY_TAIL = 6


class TtyProgress:
    """A live view: one line per step, a spinner and the last output lines while running."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console or Console(stderr=True)
        self._lock = threading.Lock()
        self._running: dict[str, tuple[str, float, deque[str]]] = {}
        # Started at the first step, not here: its refresh thread must not run before
        # the build enters rootless mode, which needs a single-threaded process.
        self._live = Live(
            console=self._console, refresh_per_second=8, transient=True, get_renderable=self._render
        )

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
        self._live.start()  # once: later calls do nothing
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

    def note(self, message: str) -> None:
        """A status line (a pull, a push, a cache export), above the live view."""
        self._console.print(Text(message))

    def close(self) -> None:
        self._live.stop()


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stderr; a second column of CACHED/MISS is coloured."""
    table = Table(*header, title=title, title_justify="left")
    for row in rows:
        cells: list[str | Text] = list(row)
        if len(cells) > 1 and row[1] in ("CACHED", "MISS"):
            cells[1] = Text(row[1], style="green" if row[1] == "CACHED" else "yellow")
        table.add_row(*cells)
    Console(stderr=True, highlight=False).print(table)


def print_styled_error(message: str, hint: str | None) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(Text("error: ", style="bold red") + Text(message))
    if hint:
        console.print(Text("hint: ", style="bold") + Text(hint))
