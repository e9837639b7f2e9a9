"""Registry authentication: docker's config.json, credential helpers, basic and bearer.

Credentials come from ``<config dir>/config.json`` as docker writes it: ``credHelpers``
(per registry) first, then ``credsStore`` (all registries), then ``auths`` (base64
``user:password``). Helpers are ``docker-credential-NAME`` programs speaking docker's
credential-helper protocol (``get``/``store``/``erase`` on stdin/stdout).

``RegistryAuth`` answers the distribution spec's challenges (auth spec, "token"): a 401
with ``WWW-Authenticate: Basic`` is retried with basic credentials; with ``Bearer
realm=...,service=...,scope=...`` a token is fetched from the realm and the request is
retried with it. Tokens are kept per client, so later requests carry them up front.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import threading
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from cache.distribution.errors import CredentialsError, RegistryAuthError
from cache.distribution.reference import DOCKER_HUB, DOCKER_HUB_AUTH_KEY

_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str


@dataclass(frozen=True)
class Challenge:
    """A parsed ``WWW-Authenticate`` header: scheme (lowercase) and its parameters."""

    scheme: str
    params: tuple[tuple[str, str], ...] = ()

    def get(self, key: str) -> str:
        return dict(self.params).get(key, "")


def parse_challenge(header: str) -> Challenge:
    """``Bearer realm="...",service="..."`` -> Challenge("bearer", (("realm", ...), ...))."""
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), tuple(_CHALLENGE_PARAM.findall(rest)))


# --- docker's config.json -------------------------------------------------------------


def _config_path(config_dir: Path) -> Path:
    return config_dir / "config.json"


def _read_config(config_dir: Path) -> dict[str, Any]:
    path = _config_path(config_dir)
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise CredentialsError(
            f"cannot read {path}: {exc}", hint="fix or remove the file, then log in again"
        ) from None
    if not isinstance(value, dict):
        raise CredentialsError(f"{path} is not a JSON object", hint="fix or remove the file")
    return value


def _write_config(config_dir: Path, config: dict[str, Any]) -> None:
    """Atomically replace config.json (0600: it may hold passwords)."""
    path = _config_path(config_dir)
    try:
        config_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".config.json.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(config, f, indent="\t")
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
    except OSError as exc:
        raise CredentialsError(f"cannot write {path}: {exc.strerror}") from None


def _auth_key(registry: str) -> str:
    return DOCKER_HUB_AUTH_KEY if registry == DOCKER_HUB else registry


def _key_matches(key: str, registry: str) -> bool:
    """config.json keys may carry a scheme and path (``https://host/v1/``)."""
    host = key.split("://", 1)[-1].split("/", 1)[0]
    if registry == DOCKER_HUB:
        return host in ("index.docker.io", "docker.io", "registry-1.docker.io")
    return host == registry


def _helper_for(config: dict[str, Any], registry: str) -> str | None:
    helpers = config.get("credHelpers") or {}
    if isinstance(helpers, dict):
        for key, name in helpers.items():
            if _key_matches(str(key), registry):
                return str(name)
    store = config.get("credsStore")
    return str(store) if store else None


def _run_helper(helper: str, action: str, payload: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        done = subprocess.run(
            [program, action],
            input=payload,
            capture_output=True,
            text=True,
            timeout=_HELPER_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise CredentialsError(
            f"credential helper {program} is not installed",
            hint=f"install it, or remove {helper!r} from credHelpers/credsStore in config.json",
        ) from None
    except subprocess.TimeoutExpired:
        raise CredentialsError(f"credential helper {program} did not answer") from None
    if done.returncode != 0:
        message = (done.stdout or done.stderr).strip()
        if "credentials not found" in message.lower():
            return ""
        raise CredentialsError(f"{program} {action} failed: {message}")
    return done.stdout


def load_credentials(config_dir: Path, registry: str) -> Credentials | None:
    """The stored credentials for ``registry`` (a Reference.registry), or None."""
    config = _read_config(config_dir)
    helper = _helper_for(config, registry)
    if helper is not None:
        out = _run_helper(helper, "get", _auth_key(registry))
        if not out:
            return None
        try:
            doc = json.loads(out)
            return Credentials(str(doc["Username"]), str(doc["Secret"]))
        except (ValueError, KeyError, TypeError):
            raise CredentialsError(f"docker-credential-{helper} gave malformed output") from None
    auths = config.get("auths") or {}
    for key, entry in auths.items() if isinstance(auths, dict) else ():
        if _key_matches(str(key), registry) and isinstance(entry, dict):
            return _from_auth_entry(entry, key)
    return None


def _from_auth_entry(entry: dict[str, Any], key: str) -> Credentials | None:
    if entry.get("username") and entry.get("password"):
        return Credentials(str(entry["username"]), str(entry["password"]))
    encoded = entry.get("auth")
    if not encoded:
        return None
    try:
        user, sep, password = base64.b64decode(str(encoded)).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        sep = ""
    if not sep:
        raise CredentialsError(
            f"config.json: the auth entry for {key} is not base64 user:password",
            hint=f"run `pybuild login {key}` again",
        )
    return Credentials(user, password)


def store_credentials(config_dir: Path, registry: str, creds: Credentials) -> None:
    """Save credentials where docker would: the registry's helper, else ``auths``."""
    config = _read_config(config_dir)
    helper = _helper_for(config, registry)
    key = _auth_key(registry)
    if helper is not None:
        payload = {"ServerURL": key, "Username": creds.username, "Secret": creds.password}
        _run_helper(helper, "store", json.dumps(payload))
        return
    auths = config.setdefault("auths", {})
    encoded = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    auths[key] = {"auth": encoded}
    _write_config(config_dir, config)


def erase_credentials(config_dir: Path, registry: str) -> bool:
    """Forget the registry's credentials; False when none were stored."""
    config = _read_config(config_dir)
    helper = _helper_for(config, registry)
    if helper is not None:
        _run_helper(helper, "erase", _auth_key(registry))
        return True
    auths = config.get("auths") or {}
    keys = [k for k in auths if _key_matches(str(k), registry)]
    for key in keys:
        del auths[key]
    if keys:
        _write_config(config_dir, config)
    return bool(keys)


# --- the challenge flow ----------------------------------------------------------------


class RegistryAuth(httpx.Auth):
    """httpx auth for one repository on one registry: anonymous, basic or bearer.

    ``scope`` is the distribution token scope we need, e.g. ``repository:a/b:pull``.
    """

    def __init__(self, credentials: Credentials | None, scope: str) -> None:
        self._credentials = credentials
        self._scope = scope
        self._lock = threading.Lock()
        self._header: str | None = None

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        with self._lock:
            header = self._header
        if header is not None:
            request.headers["Authorization"] = header
        response = yield request
        if response.status_code != 401:
            return
        challenge = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        if challenge.scheme == "basic":
            if self._credentials is None:
                return  # the caller turns the 401 into "login first"
            new_header = _basic_header(self._credentials)
        elif challenge.scheme == "bearer":
            token_response = yield self._token_request(challenge)
            token_response.read()
            new_header = f"Bearer {_token_from(token_response, self._credentials)}"
        else:
            return
        if new_header == header:
            return  # the same credentials were just refused: do not loop
        with self._lock:
            self._header = new_header
        request.headers["Authorization"] = new_header
        yield request

    def _token_request(self, challenge: Challenge) -> httpx.Request:
        realm = challenge.get("realm")
        if not realm.startswith(("https://", "http://")):
            raise RegistryAuthError(
                f"registry sent a bearer challenge with no usable realm: {realm!r}"
            )
        params: list[tuple[str, str | int | float | bool | None]] = []
        if service := challenge.get("service"):
            params.append(("service", service))
        # A challenge may ask for several scopes at once (space-separated), e.g. a
        # cross-repository mount needs pull on the source and push on the target.
        scopes = [*challenge.get("scope").split(), *self._scope.split()]
        params.extend(("scope", s) for s in dict.fromkeys(scopes))
        headers = {}
        if self._credentials is not None:
            headers["Authorization"] = _basic_header(self._credentials)
        return httpx.Request("GET", realm, params=params, headers=headers)


def _basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _token_from(response: httpx.Response, creds: Credentials | None) -> str:
    if response.status_code in (401, 403):
        raise RegistryAuthError(
            f"the token server refused {'our credentials' if creds else 'anonymous access'} "
            f"(HTTP {response.status_code})",
            hint="check the user name and password (`pybuild login REGISTRY`)",
        )
    if response.status_code != 200:
        raise RegistryAuthError(f"the token server answered HTTP {response.status_code}")
    try:
        doc = response.json()
        token = doc.get("token") or doc.get("access_token")
    except (ValueError, AttributeError):
        token = None
    if not isinstance(token, str) or not token:
        raise RegistryAuthError("the token server's answer holds no token")
    return token
