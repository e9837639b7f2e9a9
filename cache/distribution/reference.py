"""Image references as docker normalises them (distribution/reference, normalize.go).

The one reference grammar of the project: registry pulls and pushes, local tags
(builder.images.names) and the Dockerfile checks all parse with ``parse_reference``.
``busybox`` is ``docker.io/library/busybox:latest``; ``host:port/repo:tag@sha256:...``
names a registry by its first component when that has a ``.`` or ``:``, is
``localhost`` or has an uppercase letter. The "familiar" form is the short one docker
shows (``busybox:latest``).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass

from cache.digest import Digest
from cache.distribution.errors import InvalidReference
from cache.errors import InvalidDigest

DOCKER_HUB = "docker.io"
DOCKER_HUB_API = "registry-1.docker.io"
# The key docker login writes for Docker Hub in config.json.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
DEFAULT_TAG = "latest"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_PATH = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN = re.compile(
    r"^(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*"
    r"(?::[0-9]+)?$"
)
_TAG = re.compile(r"^[\w][\w.-]{0,127}$")
# distribution/reference's RepositoryNameTotalLengthMax: the path, without the domain
# (docker.io/library/x counts "library/x"), since distribution/reference v0.6.0.
_MAX_PATH = 255
_SHOWN = 80  # how much of an over-long reference its message shows


@dataclass(frozen=True)
class Reference:
    """A fully qualified reference: registry domain, repository path, tag and/or digest.

    At least one of ``tag`` and ``digest`` is set (a bare name gets tag ``latest``).
    """

    registry: str
    repository: str
    tag: str | None = DEFAULT_TAG
    digest: Digest | None = None

    @property
    def api_host(self) -> str:
        """The host[:port] that serves the distribution API (Docker Hub's differs)."""
        return DOCKER_HUB_API if self.registry == DOCKER_HUB else self.registry

    @property
    def name(self) -> str:
        """``registry/repository`` without tag or digest."""
        return f"{self.registry}/{self.repository}"

    @property
    def familiar_name(self) -> str:
        """The name as docker shows it (reference.FamiliarName): Docker Hub's domain
        dropped, and ``library/`` too when one path component is left
        (``docker.io/library/x`` is ``x``, ``docker.io/library/a/b`` is ``library/a/b``)."""
        if self.registry != DOCKER_HUB:
            return self.name
        rest = self.repository.removeprefix("library/")
        return rest if "/" not in rest else self.repository

    @property
    def object(self) -> str:
        """What to ask the manifests endpoint for: the digest when known, else the tag."""
        return str(self.digest) if self.digest is not None else str(self.tag)

    def __str__(self) -> str:
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out


def parse_reference(text: str) -> Reference:
    """Normalise a reference as docker does; InvalidReference when it is malformed."""
    rest, _, digest_text = text.partition("@")
    digest = _parse_digest(text, digest_text) if digest_text else None
    name, tag = rest, None
    colon, slash = rest.rfind(":"), rest.rfind("/")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG.match(tag):
            raise _invalid(text, f"bad tag {tag!r}")
    registry, repository = _split_domain(name)
    if not _DOMAIN.match(registry):
        raise _invalid(text, f"bad registry name {registry!r}")
    port = registry.rpartition(":")[2] if ":" in registry else None
    if port is not None and (len(port) > 5 or not 1 <= int(port) <= 65535):
        raise _invalid(text, f"registry port {port} is out of range (1-65535)")
    if not _PATH.match(repository):
        raise _invalid(text, "repository names are lowercase letters, digits and . _ - separators")
    if len(repository) > _MAX_PATH:
        shown = text if len(text) <= _SHOWN else text[: _SHOWN - 3] + "..."
        raise _invalid(shown, f"repository name must not be more than {_MAX_PATH} characters")
    if tag is None and digest is None:
        tag = DEFAULT_TAG
    return Reference(registry, repository, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    first, sep, remainder = name.partition("/")
    is_domain = sep and (
        "." in first or ":" in first or first == "localhost" or first.lower() != first
    )
    if not is_domain:
        first, remainder = DOCKER_HUB, name
    if first == "index.docker.io":
        first = DOCKER_HUB
    if first == DOCKER_HUB and "/" not in remainder:
        remainder = f"library/{remainder}"
    return first, remainder


def _parse_digest(text: str, digest_text: str) -> Digest:
    try:
        return Digest.parse(digest_text)
    except InvalidDigest:
        raise _invalid(text, f"bad digest {digest_text!r} (expected sha256:<64 hex>)") from None


def _invalid(text: str, why: str) -> InvalidReference:
    return InvalidReference(
        f"invalid image reference {text!r}: {why}",
        hint="use [REGISTRY[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST], e.g. busybox:1.36",
    )


def is_insecure(host: str, insecure_registries: Collection[str] = ()) -> bool:
    """Whether plain HTTP may be used for ``host[:port]``, as docker decides by default.

    Loopback (localhost, 127.0.0.0/8, ::1) always may; others only when listed, by
    ``host:port``, by ``host``, or by a CIDR range holding the host's IP address.
    """
    if host.startswith("["):  # [v6 address]:port
        bare = host[1 : host.find("]")]
    else:
        bare = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    if host in insecure_registries or bare in insecure_registries or bare == "localhost":
        return True
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        return False
    if address.is_loopback:
        return True
    for entry in insecure_registries:
        try:
            if address in ipaddress.ip_network(entry, strict=False):
                return True
        except ValueError:
            continue
    return False
