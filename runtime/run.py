"""``pybuild run``: a container attached to the user's terminal.

The builder resolves the image and hands over a finished :class:`ContainerSpec`; this
module only wires stdio (optionally through a pty), relays signals and waits. Signal
handlers can only be installed from the main thread; elsewhere signals are not relayed.
"""

from __future__ import annotations

import dataclasses
import errno
import fcntl
import os
import select
import signal
import termios
import threading
import tty as ttymod
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress

from runtime.sandbox import Sandbox, start
from runtime.spec import ContainerSpec, RunResult

RELAYED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CHUNK = 65536
CTRL_D = b"\x04"


def run_container(spec: ContainerSpec, *, interactive: bool, tty: bool) -> RunResult:
    """Run ``spec`` on our stdio and return how it ended.

    Without ``interactive`` the container's stdin is /dev/null. With ``tty`` it gets a new
    pty as its controlling terminal: our terminal is put in raw mode (when stdin is one),
    bytes are copied both ways and the window size follows ours. SIGINT, SIGTERM and SIGHUP
    sent to us are relayed to the container; a second SIGINT/SIGTERM kills it (as PID 1
    it ignores signals it has no handler for), and we then end as that signal would:
    128+N (130, 143), with an error saying so.
    """
    spec = dataclasses.replace(spec, tty=tty)
    relay = _Relay()
    result = _run_relayed(spec, interactive, tty, relay)
    if relay.killed_for and result.signal == signal.SIGKILL:
        name = signal.Signals(relay.killed_for).name
        why = f"killed the container after a second {name} (it did not stop on the first)"
        return RunResult(128 + relay.killed_for, signal.SIGKILL, why)
    return result


def _run_relayed(spec: ContainerSpec, interactive: bool, tty: bool, relay: _Relay) -> RunResult:
    with ExitStack() as stack:
        stdin = None
        if not interactive:
            stdin = os.open(os.devnull, os.O_RDONLY)
            stack.callback(os.close, stdin)
        # Installed before the start, so no signal finds the container unattended.
        stack.enter_context(_relay_signals(relay))
        if not tty:
            relay.box = start(spec, stdin=stdin, own_process_group=True)
            return _wait(relay.box)
        master, slave = os.openpty()
        stack.callback(os.close, master)
        relay.master = master
        _copy_window_size(master)
        try:
            box = start(spec, stdin=slave, stdout=slave, stderr=slave, own_process_group=True)
        finally:
            os.close(slave)  # the container holds the only copies: EIO on master = it exited
        relay.box = box
        if interactive and os.isatty(0):
            stack.enter_context(_raw_mode(0))
        try:
            _proxy(master, box, stdin=0 if interactive else None)
        except BaseException:
            _kill(box)
            raise
        return _wait(box)


def _wait(box: Sandbox) -> RunResult:
    try:
        return box.wait()
    except KeyboardInterrupt:
        _kill(box)
        raise


def _kill(box: Sandbox) -> None:
    if box.running():
        box.kill()
        with suppress(Exception):  # we are already failing; the original error matters more
            box.wait()


class _Relay:
    """Where our signals go: the container once started (``box``), its pty's size."""

    def __init__(self) -> None:
        self.box: Sandbox | None = None
        self.master: int | None = None
        self.stops = 0  # SIGINT/SIGTERM received so far
        self.killed_for = 0  # the signal a container was killed for (0: none)

    def relay(self, signum: int, _frame: object) -> None:
        if self.box is None:  # not started yet: stop as Python would
            raise KeyboardInterrupt
        if signum in STOP_SIGNALS:
            self.stops += 1
            if self.stops > 1:
                self.killed_for = signum
                self.box.kill()
                return
        self.box.send_signal(signum)

    def resize(self, _signum: int, _frame: object) -> None:
        if self.master is not None:
            _copy_window_size(self.master)


@contextmanager
def _relay_signals(relay: _Relay) -> Iterator[None]:
    """Relay our signals to the container while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, relay.relay) for s in RELAYED_SIGNALS}
    previous[signal.SIGWINCH] = signal.signal(signal.SIGWINCH, relay.resize)
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def _raw_mode(fd: int) -> Iterator[None]:
    saved = termios.tcgetattr(fd)
    ttymod.setraw(fd)
    try:
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _copy_window_size(master: int) -> None:
    """Give the pty our terminal's size; setting it signals SIGWINCH inside."""
    for fd in (0, 1, 2):
        if os.isatty(fd):
            size = fcntl.ioctl(fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(master, termios.TIOCSWINSZ, size)
            return


def _proxy(master: int, box: Sandbox, stdin: int | None) -> None:
    """Copy ``stdin`` -> pty and pty -> stdout until the container side closes.

    Input is buffered and written only when the pty accepts it, so a container that does
    not read cannot stop us from draining its output.
    """
    os.set_blocking(master, False)
    pending = b""
    while True:
        readers = [master] + ([stdin] if stdin is not None and not pending else [])
        writers = [master] if pending else []
        readable, writable, _ = select.select(readers, writers, [], 0.5)
        if master in readable:
            output = _read(master)
            if output == b"":
                return
            if output:
                _write_all(1, output)
        if stdin is not None and stdin in readable:
            data = os.read(stdin, CHUNK)
            pending += data or CTRL_D  # our EOF becomes the terminal's EOF character
            if not data:
                stdin = None
        if master in writable:
            with suppress(BlockingIOError):
                pending = pending[os.write(master, pending) :]
        if not readable and not writable and not box.running():
            return


def _read(master: int) -> bytes | None:
    """Read from the pty master: None if nothing is there yet, b'' once every slave fd
    is closed (Linux reports that as EIO)."""
    try:
        return os.read(master, CHUNK)
    except BlockingIOError:
        return None
    except OSError as exc:
        if exc.errno == errno.EIO:
            return b""
        raise


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data) :]
