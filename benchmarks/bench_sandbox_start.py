#!/usr/bin/env python3
"""What one sandbox of ``true`` costs, started the two ways ``runtime.sandbox`` can.

Usage (as root): ``python3 -m benchmarks.bench_sandbox_start [RUNS [SERVERS]]`` (default
20 and 5). Makes a busybox root and runs ``true`` on a fresh overlay of it RUNS times
(network none, as a build's RUN with ``--network none``): through a new ``python -m
runtime.init`` each time, then through one ``runtime.forkclient.ForkServer`` (its first
start, which starts the server, shown apart), then the first start of SERVERS - 1 more
servers (a build's first RUN waits for its server: one sample of it is too noisy to
compare). Prints the median and the minimum milliseconds from start to collected status.
The figures are never a test assertion.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runtime.forkclient import ForkServer
from runtime.mountns import enter_private_mount_namespace
from runtime.sandbox import start
from runtime.spec import ContainerSpec
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs


def _time_runs(lower: Path, work: Path, runs: int, server: ForkServer | None) -> list[float]:
    """Milliseconds of each run of ``true``."""
    times = []
    null = os.open(os.devnull, os.O_RDWR)
    try:
        for i in range(runs):
            scratch = work / f"run-{i}"
            scratch.mkdir()
            spec = ContainerSpec(
                rootfs=fresh_rootfs(scratch, (lower,)),
                args=("true",),
                env=("PATH=/bin",),
                network="none",
                scratch=scratch,
            )
            began = time.perf_counter()
            box = start(spec, stdin=null, stdout=null, stderr=null, server=server)
            result = box.wait()
            times.append((time.perf_counter() - began) * 1000)
            if result.exit_code != 0:
                raise SystemExit(f"true failed: {result}")
    finally:
        os.close(null)
    return times


def _line(name: str, times: list[float]) -> str:
    return f"{name:34s} median {statistics.median(times):7.1f} ms   min {min(times):7.1f} ms"


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    servers = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    enter_private_mount_namespace()
    with tempfile.TemporaryDirectory(prefix="bench-sandbox-") as tmp:
        work = Path(tmp)
        lower = make_busybox_rootfs(work / "lower")
        (work / "direct").mkdir()
        direct = _time_runs(lower, work / "direct", runs, None)
        (work / "served").mkdir()
        with ForkServer() as server:
            served = _time_runs(lower, work / "served", runs + 1, server)
        firsts, others = served[:1], served[1:]
        for number in range(1, servers):  # later servers: their first start only
            (work / f"served-{number}").mkdir()
            with ForkServer() as server:
                firsts += _time_runs(lower, work / f"served-{number}", 1, server)
    print(f"{len(direct)} runs of `true`, load average (1 min) {os.getloadavg()[0]:.1f}")
    print(_line("python -m runtime.init per run", direct))
    print(_line(f"fork server: first (starts it) x{len(firsts)}", firsts))
    print(_line("fork server: the others", others))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
