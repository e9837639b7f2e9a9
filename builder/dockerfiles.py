"""Finding and reading the Dockerfile a build names: ``-f FILE``, ``CONTEXT/Dockerfile``
(or ``dockerfile``), or the text ``-f -`` read from stdin; symlinks followed only
inside the Dockerfile's own directory."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from builder.errors import BuildError, DockerfileError
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.ops.rootpath import leads_out, resolve_beside

STDIN_NAME = "Dockerfile (stdin)"


def find_dockerfile(context: Path, file: Path | None) -> Path:
    """The Dockerfile to read: ``-f``'s file, else ``<context>/Dockerfile``. A missing
    file named ``Dockerfile`` falls back to ``dockerfile`` beside it (BuildKit
    frontend/dockerui/config.go: ``strings.ToLower(DefaultDockerfileName)``)."""
    path = file or context / "Dockerfile"
    lower = path.with_name("dockerfile")
    if path.name == "Dockerfile" and not path.exists() and lower.is_file():
        return lower
    return path


def read_dockerfile(
    context: Path,
    file: Path | None,
    text: str | None,
    warn: Callable[[str], None] | None = None,
) -> ins.Dockerfile:
    """The build's Dockerfile (``text``: the one read from stdin), parsed. On a parse
    error, ``warn`` first gets the build checks BuildKit runs while parsing
    (instructions.Parse: StageNameCasing, FromAsCasing, MaintainerDeprecated) for the
    instructions before the failing one, as BuildKit prints the warnings it found
    before the error."""
    if text is not None:
        return parse_dockerfile(text, STDIN_NAME)
    path = find_dockerfile(context, file)
    try:
        return parse_dockerfile_at(path)
    except DockerfileError as exc:
        if warn is not None and exc.line:
            for message in _warnings_before(path, exc.line):
                warn(message)
        raise


_PARSE_TIME_RULES = ("StageNameCasing", "FromAsCasing", "MaintainerDeprecated")


def _warnings_before(path: Path, line: int) -> list[str]:
    from builder.frontend.checks.directive import check_warnings  # only after a parse error

    try:
        text = path.read_text(encoding="utf-8", errors="replace")
        prefix = "".join(text.splitlines(True)[: line - 1])
        checked = check_warnings(parse_dockerfile(prefix, str(path)))
    except (BuildError, OSError, UnicodeDecodeError):
        return []  # the part before the error does not parse on its own either
    return [w for w in checked if any(f": {rule}: " in w for rule in _PARSE_TIME_RULES)]


def parse_dockerfile_at(path: Path) -> ins.Dockerfile:
    """Parse the Dockerfile at ``path``, its symlinks followed only inside its own
    directory: a link out of it (``Dockerfile -> /etc/shadow``) is refused before
    anything is read, so no line of the target can reach an error message or a CI log.
    """
    found = resolve_beside(path)
    try:
        fd = os.open(found, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        # Invalid UTF-8 becomes U+FFFD, as BuildKit's parser (Go strings) reads it.
        with open(fd, encoding="utf-8", errors="replace") as file:
            text = file.read()
    except FileNotFoundError:
        if leads_out(path):
            raise BuildError(
                f"the Dockerfile {path} is a symlink to {os.readlink(path)}, outside "
                f"{path.parent}; like BuildKit, pybuild follows it only inside that "
                "directory and reads nothing outside it",
                hint="move or copy the Dockerfile into the build context, or name a "
                "regular file with -f PATH",
            ) from None
        raise BuildError(
            f"no Dockerfile at {path}",
            hint="pass the build context directory, or name the file with -f",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BuildError(f"cannot read {path}: {exc}") from None
    return parse_dockerfile(text, str(path))
