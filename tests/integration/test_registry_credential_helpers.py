"""docker-credential-* helpers through the CLI: ``credsStore`` keeps what login stores and
logout erases, ``credHelpers`` names a helper per registry and wins over ``auths``, and
wrong credentials from a helper are refused with the store left clean."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.credential_helper import write_credential_helper
from tests.integration.clihelp import assert_verified_clean
from tests.integration.registry_server import (
    HTPASSWD_BIN,
    MISSING_REASON,
    REGISTRY_BIN,
    run_registry,
)
from tests.integration.test_registry import Cli, _seed

pytestmark = pytest.mark.skipif(
    REGISTRY_BIN is None or HTPASSWD_BIN is None or shutil.which("skopeo") is None,
    reason=MISSING_REASON + " and skopeo",
)


def test_creds_store_and_cred_helpers_through_login_pull_logout(
    base_archive: Path, tmp_path: Path
) -> None:
    bindir, store = tmp_path / "bin", tmp_path / "helper.json"
    write_credential_helper(bindir, "test", store)
    cli = Cli(tmp_path)
    cli.docker_config.mkdir()
    config = cli.docker_config / "config.json"
    config.write_text(json.dumps({"credsStore": "test"}))
    env = {"DOCKER_CONFIG": str(cli.docker_config), "PATH": f"{bindir}:{os.environ['PATH']}"}
    with run_registry(tmp_path / "reg", user="carol", password="pw-9") as reg:
        _seed(reg, base_archive, f"docker://{reg.host}/lib/busybox:1")
        image = f"{reg.host}/lib/busybox:1"
        cli.pybuild("login", "-u", "carol", "--password-stdin", reg.host, input="pw-9", env=env)
        assert json.loads(store.read_text())[reg.host]["Secret"] == "pw-9"
        assert "pw-9" not in config.read_text()
        cli.pybuild("pull", image, env=env)
        cli.pybuild("logout", reg.host, env=env)
        assert json.loads(store.read_text()) == {}
        denied = cli.pybuild("pull", f"{reg.host}/lib/busybox:1", ok=False, env=env)
        assert "wants authentication" in " ".join(denied.err.split())
        # credHelpers names a helper per registry; it wins over auths.
        store.write_text(json.dumps({reg.host: {"Username": "carol", "Secret": "pw-9"}}))
        config.write_text(json.dumps({"credHelpers": {reg.host: "test"}, "auths": {}}))
        cli.pybuild("rmi", image, env=env)
        cli.pybuild("pull", image, env=env)
        # Wrong credentials from the helper: refused, and the store stays clean.
        store.write_text(json.dumps({reg.host: {"Username": "carol", "Secret": "bad"}}))
        cli.pybuild("rmi", image, env=env)
        refused = cli.pybuild("pull", image, ok=False, env=env)
        assert refused.code == 1
        assert "refused the credentials" in " ".join(refused.err.split())
        assert "Traceback" not in refused.err
    assert_verified_clean(cli.pybuild)
