"""Bounded reads of registry answers: a body is read as it streams and stops at a limit.

Every response a registry client receives passes ``read_capped_hook`` (an httpx response
event hook, which runs before httpx itself reads a redirect or an auth challenge): its
body is read at once, up to the limit its request carries in ``extensions`` (``LIMIT``,
default ``MAX_DOCUMENT``), and an answer that goes past it fails with ResponseTooLarge
as soon as the limit is crossed, so a hostile or broken registry cannot make pybuild hold
more than that in memory. Only the 200 and 206 answers to requests marked ``STREAM``
(blob downloads, which the caller streams to disk under its own size check) are left
unread.

Requests ask for ``Accept-Encoding: identity``; a body that is compressed anyway is
refused rather than inflated, as its inflated size is not bounded by its length.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx

from cache.distribution.errors import RegistryError

LIMIT = "pybuild.limit"  # request extension: the most bytes its answer's body may have
STREAM = "pybuild.stream"  # request extension: the caller streams a 2xx body itself
# Token answers, error bodies, redirects, upload answers: a few KiB when legitimate.
MAX_DOCUMENT = 4 << 20
HEADERS = {"Accept-Encoding": "identity"}


class ResponseTooLarge(RegistryError):
    """A registry answer's body went past its limit; ``limit`` is that limit in bytes."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message, hint="check the reference and that the registry is sound")
        self.limit = limit


def size_text(n: int) -> str:
    """``4194304`` -> ``4 MiB``: the limits are round binary sizes."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale and n % scale == 0:
            return f"{n // scale} {unit}"
    return f"{n} bytes"


class _Capped(httpx.SyncByteStream):
    """Passes ``inner`` through, raising ResponseTooLarge once more than ``limit`` bytes came."""

    def __init__(self, inner: httpx.SyncByteStream, limit: int, what: str) -> None:
        self._inner = inner
        self._limit = limit
        self._what = what

    def __iter__(self) -> Iterator[bytes]:
        total = 0
        for chunk in self._inner:
            total += len(chunk)
            if total > self._limit:
                raise _too_large(self._what, self._limit)
            yield chunk

    def close(self) -> None:
        self._inner.close()


def _too_large(what: str, limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"{what} is larger than the {size_text(limit)} limit", limit)


def _what(request: httpx.Request) -> str:
    return f"the answer of {request.url.host} to {request.method} {request.url.path}"


def read_capped_hook(response: httpx.Response) -> None:
    """Read the body now, within its request's limit (see the module doc)."""
    request = response.request
    if request.extensions.get(STREAM) and response.status_code in (200, 206):
        return
    limit = int(request.extensions.get(LIMIT, MAX_DOCUMENT))
    what = _what(request)
    try:
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in ("", "identity"):
            raise RegistryError(
                f"{what} is {encoding}-encoded, which pybuild did not ask for",
                hint="check that the registry is sound",
            )
        declared = response.headers.get("Content-Length", "").strip()
        # A HEAD's Content-Length is the size a GET would send (RFC 9110, 9.3.2): a blob's.
        sized = request.method != "HEAD" and declared.isascii() and declared.isdigit()
        if sized and int(declared) > limit:
            raise _too_large(what, limit)  # no need to read what it says it will send
        response.stream = _Capped(response.stream, limit, what)  # type: ignore[arg-type]
        response.read()
    except BaseException:
        response.close()
        raise
