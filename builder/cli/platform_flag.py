"""``--platform`` for commands that pick one image of a multi-platform index (run,
save, pull); ``pybuild build`` takes a list (``builder.cli.build_flags``)."""

from __future__ import annotations

import argparse

from builder.errors import UsageError
from cache.oci import Platform


def add_platform_flag(p: argparse.ArgumentParser, command: str) -> None:
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[/VARIANT]",
        help=f"the platform to {command} from a multi-platform image (e.g. linux/arm64; "
        "default: this host's)",
    )


def platform_of(args: argparse.Namespace) -> Platform | None:
    """The ``--platform`` given, normalised; None when none was (UsageError if bad)."""
    value = getattr(args, "platform", None)
    if not value:
        return None
    from cache.platforms import PlatformError, parse_platform

    try:
        return parse_platform(value)
    except PlatformError as exc:
        raise UsageError(f"--platform {value}: {exc.message}", hint=exc.hint) from None
