"""The resource-limit flags that `build` (per RUN step) and `run` (per container) share.

Their own module, so that a build does not import the run command's modules to get them.
"""

from __future__ import annotations

import argparse


def add_resource_flags(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "-m", "--memory", metavar="BYTES", help=f"memory limit for {what} (e.g. 512m, 2g)"
    )
    p.add_argument("--pids-limit", type=int, metavar="N", help=f"most processes at once in {what}")
    p.add_argument("--cpus", type=float, metavar="N", help=f"CPU time for {what} (e.g. 1.5)")
