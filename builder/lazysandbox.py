"""The build's sandboxes, made at its first RUN that executes.

``runtime.sandboxes`` loads the whole sandbox machinery (init, seccomp, cgroups, mounts);
a build whose RUN steps all hit the cache never starts one, so it never loads it.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runtime.chroot import ChrootSandboxes
    from runtime.sandboxes import Sandboxes
    from runtime.spec import ContainerSpec, RunResult


class LazySandboxes:
    """``runtime.sandboxes.Sandboxes`` (``run`` and ``cancel``), made on the first ``run``.

    A ``cancel`` before then is kept and passed on when it is made, so a cancelled
    build starts no sandbox. ``cancel`` never takes a lock: it runs in a signal handler.
    :meth:`close` (or leaving a ``with`` block) ends the sandboxes' fork server.
    """

    def __init__(self, isolation: str = "namespaces") -> None:
        self._lock = threading.Lock()
        # "chroot": runtime.chroot's runner (no namespaces, no mounts), else the sandbox.
        self.isolation = isolation
        self._made: Sandboxes | ChrootSandboxes | None = None
        self._cancelled = False
        # Where the RUN steps' private networks keep their files; set before the first
        # run (the build's store temp dir), else a system temp dir.
        self.network_dir: Path | None = None

    def run(
        self,
        spec: ContainerSpec,
        *,
        stdin: int | None = None,
        stdout: int | None = None,
        stderr: int | None = None,
    ) -> RunResult:
        return self._sandboxes().run(spec, stdin=stdin, stdout=stdout, stderr=stderr)

    def prestart(self) -> None:
        """Make the sandboxes and start their fork server on a thread of its own, now: a
        build calls this once a step misses the cache, so the first RUN that executes
        does not wait for the server's interpreter (it starts during the work before it).
        Chroot isolation has no server. A failure is left for the first run to report."""
        if self.isolation == "chroot" or self._cancelled:
            return
        threading.Thread(target=self._prestart, name="sandbox-prestart", daemon=True).start()

    def _prestart(self) -> None:
        with contextlib.suppress(Exception):  # the first run reports it
            from runtime.sandboxes import Sandboxes

            made = self._sandboxes()
            if isinstance(made, Sandboxes) and not self._cancelled:
                made.prestart()

    def cancel(self) -> None:
        self._cancelled = True
        made = self._made  # set before a new one reads _cancelled: one of us cancels it
        if made is not None:
            made.cancel()

    def close_networks(self) -> None:
        """Stop the RUN steps' networks, if a run made any; call once no run is in progress."""
        with self._lock:
            made = self._made
        if made is not None:
            made.close_networks()

    def close(self) -> None:
        """End the fork server, if a run started one; call once no run is in progress."""
        with self._lock:
            made = self._made
        if made is not None:
            made.close()

    def __enter__(self) -> LazySandboxes:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _sandboxes(self) -> Sandboxes | ChrootSandboxes:
        with self._lock:
            if self._made is None:
                self._made = self._make()
                if self._cancelled:
                    self._made.cancel()
            return self._made

    def _make(self) -> Sandboxes | ChrootSandboxes:
        if self.isolation == "chroot":
            from runtime.chroot import ChrootSandboxes

            return ChrootSandboxes()
        from runtime.sandboxes import Sandboxes

        return Sandboxes(network_dir=self.network_dir)
