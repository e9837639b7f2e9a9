"""Image names as users type them, normalised the way docker shows local images."""

from __future__ import annotations

import re

from builder.errors import UsageError

# docker's reference grammar, reduced to what a local name needs: path components of
# lowercase alphanumerics and separators, an optional registry host[:port], a tag.
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_HOST = r"(?:[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*(?::[0-9]+)?/)?"
_NAME = re.compile(rf"^{_HOST}{_COMPONENT}(?:/{_COMPONENT})*$")
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
_DOCKER_HUB_DOMAINS = ("docker.io/", "index.docker.io/")
_PORT = re.compile(r"^[^/]*:([0-9]+)/")  # the registry's port, when the name has one
MAX_NAME = 255


def split_ref(ref: str) -> tuple[str, str]:
    """Split ``name[:tag]`` into name and tag (``latest`` by default); validates both."""
    name, tag = ref, "latest"
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        name, tag = ref[:colon], ref[colon + 1 :]
    if "@" in name:
        raise UsageError(
            f"image reference {ref!r}: digests are not supported for local names yet",
            hint="refer to the image by name:tag",
        )
    if not _NAME.match(name) or not _TAG.match(tag):
        raise UsageError(
            f"invalid image name {ref!r}",
            hint="names are lowercase letters, digits and . _ - separators, optionally with :TAG",
        )
    if len(name) > MAX_NAME:  # distribution/reference: NameTotalLengthMax
        raise UsageError(
            f"invalid image name {_shown(ref)}: repository name must not be more than "
            f"{MAX_NAME} characters"
        )
    port = _PORT.match(name)
    if port and (len(port.group(1)) > 5 or not 1 <= int(port.group(1)) <= 65535):
        raise UsageError(
            f"invalid image name {ref!r}: registry port {port.group(1)} is out of range",
            hint="a port is 1 to 65535",
        )
    return familiar(name), tag


def _shown(ref: str) -> str:
    return repr(ref) if len(ref) <= 80 else repr(ref[:77] + "...")


def familiar(name: str) -> str:
    """Docker Hub's short form, as docker's reference.FamiliarName: the ``docker.io`` or
    ``index.docker.io`` domain dropped, then ``library/`` before a one-part name
    (``library/x``, ``index.docker.io/x`` and ``docker.io/library/x`` are all ``x``)."""
    for domain in _DOCKER_HUB_DOMAINS:
        if name.startswith(domain):
            name = name[len(domain) :]
            break
    rest = name.removeprefix("library/")
    return rest if rest != name and "/" not in rest else name


def normalize(ref: str) -> str:
    """``busybox`` -> ``busybox:latest``; ``docker.io/library/x:1`` -> ``x:1``."""
    name, tag = split_ref(ref)
    return f"{name}:{tag}"
