"""Real unprivileged users for rootless tests, and running the CLI as one of them.

Set-up needs root (useradd, and a private mount namespace); the CLI then runs with
``setpriv`` as the user, with its store in the user's home (the default root).

Python lives under /root here (pyenv), and /root is mode 0700. Rather than chmod /root on
the host, each CLI call runs in a private mount namespace where a small tmpfs covers
/root and only the Python installation is bound back at its own path: the user can run
that Python and nothing else of /root, and nothing changes outside the test process.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.clihelp import REPO, Result

EPOCH = "1700000000"
PREFIX = os.path.realpath(sys.base_prefix)
# $1 user, then the paths the user must reach (Python, the checkout), "--", the command.
# For each path whose ancestors others cannot search (/root is 0700; so may be a CI
# checkout's parent), that ancestor is covered by a small tmpfs and only the path is
# bound back: the user reaches it and nothing else, and the host does not change.
_AS_USER = r"""
set -e
user=$1; shift
binds=""; covers=""
while [ "$1" != "--" ]; do
    path=$1; shift
    sofar=""; blocked=""
    for part in $(echo "${path#/}" | tr '/' ' '); do
        sofar="$sofar/$part"
        [ "$sofar" = "$path" ] && break
        case "$(stat -c %A "$sofar")" in
            *x|*t) ;;
            *) blocked=$sofar; break ;;
        esac
    done
    [ -n "$blocked" ] || continue
    keep=$(mktemp -d /tmp/pybuild-keep.XXXXXX)
    mount --rbind "$path" "$keep"
    binds="$binds $keep=$path"
    case " $covers " in *" $blocked "*) ;; *) covers="$covers $blocked" ;; esac
done
shift
for dir in $covers; do mount -t tmpfs -o mode=0755,size=1m pybuild-test "$dir"; done
for pair in $binds; do
    keep=${pair%%=*}; path=${pair#*=}
    mkdir -p "$path"
    mount --move "$keep" "$path"
    rmdir "$keep" 2>/dev/null || true
done
exec setpriv --reuid="$user" --regid="$user" --clear-groups -- "$@"
"""


@dataclass(frozen=True)
class User:
    name: str
    home: Path
    subuid: int | None  # first id of its subordinate range, None without one

    def pybuild(
        self, *args: str | Path, ok: bool = True, env: dict[str, str] | None = None
    ) -> Result:
        """Run the CLI as this user, default store (~/.local/share/pybuild)."""
        command, full_env = self.command(*args, env=env)
        done = subprocess.run(
            command, capture_output=True, text=True, env=full_env, cwd=REPO, timeout=300
        )
        result = Result(done.returncode, done.stdout, done.stderr)
        if ok and done.returncode != 0:
            raise AssertionError(
                f"pybuild {args} as {self.name} failed:\n{done.stderr}\n{done.stdout}"
            )
        return result

    def command(
        self, *args: str | Path, env: dict[str, str] | None = None
    ) -> tuple[list[str], dict[str, str]]:
        """The command line and environment that run ``pybuild ARGS`` as this user (for
        a process the test starts itself, such as ``pybuild serve``)."""
        full_env = {
            k: v for k, v in os.environ.items() if k not in ("PYBUILD_ROOT", "XDG_DATA_HOME")
        }
        full_env.update(
            HOME=str(self.home),
            USER=self.name,
            PYTHONDONTWRITEBYTECODE="1",
            SOURCE_DATE_EPOCH=EPOCH,
            **(env or {}),
        )
        command = [
            "unshare", "--mount", "--propagation", "private",
            "sh", "-c", _AS_USER, "sh", self.name, PREFIX, str(REPO), "--",
            sys.executable, "-m", "builder.cli", *map(str, args),
        ]  # fmt: skip
        return command, full_env

    def give(self, path: Path) -> Path:
        """Hand ``path`` (a tree) over to the user."""
        subprocess.run(["chown", "-R", f"{self.name}:{self.name}", str(path)], check=True)
        return path


def make_user(with_range: bool) -> User:
    name = f"pbrl{uuid.uuid4().hex[:8]}"
    # System users (-r) get no subordinate ids; normal ones get useradd's automatic range.
    flags = ["-m", "-s", "/bin/sh"] if with_range else ["-r", "-m", "-s", "/bin/sh"]
    subprocess.run(["useradd", *flags, name], check=True, capture_output=True)
    home = Path(f"~{name}").expanduser()
    start = None
    for line in Path("/etc/subuid").read_text().splitlines():
        fields = line.split(":")
        if fields[0] == name:
            start = int(fields[1])
    if with_range and start is None:
        remove_user(name)
        pytest.skip("useradd gave the test user no /etc/subuid range")
    if not with_range and start is not None:
        remove_user(name)
        pytest.fail(f"system user {name} unexpectedly got a subordinate range")
    return User(name, home, start)


def remove_user(name: str) -> None:
    subprocess.run(["pkill", "-KILL", "-u", name], check=False, capture_output=True)
    subprocess.run(["userdel", "-r", "-f", name], check=False, capture_output=True)
    for path in ("/etc/subuid", "/etc/subgid"):  # userdel normally does this already
        subprocess.run(["sed", "-i", f"/^{name}:/d", path], check=False)


def _tun_open_to_users() -> bool:
    try:
        return stat.S_IMODE(Path("/dev/net/tun").stat().st_mode) & 0o006 == 0o006
    except OSError:
        return False


# What a rootless test of pasta networking needs, each skip with its reason: pasta opens
# /dev/net/tun as the user, which distributions make 0666 (checked, not assumed).
ROOTLESS_PASTA_MARKS = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(shutil.which("pasta") is None, reason="needs pasta (Debian's passt)"),
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in ("useradd", "userdel", "setpriv", "unshare")),
        reason="needs useradd, userdel, setpriv and unshare (util-linux, passwd)",
    ),
    pytest.mark.skipif(
        not _tun_open_to_users(),
        reason="rootless pasta opens /dev/net/tun, which is not mode 0666 here "
        "(`chmod 0666 /dev/net/tun`, as .ci/run does)",
    ),
]


def loaded_user(with_range: bool, busybox: Path, *archives: Path) -> User:
    """A new user (see :func:`make_user`) with busybox and ``archives`` loaded into its
    store; remove it with :func:`remove_user`."""
    made = make_user(with_range)
    try:
        base = made.home / "busybox.tar"  # the session's copy is in a root-only dir
        shutil.copyfile(busybox, base)
        made.give(base)
        made.pybuild("load", "-i", base)
        for archive in archives:
            made.pybuild("load", "-i", archive)
    except BaseException:
        remove_user(made.name)
        raise
    return made
