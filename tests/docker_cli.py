"""The docker CLI that tests drive: Debian's docker.io (20.10) when it is installed.

A machine may also carry a newer client earlier on PATH (e.g. /usr/local/bin/docker);
the acceptance checks are stated against Debian's, so its path wins over PATH.
"""

from __future__ import annotations

import os
import shutil

DEBIAN_DOCKER = "/usr/bin/docker"


def docker_cli() -> str | None:
    """Debian's docker CLI if present, else whichever ``docker`` PATH finds, else None."""
    if os.access(DEBIAN_DOCKER, os.X_OK):
        return DEBIAN_DOCKER
    return shutil.which("docker")


def docker() -> str:
    """The docker CLI; call only from tests marked ``requires_docker`` (it is there)."""
    cli = docker_cli()
    assert cli is not None, "requires_docker tests run only where a docker CLI answers"
    return cli
