"""The distribution client against in-process fake registries (httpx.MockTransport)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cache.digest import Digest, sha256_bytes
from cache.distribution.client import RegistryClient, RegistryOptions
from cache.distribution.errors import ManifestNotFound, RegistryUnreachable
from cache.distribution.reference import parse_reference
from cache.errors import DigestMismatch
from cache.oci import MEDIA_OCI_LAYER, MEDIA_OCI_MANIFEST, Descriptor
from cache.store import BlobStore

Handler = Callable[[httpx.Request], httpx.Response]
BLOB = bytes(range(256)) * 4096  # 1 MiB
BLOB_DIGEST = sha256_bytes(BLOB)


def _client(handler: Handler, sleeps: list[float] | None = None) -> RegistryClient:
    slept = sleeps if sleeps is not None else []
    return RegistryClient(
        parse_reference("reg.example/app:1"),
        options=RegistryOptions(retries=3, backoff=0.1),
        transport=httpx.MockTransport(handler),
        sleep=slept.append,
    )


def _blob_desc(data: bytes = BLOB) -> Descriptor:
    return Descriptor(MEDIA_OCI_LAYER, sha256_bytes(data), len(data))


class _Breaking(httpx.SyncByteStream):
    """Sends the first ``cut`` bytes, then the connection "breaks"."""

    def __init__(self, data: bytes, cut: int) -> None:
        self.data, self.cut = data, cut

    def __iter__(self) -> Iterator[bytes]:
        yield self.data[: self.cut]
        raise httpx.ReadError("connection reset by peer")


def test_5xx_is_retried_with_exponential_backoff() -> None:
    answers = iter([503, 502, 200])
    sleeps: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        body = b'{"schemaVersion":2}' if status == 200 else b""
        return httpx.Response(status, content=body, headers={"Content-Type": MEDIA_OCI_MANIFEST})

    with _client(handler, sleeps) as client:
        found = client.get_manifest()
    assert found.digest == sha256_bytes(b'{"schemaVersion":2}')
    assert sleeps == [0.1, 0.2]


def test_registry_that_keeps_failing_gives_up_with_hint() -> None:
    with (
        _client(lambda r: httpx.Response(500)) as client,
        pytest.raises(RegistryUnreachable) as info,
    ):
        client.get_manifest()
    assert "HTTP 500" in info.value.message
    assert "--insecure-registry" in (info.value.hint or "")


def test_manifest_not_matching_its_content_digest_header_is_rejected() -> None:
    wrong = "sha256:" + "0" * 64

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"{}", headers={"Docker-Content-Digest": wrong})

    with _client(handler) as client, pytest.raises(DigestMismatch):
        client.get_manifest()


def test_manifest_fetched_by_digest_is_verified() -> None:
    asked = Digest("sha256", hashlib.sha256(b"other").hexdigest())
    with (
        _client(lambda r: httpx.Response(200, content=b"{}")) as client,
        pytest.raises(DigestMismatch),
    ):
        client.get_manifest(str(asked))


def test_missing_tag_is_manifest_not_found() -> None:
    body = b'{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}'
    with (
        _client(lambda r: httpx.Response(404, content=body)) as client,
        pytest.raises(ManifestNotFound, match="no manifest for '1'"),
    ):
        client.get_manifest()


def test_corrupt_blob_stores_nothing(store_root: Path) -> None:
    blobs = BlobStore(store_root)
    bad = b"X" + BLOB[1:]
    with (
        _client(lambda r: httpx.Response(200, content=bad)) as client,
        pytest.raises(DigestMismatch, match="nothing was stored"),
    ):
        client.fetch_blob(_blob_desc(), blobs)
    assert list(blobs.digests()) == []
    assert list(blobs.tmp_dir.iterdir()) == []


def test_broken_download_resumes_with_a_range_request(store_root: Path) -> None:
    ranges: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        rng = request.headers.get("Range")
        ranges.append(rng)
        if rng is None:
            return httpx.Response(200, stream=_Breaking(BLOB, 300_000))
        start = int(rng.removeprefix("bytes=").rstrip("-"))
        return httpx.Response(206, content=BLOB[start:])

    blobs = BlobStore(store_root)
    with _client(handler) as client:
        client.fetch_blob(_blob_desc(), blobs)
    assert blobs.read_bytes(BLOB_DIGEST) == BLOB
    assert ranges == [None, "bytes=300000-"]


def test_registry_ignoring_range_restarts_the_blob(store_root: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers.get("Range"))
        if len(calls) == 1:
            return httpx.Response(200, stream=_Breaking(BLOB, 1000))
        return httpx.Response(200, content=BLOB)

    blobs = BlobStore(store_root)
    with _client(handler) as client:
        client.fetch_blob(_blob_desc(), blobs)
    assert blobs.read_bytes(BLOB_DIGEST) == BLOB
    assert calls == [None, "bytes=1000-", None]


def test_blob_larger_than_announced_is_cut_off(store_root: Path) -> None:
    blobs = BlobStore(store_root)
    desc = Descriptor(MEDIA_OCI_LAYER, BLOB_DIGEST, 10)
    with (
        _client(lambda r: httpx.Response(200, content=BLOB)) as client,
        pytest.raises(DigestMismatch),
    ):
        client.fetch_blob(desc, blobs)
    assert list(blobs.digests()) == []


def test_upload_keeps_the_location_query_and_adds_the_digest(store_root: Path) -> None:
    blobs = BlobStore(store_root)
    blobs.put_bytes(BLOB)
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.method == "HEAD":
            return httpx.Response(404)
        if request.method == "POST":
            return httpx.Response(202, headers={"Location": "/v2/app/blobs/uploads/u1?_state=s"})
        if request.method == "PATCH":
            return httpx.Response(202, headers={"Location": "/v2/app/blobs/uploads/u1?_state=t"})
        return httpx.Response(201)

    client = RegistryClient(
        parse_reference("reg.example/app:1"),
        options=RegistryOptions(chunk_size=400_000),
        transport=httpx.MockTransport(handler),
    )
    with client:
        assert client.push_blob(_blob_desc(), blobs) == "pushed"
    methods = [r.method for r in seen]
    assert methods == ["HEAD", "POST", "PATCH", "PATCH", "PATCH", "PUT"]
    ranges = [r.headers["Content-Range"] for r in seen if r.method == "PATCH"]
    assert ranges == ["0-399999", "400000-799999", "800000-1048575"]
    put = seen[-1]
    assert put.url.params["_state"] == "t"
    assert put.url.params["digest"] == str(BLOB_DIGEST)


class _Endless(httpx.SyncByteStream):
    """An answer that never ends; ``sent`` counts what was read of it."""

    def __init__(self) -> None:
        self.sent = 0

    def __iter__(self) -> Iterator[bytes]:
        while True:
            self.sent += 1 << 16
            yield b"x" * (1 << 16)


def test_token_and_error_answers_stop_at_the_document_limit() -> None:
    from cache.distribution.body import MAX_DOCUMENT, ResponseTooLarge

    token, error = _Endless(), _Endless()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/token":
            return httpx.Response(200, stream=token)
        if request.url.path.endswith("/blobs/" + str(BLOB_DIGEST)):
            return httpx.Response(404, stream=error)
        challenge = 'Bearer realm="https://reg.example/token",service="reg"'
        if "Authorization" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": challenge})
        return httpx.Response(200, content=b"{}")

    with _client(handler) as client, pytest.raises(ResponseTooLarge, match="4 MiB limit"):
        client.get_manifest()
    assert MAX_DOCUMENT < token.sent <= MAX_DOCUMENT + (1 << 17)

    def no_auth(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, stream=error)

    with _client(no_auth) as client, pytest.raises(ResponseTooLarge):
        client.has_blob(BLOB_DIGEST)  # an endless error body is cut at the limit
    assert error.sent <= MAX_DOCUMENT + (1 << 17)


def test_a_large_blob_the_registry_has_answers_head_with_its_size_and_is_found() -> None:
    size = 84 << 20  # a HEAD's Content-Length is the blob's, above any document limit

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.method == "HEAD"
        return httpx.Response(200, headers={"Content-Length": str(size)})

    with _client(handler) as client:
        assert client.has_blob(BLOB_DIGEST)
