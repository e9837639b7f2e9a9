"""The sandboxes one caller (a build) has running, so that a signal can stop them all.

Steps run in worker threads, each blocked in :meth:`Sandbox.wait`; a Ctrl-C reaches only
the main thread. :meth:`Sandboxes.cancel` is what the main thread's signal handler calls:
no sandbox starts any more, every live one is asked to die (its init SIGKILLs the
container's PID 1, which takes the whole PID namespace, then cleans up and reports), and
whatever still runs after ``grace`` seconds is SIGKILLed through its process group.

A spec whose network is :data:`POOLED` gets a private network with outbound access from
the caller's :class:`~runtime.netpool.NetworkPool` (one namespace and one pasta reused by
the steps that follow), and the inits are forked by one
:class:`~runtime.forkclient.ForkServer` (started at the first run, ended by
:meth:`Sandboxes.close`), so a RUN costs no new interpreter.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import threading
from pathlib import Path

from runtime.errors import RuntimeFailure, SandboxCancelled
from runtime.forkclient import ForkServer
from runtime.netpool import NetworkPool
from runtime.sandbox import Sandbox, start
from runtime.spec import ContainerSpec, RunResult

DEFAULT_GRACE = 3.0  # seconds an init gets to clean up before it is SIGKILLed
# ContainerSpec.network for "a private network from this caller's pool".
POOLED = "default"


class Sandboxes:
    """Runs specs like :func:`runtime.sandbox.run` and keeps the live ones cancellable.

    Each sandbox's init gets a process group of its own, so a terminal's Ctrl-C reaches
    only us and :meth:`cancel` decides what happens to the containers. :meth:`close`
    (or leaving a ``with`` block) ends the fork server; a later run starts another.
    """

    def __init__(self, grace: float = DEFAULT_GRACE, network_dir: Path | None = None) -> None:
        self._grace = grace
        self._server = ForkServer()
        self._networks = NetworkPool(network_dir)
        # Reentrant: cancel() runs in a signal handler, maybe on a thread holding it.
        self._lock = threading.RLock()
        self._live: set[Sandbox] = set()
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def prestart(self) -> None:
        """Start the fork server now (``ForkServer.start``): the first run then does not
        wait for an interpreter to start."""
        self._server.start()

    def live_pids(self) -> list[int]:
        """Host pids of the live sandboxes' inits."""
        with self._lock:
            return [box.pid for box in self._live]

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult:
        """Run ``spec`` to completion; raises :class:`SandboxCancelled` once :meth:`cancel`
        was called (before the start, or while the container ran)."""
        with self._lock:
            if self._cancelled:
                raise SandboxCancelled("not started: the build is being cancelled")
        if spec.network != POOLED:
            return self._run(spec, stdin=stdin, stdout=stdout, stderr=stderr)
        network = self._networks.acquire()
        try:
            joined = dataclasses.replace(
                spec,
                network="netns",
                netns=str(network.path),
                resolv_conf=spec.resolv_conf or network.resolv_conf,
            )
            return self._run(joined, stdin=stdin, stdout=stdout, stderr=stderr)
        finally:
            self._networks.release(network, reuse=not spec.privileged)

    def _run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None,
        stdout: int | None,
        stderr: int | None,
    ) -> RunResult:
        box = start(
            spec,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            own_process_group=True,
            server=self._server,
        )
        with self._lock:
            self._live.add(box)
            cancelled = self._cancelled  # cancel() ran between the check and the start
        if cancelled:
            box.kill()
        try:
            result = box.wait()
        except RuntimeFailure:
            if self._cancelled:  # e.g. an init killed before it could report
                raise SandboxCancelled("killed: the build is being cancelled") from None
            raise
        except BaseException:
            _stop(box)
            raise
        finally:
            with self._lock:
                self._live.discard(box)
        if self._cancelled:
            raise SandboxCancelled("killed: the build is being cancelled")
        return result

    def close_networks(self) -> None:
        """Stop the pooled networks (a network still in use stops when its run ends)."""
        self._networks.close()

    def close(self) -> None:
        """End the fork server and the networks; call when no run is in progress any more."""
        self._server.close()
        self._networks.close()

    def __enter__(self) -> Sandboxes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def cancel(self) -> None:
        """Start no sandbox any more and kill the live ones; returns at once (safe in a
        signal handler). A second call SIGKILLs what is still running."""
        with self._lock:
            again = self._cancelled
            self._cancelled = True
            boxes = list(self._live)
        if again:
            _kill_groups(boxes)
            return
        for box in boxes:
            with contextlib.suppress(OSError):
                box.kill()
        if boxes:
            timer = threading.Timer(self._grace, self._kill_remaining)
            timer.daemon = True
            timer.start()

    def _kill_remaining(self) -> None:
        with self._lock:
            boxes = list(self._live)
        _kill_groups(boxes)


def _kill_groups(boxes: list[Sandbox]) -> None:
    """SIGKILL each init's process group; the container dies with its init (its PID 1
    has PR_SET_PDEATHSIG, and the kernel kills a PID namespace with its PID 1)."""
    for box in boxes:
        if box.running():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(box.pid, signal.SIGKILL)


def _stop(box: Sandbox) -> None:
    """Interrupted while waiting: do not leave the container behind."""
    if box.running():
        box.kill()
        with contextlib.suppress(RuntimeFailure):
            box.wait()
