"""no_new_privs as docker has it: off for RUN and `pybuild run` (so `sudo` after
`USER app` works), on with `pybuild run --security-opt no-new-privileges`."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, write_context
from tests.integration.test_escape import euid_exit_elf

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

NNP = "grep NoNewPrivs /proc/self/status"
X86_ONLY = pytest.mark.skipif(platform.machine() != "x86_64", reason="the setuid probe is x86-64")


def _setuid_image(pybuild: Pybuild, tmp_path: Path) -> None:
    """busybox with /opt/euid, setuid root, whose exit status is its effective uid."""
    dockerfile = (
        "FROM busybox\nCOPY --chmod=4755 euid /opt/euid\nUSER 1000\n"
        f"RUN {NNP} > /tmp/run-nnp; /opt/euid; echo $? > /tmp/run-euid\n"
    )
    ctx = write_context(tmp_path / "ctx", {"euid": euid_exit_elf()}, dockerfile)
    pybuild.build(ctx, "-t", "suid:1")


@X86_ONLY
def test_run_step_as_non_root_can_use_a_setuid_binary(pybuild: Pybuild, tmp_path: Path) -> None:
    _setuid_image(pybuild, tmp_path)
    out = pybuild("run", "--rm", "suid:1", "cat", "/tmp/run-nnp", "/tmp/run-euid").out
    assert out.split() == ["NoNewPrivs:", "0", "0"]  # euid 0: the setuid bit worked


@X86_ONLY
@pytest.mark.parametrize("init", ["--init", "--no-init"])
def test_pybuild_run_honours_setuid_unless_no_new_privileges(
    pybuild: Pybuild, tmp_path: Path, init: str
) -> None:
    _setuid_image(pybuild, tmp_path)
    default = pybuild("run", "--rm", init, "suid:1", "/opt/euid", ok=False)
    assert default.code == 0
    locked = pybuild(
        "run", "--rm", init, "--security-opt", "no-new-privileges", "suid:1", "/opt/euid", ok=False
    )
    assert locked.code == 1000 & 0xFF  # still uid 1000: the setuid bit was ignored


@pytest.mark.parametrize(
    ("opts", "expected"),
    [
        ((), "0"),
        (("--security-opt", "no-new-privileges"), "1"),
        (("--security-opt", "no-new-privileges:true"), "1"),
        (("--security-opt", "no-new-privileges=true"), "1"),
        (("--security-opt", "no-new-privileges:false"), "0"),
    ],
)
def test_security_opt_no_new_privileges_sets_the_flag(
    pybuild: Pybuild, opts: tuple[str, ...], expected: str
) -> None:
    out = pybuild("run", "--rm", *opts, "busybox", "sh", "-c", NNP).out
    assert out.split() == ["NoNewPrivs:", expected]


@pytest.mark.parametrize("opt", ["seccomp=unconfined", "no-new-privileges:maybe"])
def test_unsupported_security_opt_is_a_clear_error(pybuild: Pybuild, opt: str) -> None:
    result = pybuild("run", "--rm", "--security-opt", opt, "busybox", "true", ok=False)
    assert result.code != 0
    assert opt in result.err and "no-new-privileges" in result.err
    assert "Traceback" not in result.err
