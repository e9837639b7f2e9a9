"""``pybuild serve`` run by an unprivileged user: its default socket is in the user's
``$XDG_RUNTIME_DIR``, private to the user, and the docker CLI builds and runs through it
in rootless mode."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from tests.integration.engine_server import DOCKER_CLI, NO_DOCKER_CLI
from tests.integration.rootless_users import ROOTLESS_PASTA_MARKS, loaded_user, remove_user

pytestmark = [*ROOTLESS_PASTA_MARKS, pytest.mark.skipif(DOCKER_CLI is None, reason=NO_DOCKER_CLI)]


def test_rootless_serve_listens_in_the_runtime_dir_and_builds_and_runs(
    base_archive: Path, tmp_path: Path
) -> None:
    user = loaded_user(True, base_archive)
    server = None
    try:
        runtime_dir = user.home / "run"
        runtime_dir.mkdir(mode=0o700)
        user.give(runtime_dir)
        command, env = user.command("serve", env={"XDG_RUNTIME_DIR": str(runtime_dir)})
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            server = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        sock = runtime_dir / "pybuild.sock"
        subprocess.run(
            ["sh", "-c", f"for i in $(seq 100); do [ -S {sock} ] && exit 0; sleep 0.1; done"],
            check=True,
        )
        st = sock.stat()
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == user.home.stat().st_uid
        ctx = tmp_path / "ctx"
        ctx.mkdir()
        (ctx / "Dockerfile").write_text(
            'FROM busybox\nRUN echo rootless > /r\nCMD ["sh", "-c", "cat /r; exit 4"]\n'
        )
        env = {"DOCKER_HOST": f"unix://{sock}", "DOCKER_BUILDKIT": "0", "PATH": "/usr/bin:/bin"}
        env["DOCKER_CONFIG"] = str(tmp_path / "docker-config")
        assert DOCKER_CLI is not None
        built = subprocess.run(
            [DOCKER_CLI, "build", "-t", "rl:1", str(ctx)], env=env, capture_output=True, text=True
        )
        assert built.returncode == 0, built.stderr + log.read_text()
        ran = subprocess.run(
            [DOCKER_CLI, "run", "--rm", "rl:1"], env=env, capture_output=True, text=True
        )
        assert (ran.returncode, ran.stdout) == (4, "rootless\n"), ran.stderr
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        remove_user(user.name)
