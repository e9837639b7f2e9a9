"""``pybuild`` commands run for a request, their output read line by line.

Each command is a child process in its own session: a build enters namespaces for its
whole process (``builder.build`` wants a single-threaded caller), and a child can be
cancelled on its own. When the client goes away (its socket closed, or a write to it
fails) the child gets SIGTERM, which the CLI turns into a clean cancel
(``BuildInterrupted``: sandboxes killed, temp files removed, the store left valid), and
SIGKILL if it has not exited after ``GRACE`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from builder.engine.state import Engine

GRACE = 30.0
_POLL = 0.5


class ClientGone(Exception):
    """The client closed its connection while its command ran."""


@dataclass
class Finished:
    code: int
    lines: list[str]  # the last lines of output, for error messages


def start(
    engine: Engine, args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        engine.pybuild(*args),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env=engine.child_env(**(env or {})),
    )
    with engine.lock:
        engine.children.add(proc)
    return proc


def lines(proc: subprocess.Popen[bytes], gone: Callable[[], bool]) -> Iterator[str]:
    """The child's output lines as they come; ClientGone (after cancelling the child)
    when ``gone()`` says the client left."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        pending = b""
        while True:
            if not sel.select(_POLL):
                if gone():
                    cancel(proc)
                    raise ClientGone
                continue
            data = os.read(proc.stdout.fileno(), 65536)
            if not data:
                break
            pending += data
            *done, pending = pending.split(b"\n")
            for raw in done:
                yield raw.decode(errors="replace")
        if pending:
            yield pending.decode(errors="replace")


def cancel(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (the CLI's clean cancel), then SIGKILL after GRACE seconds."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(
    engine: Engine,
    args: list[str],
    gone: Callable[[], bool] = lambda: False,
    on_line: Callable[[str], None] | None = None,
    env: dict[str, str] | None = None,
) -> Finished:
    """Run ``pybuild ARGS`` to its end, passing each line to ``on_line``; a write that
    fails there (the client left) cancels the child too."""
    proc = start(engine, args, env)
    tail: list[str] = []
    try:
        for line in lines(proc, gone):
            tail = [*tail[-40:], line]
            if on_line is not None:
                on_line(line)
    except (OSError, ClientGone):
        cancel(proc)
        raise
    finally:
        if proc.stdout is not None:
            proc.stdout.close()
        code = proc.wait()
        with engine.lock:
            engine.children.discard(proc)
    return Finished(code, tail)


def cancel_all(engine: Engine) -> None:
    """Cancel every running child (the server is stopping)."""
    with engine.lock:
        running = list(engine.children)
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
    for proc in running:
        cancel(proc)


def error_message(finished: Finished) -> str:
    """What a failed command said: its ``error:`` and ``hint:`` lines, else its last."""
    picked = [line for line in finished.lines if line.startswith(("error:", "hint:"))]
    text = "\n".join(picked or finished.lines[-3:]).strip()
    return text or f"pybuild exited with status {finished.code}"
