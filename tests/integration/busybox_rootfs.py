"""A tiny busybox root filesystem for sandbox tests, built from Debian's busybox-static."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from runtime.sandbox import run
from runtime.spec import ContainerSpec, Rootfs, RunResult

BUSYBOX = Path("/bin/busybox")
APPLETS = (
    "sh", "echo", "cat", "ls", "id", "hostname", "touch", "rm", "mkdir", "ip", "ps",
    "sleep", "env", "pwd", "test", "true", "false", "stat", "grep", "kill", "chmod", "mount",
    "readlink", "wc", "printf", "tty", "ln", "rmdir", "cp", "mv", "head", "sed",
)  # fmt: skip
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "app:x:1000:1000::/home/app:/bin/sh\n"
    "nobody:x:65534:65534::/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nwheel:x:10:root\napp:x:1000:\nstaff:x:50:app\nnogroup:x:65534:\n"


def make_busybox_rootfs(dest: Path, *, with_etc: bool = True) -> Path:
    """Fill ``dest`` with /bin/busybox, applet symlinks and (unless ``with_etc`` is False)
    /etc/passwd and /etc/group with root, app (1000) and nobody; returns ``dest``."""
    (dest / "bin").mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for applet in APPLETS:
        (dest / "bin" / applet).symlink_to("busybox")
    if with_etc:
        (dest / "etc").mkdir(exist_ok=True)
        (dest / "etc" / "passwd").write_text(PASSWD)
        (dest / "etc" / "group").write_text(GROUP)
    return dest


def fresh_rootfs(base: Path, lowers: tuple[Path, ...]) -> Rootfs:
    """A :class:`Rootfs` over ``lowers`` with new, empty upper and work dirs under ``base``."""
    upper, work = base / "upper", base / "work"
    upper.mkdir(mode=0o755)
    work.mkdir()
    return Rootfs(lowers=lowers, upper=upper, work=work)


def run_sh(lower: Path, tmp: Path, script: str, **fields: object) -> tuple[RunResult, str, str]:
    """Run ``sh -c script`` on a fresh overlay of ``lower``; return result, stdout, stderr."""
    spec = ContainerSpec(
        rootfs=fresh_rootfs(tmp, (lower,)),
        args=("sh", "-c", script),
        env=("PATH=/bin",),
        **fields,  # type: ignore[arg-type]
    )
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = run(spec, stdout=out.fileno(), stderr=err.fileno())
        out.seek(0)
        err.seek(0)
        return result, out.read().decode(), err.read().decode()
