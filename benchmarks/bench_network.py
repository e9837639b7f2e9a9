#!/usr/bin/env python3
"""What the default network (a private namespace served by pasta) costs.

Usage (as root): ``python3 -m benchmarks.bench_network [--steps 20] [--repeat 5]``.

1. Per RUN: builds a Dockerfile of STEPS x ``RUN true`` (busybox) with ``--no-cache``
   under ``--network default`` and ``--network none``, REPEAT times each (alternating),
   through the CLI in a throw-away store; prints the median build times and the
   difference per RUN (a build's pool reuses one namespace across its steps, so the
   first RUN pays the start).
2. Per network: ``runtime.netns.create`` + ``close`` (unshare + pasta + stop), beside
   the slirp4netns equivalent (unshare, ``slirp4netns --configure
   --disable-host-loopback --netns-type=path PATH tap0`` until its --ready-fd byte, then
   stop and unbind), REPEAT x 4 times each; median and minimum milliseconds of the
   start and of the stop.

The figures are never a test assertion.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))

from make_base import make_base

from runtime import linux, netns
from runtime.mountns import enter_private_mount_namespace

REPO = Path(__file__).resolve().parents[1]


def _cli(root: Path, *args: str | Path) -> None:
    env = {**os.environ, "PYBUILD_ROOT": str(root)}
    done = subprocess.run(
        [sys.executable, "-m", "builder.cli", *map(str, args)],
        capture_output=True, text=True, env=env, cwd=REPO, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"pybuild {args} failed:\n{done.stderr}")


def per_run(work: Path, steps: int, repeat: int) -> dict[str, list[float]]:
    """Seconds of each ``--no-cache`` build of STEPS x RUN true, per network mode."""
    root = work / "store"
    root.mkdir()
    base = make_base(work / "busybox.tar", "docker")
    _cli(root, "load", "-i", base)
    ctx = work / "ctx"
    ctx.mkdir()
    lines = ["FROM busybox:latest"] + [f"RUN true # {i}" for i in range(steps)]
    (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
    times: dict[str, list[float]] = {"default": [], "none": []}
    _cli(root, "build", "--network", "default", ctx)  # warm: page cache, imports
    for _ in range(repeat):
        for mode in times:
            began = time.perf_counter()
            _cli(root, "build", "--no-cache", "--progress", "plain", "--network", mode, ctx)
            times[mode].append(time.perf_counter() - began)
    return times


def pasta_starts(work: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Milliseconds of each start (to ready) and each stop."""
    starts, stops = [], []
    for i in range(repeat):
        began = time.perf_counter()
        net = netns.create(work, f"pasta-{i}")
        ready = time.perf_counter()
        net.close()
        starts.append((ready - began) * 1000)
        stops.append((time.perf_counter() - ready) * 1000)
    return starts, stops


def slirp_starts(work: Path, repeat: int) -> tuple[list[float], list[float]]:
    """Milliseconds of each start (to ready) and each stop; empty without slirp4netns."""
    slirp = shutil.which("slirp4netns")
    starts: list[float] = []
    stops: list[float] = []
    if slirp is None:
        return starts, stops
    for i in range(repeat):
        path = work / f"slirp-{i}"
        began = time.perf_counter()
        path.touch(mode=0o600)
        subprocess.run(["unshare", f"--net={path}", "true"], check=True)
        ready_r, ready_w = os.pipe()
        proc = subprocess.Popen(
            [slirp, "--configure", "--disable-host-loopback", "--netns-type=path",
             f"--ready-fd={ready_w}", str(path), "tap0"],
            pass_fds=(ready_w,), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        os.close(ready_w)
        got = os.read(ready_r, 1)
        os.close(ready_r)
        if got != b"1":
            proc.kill()
            raise SystemExit(f"slirp4netns did not get ready: {proc.communicate()[1]!r}")
        ready = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        proc.wait()
        linux.umount2(str(path), linux.MNT_DETACH)
        path.unlink()
        starts.append((ready - began) * 1000)
        stops.append((time.perf_counter() - ready) * 1000)
    return starts, stops


def _ms(name: str, times: list[float]) -> str:
    if not times:
        return f"{name:44s} (not installed)"
    return f"{name:44s} median {statistics.median(times):7.1f} ms   min {min(times):7.1f} ms"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench_network: run as root")
    with tempfile.TemporaryDirectory(prefix="bench-network-") as tmp:
        builds = per_run(Path(tmp), args.steps, args.repeat)
    enter_private_mount_namespace()  # after the builds: the namespaces' binds stay here
    with tempfile.TemporaryDirectory(prefix="bench-netns-") as tmp:
        pasta = pasta_starts(Path(tmp), args.repeat * 4)
        slirp = slirp_starts(Path(tmp), args.repeat * 4)
    default, none = (statistics.median(builds[m]) for m in ("default", "none"))
    print(f"load average (1 min) {os.getloadavg()[0]:.1f}")
    print(f"{args.steps} x RUN true, --no-cache, median of {args.repeat}:")
    print(f"  --network default {default:6.2f} s   --network none {none:6.2f} s")
    per_step = (default - none) / args.steps * 1000
    print(f"  difference {default - none:+.3f} s, per RUN {per_step:+.1f} ms")
    print(f"one network, start and stop, {args.repeat * 4} times:")
    print("  " + _ms("pasta start (runtime.netns.create)", pasta[0]))
    print("  " + _ms("pasta stop (PrivateNetwork.close)", pasta[1]))
    print("  " + _ms("slirp4netns --configure start (to ready)", slirp[0]))
    print("  " + _ms("slirp4netns stop (SIGTERM, wait, unbind)", slirp[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
