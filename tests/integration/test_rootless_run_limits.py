"""Rootless `pybuild run --memory`: an unprivileged user cannot write the host's cgroups
(no delegation on this machine), so the run must fail clearly, not crash or run unlimited."""

from __future__ import annotations

from tests.integration.test_rootless import (  # noqa: F401  (fixtures)
    User,
    base_for_users,
    pytestmark,
    single_user,
)


def test_rootless_run_with_memory_limit_fails_clearly_or_is_enforced(
    single_user: User,  # noqa: F811
) -> None:
    result = single_user.pybuild(
        "run", "--rm", "--memory", "32m", "busybox:latest", "true", ok=False
    )
    assert "Traceback" not in result.err
    if result.code == 0:  # a delegated cgroup: then the limit must hold
        hog = single_user.pybuild(
            "run", "--rm", "--memory", "32m", "busybox:latest",
            "sh", "-c", "head -c 200m /dev/zero | tail", ok=False,
        )  # fmt: skip
        assert hog.code == 137, hog.err
    else:
        assert result.code == 125, result.err
        assert "cgroup" in result.err, result.err
        assert "hint" in result.err.lower(), result.err


def test_rootless_run_without_limits_still_works(single_user: User) -> None:  # noqa: F811
    assert single_user.pybuild("run", "--rm", "busybox:latest", "echo", "ok").out == "ok\n"
