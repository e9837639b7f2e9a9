"""Registries for tests: Debian's ``docker-registry`` (distribution 2.8) on loopback,
a small bearer-token server in front of it, and a tiny fake registry that misbehaves.

Every server listens on 127.0.0.1 on a free port, keeps its state in a temp dir and is
stopped when its context manager exits.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx

REGISTRY_BIN = shutil.which("docker-registry")
HTPASSWD_BIN = shutil.which("htpasswd")
MISSING_REASON = "needs Debian's docker-registry and htpasswd (apt: docker-registry apache2-utils)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Registry:
    host: str  # 127.0.0.1:PORT, as image references name it
    root: Path
    user: str = ""
    password: str = ""

    @property
    def creds(self) -> str:
        return f"{self.user}:{self.password}"


def _wait_until_up(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not come up: {log.read_text()[-2000:]}")


@contextmanager
def run_registry(
    tmp: Path,
    *,
    user: str = "",
    password: str = "",
    token: TokenServer | None = None,
) -> Iterator[Registry]:
    """docker-registry with htpasswd basic auth (user given), bearer tokens, or open."""
    assert REGISTRY_BIN is not None
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "data")}},
        "http": {"addr": f"127.0.0.1:{port}", "secret": "test-secret"},
    }
    if user:
        assert HTPASSWD_BIN is not None
        line = subprocess.run(
            [HTPASSWD_BIN, "-Bbn", user, password], capture_output=True, check=True, text=True
        ).stdout.strip()
        (tmp / "htpasswd").write_text(line + "\n")
        config["auth"] = {"htpasswd": {"realm": "test", "path": str(tmp / "htpasswd")}}
    if token is not None:
        config["auth"] = {
            "token": {
                "realm": token.realm,
                "service": token.service,
                "issuer": token.issuer,
                "rootcertbundle": str(token.cert_path),
            }
        }
    # YAML is a superset of JSON, so the registry reads this as its config.
    (tmp / "config.yml").write_text(json.dumps(config))
    log = tmp / "registry.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(tmp / "config.yml")], stdout=out, stderr=out
        )
    try:
        _wait_until_up(f"http://127.0.0.1:{port}/v2/", proc, log)
        yield Registry(f"127.0.0.1:{port}", tmp, user, password)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- a bearer-token server (distribution's token auth spec) ------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues RS256 JWTs the registry trusts (x5c header, cert in its rootcertbundle).

    Basic credentials ``user:password`` get every action they ask for; anonymous callers
    get a token with no access; wrong credentials get 401.
    """

    service = "test-registry"
    issuer = "test-issuer"

    def __init__(self, tmp: Path, user: str, password: str) -> None:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import rsa
        from cryptography.x509.oid import NameOID

        self.user, self.password = user, password
        self.requests: list[dict[str, list[str]]] = []
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pybuild test tokens")])
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .sign(self._key, hashes.SHA256())
        )
        self._cert_der = cert.public_bytes(serialization.Encoding.DER)
        tmp.mkdir(parents=True, exist_ok=True)
        self.cert_path = tmp / "token-cert.pem"
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.port = free_port()
        self.realm = f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self._cert_der).decode()]}
        signing_input = (
            f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64url(signature)}"

    def answer(self, query: dict[str, list[str]], authorization: str) -> tuple[int, dict[str, Any]]:
        self.requests.append(query)
        subject = ""
        if authorization:
            expected = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            if authorization != f"Basic {expected}":
                return 401, {"details": "bad credentials"}
            subject = self.user
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            repo, _, actions = rest.rpartition(":")
            if subject:
                access.append({"type": kind, "name": repo, "actions": actions.split(",")})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": subject,
            "aud": self.service,
            "exp": now + 600,
            "nbf": now - 60,
            "iat": now,
            "jti": uuid.uuid4().hex,
            "access": access,
        }
        return 200, {"token": self.sign(claims), "expires_in": 600}

    @contextmanager
    def running(self) -> Iterator[TokenServer]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                url = urlparse(self.path)
                status, body = server.answer(
                    parse_qs(url.query), self.headers.get("Authorization", "")
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        with _serving(ThreadingHTTPServer(("127.0.0.1", self.port), Handler)):
            yield self


@contextmanager
def _serving(httpd: ThreadingHTTPServer) -> Iterator[None]:
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# --- a fake registry that misbehaves on purpose ------------------------------------------


@dataclass
class FakeRegistry:
    """Serves one image (``repo:tag``) from memory; blobs may be corrupt or cut short.

    ``corrupt``: digests served with one byte changed. ``drops``: digest -> how many
    GETs of it stop half-way (the connection is closed); later GETs succeed. Range
    requests are honoured, so a client may resume. ``delay``: seconds each blob GET
    waits before answering; ``most_at_once`` is the most blob GETs seen in flight.
    """

    repo: str
    tag: str
    manifest: bytes
    blobs: dict[str, bytes]
    corrupt: set[str] = field(default_factory=set)
    drops: dict[str, int] = field(default_factory=dict)
    ranged: list[str] = field(default_factory=list)
    port: int = 0
    delay: float = 0.0
    most_at_once: int = 0
    address: str = "127.0.0.1"  # where it listens
    _in_flight: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def host(self) -> str:
        return f"{self.address}:{self.port}"

    def handle(self, h: BaseHTTPRequestHandler, head: bool) -> None:
        path = urlparse(h.path).path
        prefix = f"/v2/{self.repo}/"
        if path == "/v2/":
            return _send(h, 200, b"{}", head=head)
        if path == f"{prefix}manifests/{self.tag}" or path.endswith(_digest(self.manifest)):
            ctype = json.loads(self.manifest)["mediaType"]
            return _send(h, 200, self.manifest, ctype, head=head)
        if path.startswith(f"{prefix}blobs/") and path.rsplit("/", 1)[1] in self.blobs:
            return self._counted(h, path.rsplit("/", 1)[1], head)
        _send(h, 404, b'{"errors":[{"code":"NAME_UNKNOWN","message":"not here"}]}', head=head)

    def _counted(self, h: BaseHTTPRequestHandler, digest: str, head: bool) -> None:
        with self._lock:
            self._in_flight += 1
            self.most_at_once = max(self.most_at_once, self._in_flight)
        try:
            time.sleep(self.delay)
            self._blob(h, digest, head)
        finally:
            with self._lock:
                self._in_flight -= 1

    def _blob(self, h: BaseHTTPRequestHandler, digest: str, head: bool) -> None:
        data = self.blobs[digest]
        if digest in self.corrupt:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        start = 0
        if rng := h.headers.get("Range"):
            self.ranged.append(rng)
            start = int(rng.removeprefix("bytes=").split("-")[0])
        if head:
            return _send(h, 200, data, head=True)
        h.send_response(206 if start else 200)
        h.send_header("Content-Length", str(len(data) - start))
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if self.drops.get(digest, 0) > 0:
            self.drops[digest] -= 1
            h.wfile.write(data[start : start + (len(data) - start) // 2])
            h.wfile.flush()
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        h.wfile.write(data[start:])

    @contextmanager
    def running(self) -> Iterator[FakeRegistry]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                fake.handle(self, head=False)

            def do_HEAD(self) -> None:
                fake.handle(self, head=True)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        httpd = ThreadingHTTPServer((self.address, 0), Handler)
        self.port = int(httpd.server_address[1])
        with _serving(httpd):
            yield self


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    ctype: str = "application/json",
    *,
    head: bool = False,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    if status == 200 and ctype != "application/json":
        h.send_header("Docker-Content-Digest", _digest(body))
    h.end_headers()
    if not head:
        h.wfile.write(body)


def fake_image(*layers: bytes) -> tuple[bytes, dict[str, bytes]]:
    """An OCI image (manifest bytes, blobs by digest) of uncompressed tar layers."""
    diff_ids = [_digest(layer) for layer in layers]
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }
    ).encode()
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": diff_id,
                    "size": len(layer),
                }
                for diff_id, layer in zip(diff_ids, layers, strict=True)
            ],
        }
    ).encode()
    return manifest, {_digest(config): config, **dict(zip(diff_ids, layers, strict=True))}


def non_loopback_address() -> str | None:
    """An address of this machine that is not loopback (None if it has none)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.123", 9))  # no packet is sent: this only picks a route
        except OSError:
            return None
        address = str(s.getsockname()[0])
    return None if address.startswith("127.") else address
