"""The primary gid is always a supplementary group, in RUN and in `pybuild run`.

containerd pkg/oci/spec_opts.go (WithUser/WithAdditionalGIDs) and BuildKit
executor/oci/user.go (WithUIDGID -> ensureAdditionalGids), the CVE-2023-25173 fix.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]

# busybox's base has root, app (1000) and nobody; root joins wheel, app joins staff.
SETUP = (
    "FROM busybox\n"
    "RUN echo 'wheel:x:10:root' >> /etc/group && echo 'staff:x:50:app' >> /etc/group"
    " && echo 'grp:x:2345:' >> /etc/group\n"
)


def test_run_as_root_has_gid_0_and_the_groups_listing_root(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    root = build_rootfs(pybuild, tmp_path, SETUP + "RUN id > /id\n")
    assert (root / "id").read_text() == "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"


def test_run_under_user_name_has_its_primary_gid_among_groups(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    dockerfile = SETUP + "USER app\nRUN id > /tmp/id\nUSER app:grp\nRUN id > /tmp/id-grp\n"
    root = build_rootfs(pybuild, tmp_path, dockerfile)
    assert (root / "tmp" / "id").read_text() == (
        "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"
    )
    assert (root / "tmp" / "id-grp").read_text() == (
        "uid=1000(app) gid=2345(grp) groups=2345(grp)\n"
    )


def test_run_under_numeric_user_and_group_has_that_gid_as_group(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    root = build_rootfs(pybuild, tmp_path, "FROM busybox\nUSER 4242:4343\nRUN id -G > /tmp/g\n")
    assert (root / "tmp" / "g").read_text() == "4343\n"


def test_pybuild_run_has_the_primary_gid_among_groups(pybuild: Pybuild, tmp_path: Path) -> None:
    pybuild.build(write_context(tmp_path / "ctx", {}, SETUP), "-t", "groups:1")
    assert pybuild("run", "groups:1", "id").out == (
        "uid=0(root) gid=0(root) groups=0(root),10(wheel)\n"
    )
    assert pybuild("run", "-u", "app", "groups:1", "id").out == (
        "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n"
    )
