"""Where the store lives when no ``--root`` says: the one place the environment decides it.

Its own module, with nothing but ``os`` and ``pathlib``, so the warm builder's client
(``builder.cli.warm_client``) can find a store's socket before importing the builder.
"""

from __future__ import annotations

import os
from pathlib import Path


def default_root() -> Path:
    """``$PYBUILD_ROOT``, else ``$XDG_DATA_HOME/pybuild``, else ``~/.local/share/pybuild``."""
    if explicit := os.environ.get("PYBUILD_ROOT"):
        return Path(explicit)
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "pybuild"
