"""Credentials from docker's config.json and helpers; the basic/bearer challenge flow."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import httpx
import pytest

from cache.distribution.auth import (
    Credentials,
    RegistryAuth,
    erase_credentials,
    load_credentials,
    parse_challenge,
    store_credentials,
)
from cache.distribution.errors import CredentialsError, RegistryAuthError
from tests.credential_helper import write_credential_helper


def _config(tmp_path: Path, doc: dict[str, object]) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "config.json").write_text(json.dumps(doc))
    return tmp_path


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auths_entry_gives_credentials_for_its_host(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"auths": {"reg.example:5000": {"auth": _b64("u:p:w")}}})
    assert load_credentials(cfg, "reg.example:5000") == Credentials("u", "p:w")
    assert load_credentials(cfg, "other.example") is None


def test_docker_hub_credentials_are_under_the_index_v1_key(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"auths": {"https://index.docker.io/v1/": {"auth": _b64("a:b")}}})
    assert load_credentials(cfg, "docker.io") == Credentials("a", "b")


def test_missing_config_means_anonymous(tmp_path: Path) -> None:
    assert load_credentials(tmp_path / "nowhere", "docker.io") is None


def test_malformed_auth_entry_is_an_error_with_hint(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"auths": {"h": {"auth": _b64("no-colon")}}})
    with pytest.raises(CredentialsError) as info:
        load_credentials(cfg, "h")
    assert "login" in (info.value.hint or "")


def test_store_then_erase_round_trips_and_keeps_other_keys(tmp_path: Path) -> None:
    _config(tmp_path, {"auths": {}, "psFormat": "table"})
    store_credentials(tmp_path, "h:1", Credentials("me", "pw"))
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["psFormat"] == "table"
    assert doc["auths"]["h:1"] == {"auth": _b64("me:pw")}
    assert (tmp_path / "config.json").stat().st_mode & 0o077 == 0
    assert load_credentials(tmp_path, "h:1") == Credentials("me", "pw")
    assert erase_credentials(tmp_path, "h:1") is True
    assert load_credentials(tmp_path, "h:1") is None
    assert erase_credentials(tmp_path, "h:1") is False


@pytest.fixture
def helper_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A docker-credential-fake on PATH that keeps its secrets in a JSON file."""
    bindir, store = tmp_path / "bin", tmp_path / "helper-store.json"
    write_credential_helper(bindir, "fake", store)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return store


def test_creds_store_helper_stores_and_gets(tmp_path: Path, helper_bin: Path) -> None:
    cfg = _config(tmp_path / "cfg", {"credsStore": "fake"})
    assert load_credentials(cfg, "h:1") is None
    store_credentials(cfg, "h:1", Credentials("x", "y"))
    assert "auths" not in json.loads((cfg / "config.json").read_text())
    assert load_credentials(cfg, "h:1") == Credentials("x", "y")
    erase_credentials(cfg, "h:1")
    assert json.loads(helper_bin.read_text()) == {}


def test_cred_helpers_entry_wins_for_its_registry(tmp_path: Path, helper_bin: Path) -> None:
    helper_bin.write_text(json.dumps({"h:1": {"Username": "hu", "Secret": "hs"}}))
    cfg = _config(
        tmp_path / "cfg",
        {"credHelpers": {"h:1": "fake"}, "auths": {"h:1": {"auth": _b64("a:b")}, "g": {}}},
    )
    assert load_credentials(cfg, "h:1") == Credentials("hu", "hs")


def test_missing_helper_program_is_a_clear_error(tmp_path: Path) -> None:
    cfg = _config(tmp_path, {"credsStore": "no-such-helper-xyz"})
    with pytest.raises(CredentialsError, match="docker-credential-no-such-helper-xyz"):
        load_credentials(cfg, "h")


def test_challenge_parsing() -> None:
    c = parse_challenge('Bearer realm="https://a/token",service="reg",scope="repository:x:pull"')
    assert c.scheme == "bearer"
    assert c.get("realm") == "https://a/token"
    assert c.get("scope") == "repository:x:pull"
    assert parse_challenge('Basic realm="r"').scheme == "basic"


def _bearer_registry(seen: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.path == "/token":
            if request.headers.get("Authorization") != "Basic " + _b64("u:p"):
                return httpx.Response(401)
            return httpx.Response(200, json={"token": "T1"})
        if request.headers.get("Authorization") == "Bearer T1":
            return httpx.Response(200, text="ok")
        challenge = 'Bearer realm="https://auth.example/token",service="svc"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})

    return httpx.MockTransport(handler)


def test_bearer_flow_fetches_token_with_scope_and_reuses_it() -> None:
    seen: list[httpx.Request] = []
    auth = RegistryAuth(Credentials("u", "p"), "repository:a/b:pull")
    with httpx.Client(transport=_bearer_registry(seen), auth=auth) as client:
        assert client.get("https://reg.example/v2/a/b/manifests/1").status_code == 200
        assert client.get("https://reg.example/v2/a/b/manifests/2").status_code == 200
    token_requests = [r for r in seen if r.url.path == "/token"]
    assert len(token_requests) == 1
    assert token_requests[0].url.params.get_list("scope") == ["repository:a/b:pull"]
    assert token_requests[0].url.params["service"] == "svc"
    assert len(seen) == 4  # 401, token, retry; then the second request carries the token


def test_bearer_flow_with_wrong_password_raises_auth_error() -> None:
    auth = RegistryAuth(Credentials("u", "wrong"), "repository:a/b:pull")
    with (
        httpx.Client(transport=_bearer_registry([]), auth=auth) as client,
        pytest.raises(RegistryAuthError, match="refused"),
    ):
        client.get("https://reg.example/v2/")


def test_basic_challenge_is_answered_with_credentials() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") == "Basic " + _b64("u:p"):
            return httpx.Response(200)
        return httpx.Response(401, headers={"WWW-Authenticate": 'Basic realm="r"'})

    auth = RegistryAuth(Credentials("u", "p"), "")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=auth) as client:
        assert client.get("https://reg.example/v2/").status_code == 200
    anonymous = RegistryAuth(None, "")
    with httpx.Client(transport=httpx.MockTransport(handler), auth=anonymous) as client:
        assert client.get("https://reg.example/v2/").status_code == 401
