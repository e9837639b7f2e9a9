"""One blob upload over the OCI distribution API (spec.md, "Pushing blobs").

``POST /v2/<name>/blobs/uploads/`` opens a session (or, with ``?mount=&from=``, asks
for a cross-repository mount: 201 means done, 202 means "upload it after all"); then a
monolithic ``PUT <location>?digest=`` for blobs up to ``chunk_size``, or ``PATCH``
chunks with ``Content-Range`` and a closing ``PUT``. Bodies are bytes (never one-shot
streams), so an auth challenge can replay them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import httpx

from cache.digest import Digest
from cache.distribution.errors import RegistryError
from cache.errors import CacheError
from cache.oci import Descriptor
from cache.store import BlobStore

PushOutcome = Literal["exists", "mounted", "pushed"]
RETRY_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_OCTETS = "application/octet-stream"


class RetryUpload(Exception):
    """A transient failure: the whole upload may be tried again."""


class Upload:
    """Uploads blobs through ``http`` to ``start_url`` (``.../blobs/uploads/``).

    ``fail`` turns an unexpected response into the client's typed error.
    """

    def __init__(
        self,
        http: httpx.Client,
        start_url: str,
        fail: Callable[[httpx.Response, str], CacheError],
        what: str,
    ) -> None:
        self._http = http
        self._start = start_url
        self._fail = fail
        self._what = what

    def run(
        self,
        desc: Descriptor,
        blobs: BlobStore,
        chunk_size: int,
        progress: Callable[[int], None] | None,
        mount_from: str | None,
    ) -> PushOutcome:
        if mount_from:
            params = {"mount": str(desc.digest), "from": mount_from}
            response = self._http.post(self._start, params=params)
            if response.status_code == 201:
                return "mounted"
        else:
            response = self._http.post(self._start)
        location = self._location(response, 202)
        if desc.size <= chunk_size:
            data = blobs.read_bytes(desc.digest)
            headers = {"Content-Type": _OCTETS}
            response = self._http.put(
                _with_digest(location, desc.digest), content=data, headers=headers
            )
            self._location(response, 201)
            if progress is not None:
                progress(len(data))
            return "pushed"
        location = self._patch_chunks(location, desc.digest, blobs, chunk_size, progress)
        self._location(self._http.put(_with_digest(location, desc.digest)), 201)
        return "pushed"

    def _patch_chunks(
        self,
        location: str,
        digest: Digest,
        blobs: BlobStore,
        chunk_size: int,
        progress: Callable[[int], None] | None,
    ) -> str:
        offset = 0
        with blobs.open(digest) as f:
            while chunk := f.read(chunk_size):
                end = offset + len(chunk) - 1
                headers = {"Content-Type": _OCTETS, "Content-Range": f"{offset}-{end}"}
                response = self._http.patch(location, content=chunk, headers=headers)
                location = self._location(response, 202)
                offset = end + 1
                if progress is not None:
                    progress(len(chunk))
        return location

    def _location(self, response: httpx.Response, expected: int) -> str:
        """Check an upload step's status; the absolute URL of its Location header."""
        if response.status_code in RETRY_STATUS:
            raise RetryUpload(f"HTTP {response.status_code}")
        if response.status_code != expected:
            raise self._fail(response, self._what)
        location = response.headers.get("Location", "")
        if expected == 202 and not location:
            raise RegistryError(f"{self._what}: the registry gave no upload location")
        return str(response.url.join(location))


def _with_digest(location: str, digest: Digest) -> httpx.URL:
    # Keep the upload URL's own query (e.g. distribution's _state): params= would drop it.
    return httpx.URL(location).copy_add_param("digest", str(digest))
