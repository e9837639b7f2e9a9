"""Tree walking and removal for trees of any depth the kernel allows.

Shared by ``cache``, ``runtime`` and ``builder``; it imports none of them, so it keeps
runtime and cache independent of each other (see the import-linter contracts).
"""
