"""Variable expansion through the CLI: every ``${VAR...}`` modifier in every instruction
and flag that expands, ONBUILD expanded in the child, and ``${VAR:?message}`` failing.

Expected values come from the Dockerfile reference and from dockerd 20.10's BuildKit run
on this machine.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.integration.clihelp import Pybuild, build_error, build_rootfs, write_context

pytestmark = [pytest.mark.requires_root, pytest.mark.requires_overlay]


# dockerd 20.10's BuildKit (Dockerfile 1.2) agrees on what it knows here (:- :+ \$,
# quotes, --chown expansion, ONBUILD expanded in the child with the parent's ENV); it
# predates the other modifiers (Dockerfile 1.6+) and expanding RUN --mount options.
MODIFIERS_PARENT = """\
ARG BASE=busybox:latest
ARG TAG
FROM ${BASE%%:*}:${TAG:-latest} AS first
RUN echo staged > /staged
FROM ${BASE%:*}
ARG NAME=release-1.2.3
ARG EMPTY=
ENV A=${NAME#release-} B=${NAME##*.} C=${NAME%.*} D=${NAME%%.*} \\
    E=${NAME/./_} F=${NAME//./_} G=${UNSET-dflt} H=${EMPTY:-dflt} I=[${EMPTY-kept}] \\
    J=${NAME:+set} K=${EMPTY+plus} L=[${UNSET:+no}] M=\\$NAME N='${NAME}'
LABEL v=${NAME#release-} q='${NAME}'
EXPOSE ${PORT:-8080}/${PROTO:-udp}
STOPSIGNAL ${SIG:-SIGQUIT}
VOLUME /${NAME%%-*}
WORKDIR /w/${NAME//./-}
COPY ${SRC:-f.txt} /c/${NAME#*-}
ADD ${SRC:-f.txt} /a/${NAME%%.*}/
COPY --chown=${OWN:-7}:${GRP:-8} --chmod=${MODE:-640} f.txt /owned
COPY --from=first /staged /from-stage
RUN --mount=type=bind,source=${SRC:-f.txt},target=${MNT:-/mnt/f} cp /mnt/f /mounted
ENV OBX=parentenv
ONBUILD WORKDIR /ob/${OBX%env}
USER ${USR:-1000}:${USRGRP:-1001}
"""


def test_expansion_modifiers_in_every_expanding_instruction_and_flags(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    out = build_rootfs(pybuild, tmp_path, MODIFIERS_PARENT, {"f.txt": "file"})
    config = pybuild.config("t:1")
    env = dict(e.split("=", 1) for e in config["Env"])
    assert {k: env[k] for k in "ABCDEFGHIJKLMN"} == {
        "A": "1.2.3",
        "B": "3",
        "C": "release-1.2",
        "D": "release-1",
        "E": "release-1_2.3",
        "F": "release-1_2_3",
        "G": "dflt",
        "H": "dflt",
        "I": "[]",
        "J": "set",
        "K": "plus",
        "L": "[]",
        "M": "$NAME",
        "N": "${NAME}",
    }
    assert config["Labels"] == {"v": "1.2.3", "q": "${NAME}"}
    assert config["ExposedPorts"] == {"8080/udp": {}}
    assert config["StopSignal"] == "SIGQUIT"
    assert config["Volumes"] == {"/release": {}}
    assert config["WorkingDir"] == "/w/release-1-2-3"
    assert config["User"] == "1000:1001"
    assert config["OnBuild"] == ["WORKDIR /ob/${OBX%env}"]
    assert (out / "c" / "1.2.3").read_text() == "file"
    assert (out / "a" / "release-1" / "f.txt").read_text() == "file"
    owned = os.lstat(out / "owned")
    assert (owned.st_uid, owned.st_gid, stat.S_IMODE(owned.st_mode)) == (7, 8, 0o640)
    assert (out / "from-stage").read_text() == "staged\n"
    assert (out / "mounted").read_text() == "file"
    # ONBUILD expands in the child, with the parent's ENV.
    child = write_context(tmp_path / "child", {}, "FROM t:1\n")
    pybuild.build(child, "-t", "onbuild-child:1")
    assert pybuild.config("onbuild-child:1")["WorkingDir"] == "/ob/parent"


def test_required_variable_modifier_fails_with_line_and_message(
    pybuild: Pybuild, tmp_path: Path
) -> None:
    err = build_error(
        pybuild, tmp_path, "FROM busybox\nARG NEED\nWORKDIR /${NEED:?set NEED first}\n"
    )
    assert "Dockerfile:3" in err and "set NEED first" in err
