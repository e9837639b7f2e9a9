"""``python -m builder.cli``: the pybuild command."""

from builder.cli.main import main

raise SystemExit(main())
