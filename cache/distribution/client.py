"""A remote content store: one repository on a registry, over the OCI distribution API.

Endpoints follow the OCI distribution spec v1.1 (spec.md): ``GET/HEAD /v2/<name>/
manifests/<reference>``, ``GET/HEAD /v2/<name>/blobs/<digest>``, uploads through
``POST /v2/<name>/blobs/uploads/`` then a monolithic ``PUT ?digest=`` or ``PATCH`` chunks
and a closing ``PUT``. Every manifest and blob fetched is checked against its digest
while it streams into the BlobStore, so a bad byte never becomes a blob. Requests that
fail on a broken connection or a 5xx/429 answer are retried with exponential backoff;
a broken blob download resumes with a ``Range`` request where the registry allows it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import httpx

from cache.digest import Digest, sha256_bytes, verify
from cache.distribution import body
from cache.distribution.auth import Credentials, RegistryAuth
from cache.distribution.errors import (
    ManifestNotFound,
    RegistryAuthError,
    RegistryError,
    RegistryUnreachable,
)
from cache.distribution.options import RegistryOptions as RegistryOptions
from cache.distribution.reference import Reference, is_insecure
from cache.distribution.upload import RETRY_STATUS, PushOutcome, RetryUpload, Upload
from cache.errors import CacheError, DigestMismatch
from cache.oci import (
    MEDIA_DOCKER_LIST,
    MEDIA_DOCKER_MANIFEST,
    MEDIA_OCI_INDEX,
    MEDIA_OCI_MANIFEST,
    Descriptor,
)
from cache.store import BlobStore, BlobWriter

MANIFEST_ACCEPT = ", ".join(
    (MEDIA_OCI_INDEX, MEDIA_DOCKER_LIST, MEDIA_OCI_MANIFEST, MEDIA_DOCKER_MANIFEST)
)
_RETRY_STATUS = RETRY_STATUS  # the same statuses as uploads retry

Progress = Callable[[int], None]


@dataclass(frozen=True)
class RemoteManifest:
    """A manifest or index as the registry served it; ``data`` hashes to ``digest``."""

    digest: Digest
    media_type: str
    data: bytes


class _Retry(Exception):
    """A transient failure worth another attempt."""


class _RangeIgnored(Exception):
    """The registry answered a Range request with the whole blob: start over."""


class RegistryClient:
    """One repository on one registry. Use as a context manager (it owns a connection pool).

    ``push`` asks for push rights in bearer tokens as well as pull; ``scope`` overrides
    the token scope entirely ("" for none, as ``login`` needs).
    """

    def __init__(
        self,
        ref: Reference,
        *,
        credentials: Credentials | None = None,
        options: RegistryOptions | None = None,
        push: bool = False,
        scope: str | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.ref = ref
        self.options = options or RegistryOptions()
        self._insecure = is_insecure(ref.api_host, self.options.insecure_registries)
        if scope is None:
            scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        self._client = httpx.Client(
            auth=RegistryAuth(credentials, scope),
            follow_redirects=True,
            timeout=self.options.timeout,
            verify=not self._insecure,
            transport=transport,
            headers={"User-Agent": "pybuild/0.1", **body.HEADERS},
            # Every answer is read within a limit as it streams (cache/distribution/body.py).
            event_hooks={"response": [body.read_capped_hook]},
        )
        self._base: str | None = None
        self._sleep = sleep
        self._has_credentials = credentials is not None

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    # --- plumbing ---------------------------------------------------------------------

    def _url(self, path: str) -> str:
        return f"{self._base_url()}/v2/{self.ref.repository}/{path}"

    def _base_url(self) -> str:
        if self._base is None:
            self._base = self._pick_base()
        return self._base

    def ping(self) -> None:
        """``GET /v2/`` with our credentials; RegistryAuthError when they are refused."""
        what = f"logging in to {self.ref.registry}"
        response = self._request("GET", f"{self._base_url()}/v2/", what)
        if response.status_code != 200:
            raise self._fail(response, what)

    def _pick_base(self) -> str:
        """https, or plain http for an insecure registry that does not speak TLS (docker)."""
        https = f"https://{self.ref.api_host}"
        if not self._insecure:
            return https
        try:
            self._client.get(f"{https}/v2/", auth=None, timeout=5).close()
            return https
        except httpx.TransportError:
            return f"http://{self.ref.api_host}"

    def _request(self, method: str, url: str, what: str, **kwargs: Any) -> httpx.Response:
        """Send with retries on broken connections and 5xx/429; the response is read."""
        attempt = 0
        while True:
            try:
                response = self._client.request(method, url, **kwargs)
                if response.status_code not in _RETRY_STATUS:
                    return response
                failure: str = f"HTTP {response.status_code}"
            except httpx.ConnectError as exc:
                # Refused or unresolvable: one more try, not the whole budget.
                attempt = self._backoff(attempt, what, _describe(exc), limit=1)
                continue
            except httpx.TransportError as exc:
                failure = _describe(exc)
            attempt = self._backoff(attempt, what, failure)

    def _backoff(self, attempt: int, what: str, failure: str, limit: int | None = None) -> int:
        """Sleep before attempt ``attempt + 1``; RegistryUnreachable when none are left."""
        retries = self.options.retries if limit is None else min(limit, self.options.retries)
        if attempt >= retries:
            raise RegistryUnreachable(
                f"{what}: {failure} (gave up after retrying)",
                hint=self._reach_hint(),
            )
        self._sleep(self.options.backoff * (2**attempt))
        return attempt + 1

    def _reach_hint(self) -> str:
        host = self.ref.api_host
        plain_http_possible = self.ref.registry != "docker.io" and not self._insecure
        if not plain_http_possible:
            return f"check that {host} is up and reachable"
        return (
            f"check that {host} is up and reachable; for a plain-HTTP registry pass "
            f"--insecure-registry {host}"
        )

    def _fail(self, response: httpx.Response, what: str) -> CacheError:
        status = response.status_code
        detail = _error_detail(response)
        registry = self.ref.registry
        if status == 401 and self._has_credentials:
            return RegistryAuthError(
                f"{what}: {registry} refused the credentials{detail}",
                hint=f"check the user name and password; log in again with "
                f"`pybuild login {registry}`",
            )
        if status == 401:
            return RegistryAuthError(
                f"{what}: {registry} wants authentication{detail}",
                hint=f"log in with `pybuild login {registry}`",
            )
        if status == 403:
            return RegistryAuthError(
                f"{what}: access to {self.ref.repository} on {registry} denied{detail}",
                hint="check that your account may access this repository",
            )
        return RegistryError(f"{what}: HTTP {status}{detail}")

    # --- manifests --------------------------------------------------------------------

    def get_manifest(self, reference: str | None = None) -> RemoteManifest:
        """The manifest or index for a tag or digest (default: the client's reference)."""
        reference = reference or self.ref.object
        what = f"manifest {self.ref.name}:{reference}"
        try:
            response = self._request(
                "GET",
                self._url(f"manifests/{reference}"),
                what,
                headers={"Accept": MANIFEST_ACCEPT},
                extensions={body.LIMIT: self.options.max_manifest},
            )
        except body.ResponseTooLarge as exc:
            raise body.ResponseTooLarge(
                f"{what}: manifest larger than the {body.size_text(exc.limit)} limit; "
                "pybuild stopped reading it",
                exc.limit,
            ) from None
        if response.status_code == 404:
            raise ManifestNotFound(
                f"{self.ref.name}: no manifest for {reference!r} on {self.ref.registry}",
                hint="check the repository name and tag",
            )
        if response.status_code != 200:
            raise self._fail(response, f"fetching {what}")
        data = response.content
        digest = sha256_bytes(data)
        if reference.startswith("sha256:"):
            verify(Digest.parse(reference), digest, what)
        header = response.headers.get("Docker-Content-Digest", "")
        if header.startswith("sha256:"):
            verify(Digest.parse(header), digest, f"{what} (Docker-Content-Digest)")
        media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
        return RemoteManifest(digest, media_type, data)

    def put_manifest(self, reference: str, data: bytes, media_type: str) -> Digest:
        """Upload a manifest or index under a tag (or its digest); returns its digest."""
        what = f"pushing manifest {self.ref.name}:{reference}"
        response = self._request(
            "PUT",
            self._url(f"manifests/{reference}"),
            what,
            content=data,
            headers={"Content-Type": media_type},
        )
        if response.status_code not in (200, 201):
            raise self._fail(response, what)
        digest = sha256_bytes(data)
        header = response.headers.get("Docker-Content-Digest", "")
        if header.startswith("sha256:"):
            verify(digest, Digest.parse(header), f"{what}: the registry's digest")
        return digest

    # --- blobs ------------------------------------------------------------------------

    def has_blob(self, digest: Digest) -> bool:
        what = f"checking blob {digest}"
        response = self._request("HEAD", self._url(f"blobs/{digest}"), what)
        if response.status_code == 200:
            return True
        if response.status_code == 404:
            return False
        raise self._fail(response, what)

    def fetch_blob(
        self, desc: Descriptor, blobs: BlobStore, progress: Progress | None = None
    ) -> None:
        """Stream the blob into ``blobs``, verified; a no-op if the store has it intact.

        A stored copy gone bad is downloaded again and replaced. On any failure nothing
        is stored (the BlobWriter's temp file is removed).
        """
        if blobs.intact(desc.digest):
            return
        for _ in range(self.options.retries + 1):
            try:
                with blobs.writer(expected=desc.digest) as writer:
                    self._stream_blob(desc, writer, progress)
                return
            except _RangeIgnored:
                continue
            except DigestMismatch:
                raise DigestMismatch(
                    f"blob {desc.digest} from {self.ref.name}: its content does not match its "
                    "digest; nothing was stored",
                    hint="the registry's copy is damaged; push the image again",
                ) from None
        raise RegistryError(f"blob {desc.digest}: the download kept breaking off")

    def _stream_blob(self, desc: Descriptor, writer: BlobWriter, progress: Progress | None) -> None:
        url = self._url(f"blobs/{desc.digest}")
        what = f"fetching blob {desc.digest}"
        attempt = 0
        while True:
            try:
                self._stream_once(url, desc, writer, progress, what)
                if writer.size == desc.size:
                    return
                failure = f"connection closed after {writer.size} of {desc.size} bytes"
            except httpx.TransportError as exc:
                failure = _describe(exc)
            except _Retry as exc:
                failure = str(exc)
            attempt = self._backoff(attempt, what, failure)

    def _stream_once(
        self, url: str, desc: Descriptor, writer: BlobWriter, progress: Progress | None, what: str
    ) -> None:
        offset = writer.size
        headers = {"Range": f"bytes={offset}-"} if offset else {}
        extensions = {body.STREAM: True}  # to disk as it arrives, at most desc.size bytes
        with self._client.stream("GET", url, headers=headers, extensions=extensions) as response:
            status = response.status_code
            if status in _RETRY_STATUS:
                raise _Retry(f"HTTP {status}")
            if offset and status == 200:
                raise _RangeIgnored
            if status not in (200, 206):
                response.read()
                if status == 404:
                    raise RegistryError(f"{what}: the registry has no such blob (HTTP 404)")
                raise self._fail(response, what)
            for chunk in response.iter_bytes():  # as it arrives: a break keeps it
                if writer.size + len(chunk) > desc.size:
                    raise DigestMismatch(f"{what}: more than the {desc.size} bytes announced")
                writer.write(chunk)
                if progress is not None:
                    progress(len(chunk))

    def push_blob(
        self,
        desc: Descriptor,
        blobs: BlobStore,
        progress: Progress | None = None,
        mount_from: str | None = None,
    ) -> PushOutcome:
        """Upload a blob unless the registry has it (HEAD first).

        ``mount_from`` names another repository on this registry that holds the blob: the
        registry is asked to mount it from there (no bytes sent) before uploading.
        """
        if self.has_blob(desc.digest):
            return "exists"
        what = f"uploading blob {desc.digest}"
        upload = Upload(self._client, self._url("blobs/uploads/"), self._fail, what)
        attempt = 0
        while True:
            try:
                return upload.run(desc, blobs, self.options.chunk_size, progress, mount_from)
            except RetryUpload as exc:
                attempt = self._backoff(attempt, what, str(exc))
            except httpx.TransportError as exc:
                attempt = self._backoff(attempt, what, _describe(exc))


def _describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return f"connection failed ({text})"


def _error_detail(response: httpx.Response) -> str:
    """The first message of a distribution error body (spec.md "Error codes"), if any."""
    try:
        response.read()
        errors = response.json().get("errors") or []
        first = errors[0]
        return f" ({first.get('code', '')}: {first.get('message', '')})"
    except (ValueError, AttributeError, IndexError, KeyError, TypeError, httpx.HTTPError):
        return ""
