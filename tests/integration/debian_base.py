"""A Debian base image (python3, pip, CA certificates) for tests that need apt and pip.

Made once per machine with debootstrap (``fixtures/make_debian_base.py``, ~1 min) and
cached under ``/var/cache/pybuild-tests/``, keyed by the suite and the package list, so
later runs only load it. A lock file keeps concurrent sessions from building it twice.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO

sys.path.insert(0, str(REPO / "fixtures"))

from make_debian_base import INCLUDE, MIRROR, SUITE, make_debian_base

CACHE = Path("/var/cache/pybuild-tests")
TAG = "debian-py:bookworm"


def _mirror_answers() -> str | None:
    """None when the mirror serves the suite's Release file, else why not."""
    url = f"{MIRROR}/dists/{SUITE}/Release"
    try:
        with urllib.request.urlopen(url, timeout=15) as response:
            response.read(64)
    except (OSError, urllib.error.URLError) as exc:
        return f"{url}: {exc}"
    return None


def debian_base_archive() -> Path:
    """The cached image archive (tag ``debian-py:bookworm``), made if missing.

    Skips the calling test with the reason when not root, without debootstrap, or when
    the Debian mirror does not answer.
    """
    key = hashlib.sha256(f"{SUITE} {','.join(INCLUDE)} {MIRROR}".encode()).hexdigest()[:12]
    archive = CACHE / f"debian-{SUITE}-{key}.tar"
    if archive.is_file():
        return archive
    if os.geteuid() != 0:
        pytest.skip("the Debian base image is made with debootstrap, which needs root")
    if shutil.which("debootstrap") is None:
        pytest.skip("needs debootstrap for the Debian base image: apt-get install debootstrap")
    CACHE.mkdir(parents=True, exist_ok=True)
    CACHE.chmod(0o755)  # rootless tests' users load the archive
    with (CACHE / f".{archive.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not archive.is_file():
            why = _mirror_answers()
            if why is not None:
                pytest.skip(f"the Debian mirror does not answer, no Debian base image: {why}")
            make_debian_base(archive, TAG)
            archive.chmod(0o644)
    return archive
