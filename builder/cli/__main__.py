"""``python -m builder.cli``: the pybuild command."""

from builder.cli.entry import main

raise SystemExit(main())
