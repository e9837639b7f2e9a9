"""The ``pybuild`` console script: the store's warm builder runs the command if one serves
it (``builder.cli.warm_client``), else the command runs here (``builder.cli.main``).

Only the client is imported before that choice, so a build the warm builder takes never
imports the builder in this process.
"""

from __future__ import annotations

import sys


def main() -> int:
    from builder.cli.warm_client import try_warm

    code = try_warm(sys.argv[1:])
    if code is not None:
        return code
    from builder.cli.main import main as run_here

    return run_here()
