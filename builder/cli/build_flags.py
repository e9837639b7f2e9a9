"""``pybuild build`` flags CI scripts pass to ``docker buildx build``, and their parsing.

``add_ci_flags`` registers them; the ``parse_*`` helpers turn their values into what
``builder.api`` takes, raising UsageError (exit 2) with a hint on bad input.
``stdin_inputs`` reads ``-f -`` (the Dockerfile) or a context of ``-`` (a tar, or a
lone Dockerfile with an empty context, as ``docker build -`` takes either).
"""

from __future__ import annotations

import argparse
import io
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from builder.errors import UsageError
from cache.errors import is_disk_full
from cache.oci import Platform
from cache.tarcheck import UnsafeTarEntry, check_member

STDIN = "-"
_ANNOTATION_LEVELS = ("manifest",)


def add_ci_flags(p: argparse.ArgumentParser) -> None:
    """The buildx flags beyond the core ones (labels, ids, platform, RUN settings...)."""
    p.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="K=V",
        help="set an image label (repeatable; over the Dockerfile's LABEL)",
    )
    p.add_argument(
        "--annotation",
        action="append",
        default=[],
        metavar="[manifest:]K=V",
        help="add a manifest annotation (repeatable; index levels are refused)",
    )
    p.add_argument("--iidfile", type=Path, metavar="FILE", help="write the image ID to FILE")
    p.add_argument(
        "--platform",
        metavar="OS/ARCH[,...]",
        help="the platforms to build for, comma-separated (e.g. linux/amd64,linux/arm64 or "
        "linux/arm/v7; default: this host's); more than one makes an image index, and RUN "
        "steps for another architecture run under QEMU (binfmt_misc)",
    )
    p.add_argument(
        "--load", action="store_true", help="accepted for buildx: the store is always written"
    )
    p.add_argument(
        "--add-host",
        action="append",
        default=[],
        metavar="HOST:IP",
        help="add a line to /etc/hosts in every RUN step (repeatable)",
    )
    p.add_argument("--shm-size", metavar="SIZE", help="size of /dev/shm in RUN steps (64m)")
    p.add_argument(
        "--ulimit",
        action="append",
        default=[],
        metavar="NAME=SOFT[:HARD]",
        help="a resource limit for RUN steps, e.g. nofile=1024:2048 (repeatable)",
    )
    p.add_argument(
        "--no-cache-filter",
        action="append",
        default=[],
        metavar="STAGE",
        help="run every step of this stage, as --no-cache does for all (repeatable)",
    )
    p.add_argument(
        "--build-context",
        action="append",
        default=[],
        metavar="NAME=DIR|docker-image://REF|oci-layout://DIR[:TAG]",
        help="what FROM NAME and COPY --from=NAME read (repeatable)",
    )


def parse_pairs(items: list[str], flag: str) -> tuple[tuple[str, str], ...]:
    """``K=V`` flags as pairs, the last value of a key winning; UsageError on ``K``."""
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{flag} {item!r}: expected KEY=VALUE")
        pairs[key] = value
    return tuple(pairs.items())


def parse_annotations(items: list[str]) -> tuple[tuple[str, str], ...]:
    """buildx's ``[TYPE:]KEY=VALUE``; only the manifest level (the default) applies."""
    plain: list[str] = []
    for item in items:
        head, sep, rest = item.partition("=")
        level, colon, key = head.rpartition(":")
        if colon and level not in _ANNOTATION_LEVELS:
            raise UsageError(
                f"--annotation {item!r}: {level} annotations are not supported",
                hint="pybuild writes one manifest and no index: use manifest:KEY=VALUE or "
                "KEY=VALUE",
            )
        plain.append(f"{key if colon else head}{sep}{rest}")
    return parse_pairs(plain, "--annotation")


def parse_platform_flag(value: str | None) -> tuple[Platform, ...]:
    """--platform: a comma-separated list in docker's notation (none: this host's)."""
    if not value:
        return ()
    from cache.platforms import PlatformError, parse_platforms

    try:
        return parse_platforms(value)
    except PlatformError as exc:
        raise UsageError(f"--platform {value}: {exc.message}", hint=exc.hint) from None


@dataclass(frozen=True)
class StdinInputs:
    """Where the build reads from after stdin was taken in."""

    context: Path
    dockerfile_text: str | None


@contextmanager
def stdin_inputs(context: str, dockerfile: str | None) -> Iterator[StdinInputs]:
    """``-f -``, or a context of ``-``: a tar (then ``-f`` names a file in it) or a lone
    Dockerfile with an empty context. The temp context is removed on exit."""
    if context == STDIN and dockerfile == STDIN:
        raise UsageError(
            "the context and the Dockerfile cannot both come from stdin",
            hint="pass the Dockerfile in the context tar, or a context directory",
        )
    if dockerfile == STDIN:  # invalid UTF-8 becomes U+FFFD, as for a Dockerfile file
        yield StdinInputs(Path(context), sys.stdin.buffer.read().decode("utf-8", "replace"))
        return
    if context != STDIN:
        yield StdinInputs(Path(context), None)
        return
    data = sys.stdin.buffer.read()
    work = Path(tempfile.mkdtemp(prefix="pybuild-stdin-"))
    try:
        if _is_tar(data):
            extract_context_tar(data, work)
            yield StdinInputs(work, None)
        else:
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                raise UsageError(
                    "stdin is neither a tar nor a Dockerfile",
                    hint="pipe a context tar (tar -c .) or a Dockerfile into `pybuild build -`",
                ) from None
            yield StdinInputs(work, text)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def extract_context_tar(data: bytes, work: Path) -> None:
    """A context tar from stdin into ``work``; a member no file system takes (a NUL in a
    name, a path out of the tree) is a UsageError naming it."""
    import tarfile  # here: only a context piped on stdin is a tar

    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            for member in tar:
                check_member(member, "the context tar on stdin")
            tar.extractall(work, filter="tar")
    except UnsafeTarEntry as exc:
        raise UsageError(exc.message, hint=exc.hint) from None
    except (RecursionError, KeyError):
        # tarfile copies a link's target when the link cannot be made: a link to itself
        # makes that copy recurse without end, one to a missing member is a KeyError.
        raise UsageError(
            "cannot extract the context tar on stdin: a link in it cannot be made (it "
            "leads back to itself, or to an entry the tar does not hold)",
            hint="pipe a tar of the context made by tar -c .",
        ) from None
    except (tarfile.TarError, EOFError, OSError, OverflowError) as exc:
        # OverflowError: a size past 2**63 makes tarfile seek beyond what a file can be.
        if is_disk_full(exc):
            raise
        raise UsageError(
            f"cannot extract the context tar on stdin: {exc}",
            hint="pipe a plain or compressed tar of the context (tar -c .)",
        ) from None


def _is_tar(data: bytes) -> bool:
    if not data:
        return False
    import tarfile

    try:
        with tarfile.open(fileobj=io.BytesIO(data)) as tar:
            return tar.next() is not None
    except (tarfile.TarError, OverflowError):
        return False


def write_iidfile(path: Path, image_id: str) -> None:
    """docker's --iidfile: the ID alone, no newline."""
    try:
        path.write_text(image_id)
    except OSError as exc:
        raise UsageError(f"cannot write --iidfile {path}: {exc.strerror}") from None
