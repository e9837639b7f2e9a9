"""Steps that change nothing commit BuildKit's empty layer, and such images still run.

BuildKit commits a layer for every RUN, COPY, ADD and WORKDIR (but WORKDIR /), the
1024-byte empty tar when nothing changed; an image then holds the same layer twice,
which ``pybuild run`` must stack once (overlayfs refuses a lower dir listed twice).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.clihelp import Pybuild, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

EMPTY_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"


def _layers_and_history(cli: Pybuild, tag: str) -> tuple[list[str], list[dict[str, Any]]]:
    config = cli.inspect(tag)["Config"]
    return config["rootfs"]["diff_ids"], config["history"]


def test_steps_that_change_nothing_commit_the_empty_layer(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\nWORKDIR /tmp\nRUN true\nWORKDIR /\nENV A=1\nRUN echo hi > /hi\n",
    )
    pybuild.build(ctx, "-t", "empties:1")
    diff_ids, history = _layers_and_history(pybuild, "empties:1")
    base = len(pybuild.inspect("busybox")["Config"]["rootfs"]["diff_ids"])
    added = diff_ids[base:]
    assert added[:2] == [EMPTY_DIFF_ID, EMPTY_DIFF_ID]
    assert len(added) == 3 and added[2] != EMPTY_DIFF_ID
    flags = {h["created_by"]: h.get("empty_layer", False) for h in history}
    assert flags["WORKDIR /tmp"] is False
    assert flags["RUN /bin/sh -c true # buildkit"] is False
    assert flags["WORKDIR /"] is True  # BuildKit makes no mkdir for the root
    assert flags["ENV A=1"] is True


def test_image_with_a_repeated_layer_runs(pybuild: Pybuild, tmp_path: Path) -> None:
    ctx = write_context(
        tmp_path / "ctx",
        {"f.txt": "same\n"},
        "FROM busybox\nRUN true\nRUN true\nCOPY f.txt /f.txt\nCOPY f.txt /f.txt\n",
    )
    pybuild.build(ctx, "-t", "repeated:1")
    diff_ids, _ = _layers_and_history(pybuild, "repeated:1")
    assert diff_ids.count(EMPTY_DIFF_ID) == 2
    assert diff_ids[-1] == diff_ids[-2]  # the same COPY twice: the same layer twice
    result = pybuild("run", "--rm", "repeated:1", "cat", "/f.txt")
    assert result.out == "same\n"
    # A build on top of it stacks the repeated layers once too.
    child = write_context(tmp_path / "child", {}, "FROM repeated:1\nRUN cat /f.txt > /g\n")
    pybuild.build(child, "-t", "repeated:2")
    assert pybuild("run", "--rm", "repeated:2", "cat", "/g").out == "same\n"


def test_run_user_with_group_gets_docker_run_groups(pybuild: Pybuild, tmp_path: Path) -> None:
    """``docker run -u``: the primary gid is the only supplementary group when the group
    is given, and comes first before the user's /etc/group groups when it is not
    (checked against dockerd 20.10). A build's RUN does the same (current BuildKit's
    ensureAdditionalGids; see the user_group and run_groups_primary parity cases)."""
    ctx = write_context(
        tmp_path / "ctx",
        {},
        "FROM busybox\n"
        "RUN echo 'svc:x:1234:2345::/:/bin/sh' >> /etc/passwd"
        " && echo 'grp:x:2345:' >> /etc/group && echo 'extra:x:3000:svc' >> /etc/group\n"
        "USER svc:grp\n"
        "RUN grep ^Groups: /proc/self/status > /tmp/build-groups\n",
    )
    pybuild.build(ctx, "-t", "groups:1")
    script = "cat /tmp/build-groups; grep ^Groups: /proc/self/status"
    explicit = pybuild("run", "--rm", "-u", "svc:grp", "groups:1", "sh", "-c", script).out
    lines = [line.split() for line in explicit.splitlines()]
    assert lines == [["Groups:", "2345"], ["Groups:", "2345"]]  # RUN and run: the gid
    named = pybuild("run", "--rm", "-u", "svc", "groups:1", "grep", "^Groups:", "/proc/self/status")
    assert named.out.split() == ["Groups:", "2345", "3000"]
