"""pybuild: a daemonless container image builder you can call from Python.

    from pathlib import Path
    import builder

    outcome = builder.build(builder.BuildRequest(context=Path("app"), tags=("app",)))
    print(outcome.image.digest, outcome.hit_rate)

The names below are loaded on first use (PEP 562), so importing a part of the package
(``builder.frontend``, the CLI's ``--help``) does not import the whole builder.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from builder.api import BuildRequest, PullPolicy, build
    from builder.outcome import BuildOutcome
    from builder.solve import Events

__all__ = ["BuildOutcome", "BuildRequest", "Events", "PullPolicy", "build"]

_HOMES = {
    "build": "builder.api",
    "BuildRequest": "builder.api",
    "PullPolicy": "builder.api",
    "BuildOutcome": "builder.outcome",
    "Events": "builder.solve",
}


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'builder' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
