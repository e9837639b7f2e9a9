"""The sandbox as a process runner: status, stdio, identity, namespaces, signals."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
import time
from pathlib import Path

import pytest

from runtime.errors import SandboxError, UserNotFound
from runtime.rootfs import overlay_supported
from runtime.sandbox import run, start
from runtime.spec import BindMount, ContainerSpec, RunResult
from tests.integration.busybox_rootfs import fresh_rootfs, make_busybox_rootfs

pytestmark = [
    pytest.mark.requires_root,
    pytest.mark.requires_overlay,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and mounts"),
    pytest.mark.skipif(not overlay_supported(), reason="kernel has no overlayfs"),
]

PATH_ENV = ("PATH=/bin",)


@pytest.fixture(scope="module")
def lower(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_rootfs(tmp_path_factory.mktemp("busybox"))


def sh(lower: Path, tmp: Path, script: str, **fields: object) -> ContainerSpec:
    """A spec running ``sh -c script`` on a fresh overlay of ``lower``."""
    fields.setdefault("env", PATH_ENV)
    return ContainerSpec(
        rootfs=fresh_rootfs(tmp, (lower,)),
        args=("sh", "-c", script),
        **fields,  # type: ignore[arg-type]
    )


def run_capturing(spec: ContainerSpec) -> tuple[RunResult, str, str]:
    """Run ``spec`` with stdout and stderr going to files; return both texts."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        result = run(spec, stdout=out.fileno(), stderr=err.fileno())
        out.seek(0)
        err.seek(0)
        return result, out.read().decode(), err.read().decode()


@pytest.mark.parametrize("code", [0, 3, 255])
def test_exit_status_is_reported(lower: Path, tmp_path: Path, code: int) -> None:
    result = run(sh(lower, tmp_path, f"exit {code}"))
    assert result == RunResult(exit_code=code, signal=None, error=None)


def test_killed_container_reports_128_plus_signal(lower: Path, tmp_path: Path) -> None:
    box = start(sh(lower, tmp_path, "sleep 30"))
    time.sleep(0.3)
    box.kill()
    result = box.wait()
    assert (result.exit_code, result.signal) == (128 + signal.SIGKILL, signal.SIGKILL)


def test_sigterm_is_forwarded_to_pid1(lower: Path, tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    script = "trap 'exit 42' TERM; echo ready; while true; do sleep 0.05; done"
    box = start(sh(lower, tmp_path, script), stdout=write_end)
    os.close(write_end)
    with os.fdopen(read_end) as out:
        assert out.readline() == "ready\n"
        box.send_signal(signal.SIGTERM)
        assert box.wait().exit_code == 42


def test_second_sigterm_kills_pid1_that_ignores_it(lower: Path, tmp_path: Path) -> None:
    box = start(sh(lower, tmp_path, "exec sleep 30"))
    time.sleep(0.3)
    box.send_signal(signal.SIGTERM)  # PID 1 without a handler ignores it, like docker
    time.sleep(0.3)
    assert box.running()
    box.send_signal(signal.SIGTERM)
    assert box.wait().signal == signal.SIGKILL


def test_stdout_and_stderr_are_written_to_given_fds(lower: Path, tmp_path: Path) -> None:
    result, out, err = run_capturing(sh(lower, tmp_path, "echo to-out; echo to-err >&2"))
    assert (result.exit_code, out, err) == (0, "to-out\n", "to-err\n")


def test_stdin_is_read_from_given_fd(lower: Path, tmp_path: Path) -> None:
    with tempfile.TemporaryFile() as given:
        given.write(b"from stdin\n")
        given.seek(0)
        with tempfile.TemporaryFile() as out:
            run(sh(lower, tmp_path, "cat"), stdin=given.fileno(), stdout=out.fileno())
            out.seek(0)
            assert out.read() == b"from stdin\n"


def test_command_not_found_returns_127_with_docker_message(lower: Path, tmp_path: Path) -> None:
    spec = ContainerSpec(fresh_rootfs(tmp_path, (lower,)), ("no-such-cmd",), env=PATH_ENV)
    result = run(spec)
    assert result.exit_code == 127
    assert result.error == 'exec: "no-such-cmd": executable file not found in $PATH'


def test_missing_absolute_command_returns_127(lower: Path, tmp_path: Path) -> None:
    result = run(ContainerSpec(fresh_rootfs(tmp_path, (lower,)), ("/nope",)))
    assert result.exit_code == 127
    assert result.error == 'exec: "/nope": stat /nope: no such file or directory'


def test_non_executable_command_returns_126(lower: Path, tmp_path: Path) -> None:
    result = run(ContainerSpec(fresh_rootfs(tmp_path, (lower,)), ("/etc/passwd",)))
    assert result.exit_code == 126
    assert result.error == 'exec: "/etc/passwd": permission denied'


def test_command_is_pid_1(lower: Path, tmp_path: Path) -> None:
    _, out, _ = run_capturing(sh(lower, tmp_path, "echo $$; ps -o pid,comm; true"))
    first, *processes = out.splitlines()
    assert first == "1"
    assert [p.split()[0] for p in processes[1:]] == ["1", "2"]  # sh and ps, nothing else


def test_hostname_is_isolated(lower: Path, tmp_path: Path) -> None:
    before = socket.gethostname()
    _, out, _ = run_capturing(sh(lower, tmp_path, "hostname; hostname changed", hostname="box1"))
    assert out == "box1\n"
    assert socket.gethostname() == before


def test_user_name_is_resolved_in_the_rootfs(lower: Path, tmp_path: Path) -> None:
    _, out, _ = run_capturing(sh(lower, tmp_path, "id; echo $HOME", user="app"))
    # The kernel keeps supplementary groups sorted.
    assert out == "uid=1000(app) gid=1000(app) groups=50(staff),1000(app)\n/home/app\n"


def test_numeric_user_and_group_need_no_entries(lower: Path, tmp_path: Path) -> None:
    _, out, _ = run_capturing(sh(lower, tmp_path, "id -u; id -g; id -G", user="4242:4343"))
    assert out.split() == ["4242", "4343", "4343"]


def test_unknown_user_raises_user_not_found(lower: Path, tmp_path: Path) -> None:
    with pytest.raises(UserNotFound, match="ghost"):
        run(sh(lower, tmp_path, "true", user="ghost"))


def test_cwd_is_created_and_used(lower: Path, tmp_path: Path) -> None:
    spec = sh(lower, tmp_path, "pwd", cwd="/srv/app")
    result, out, _ = run_capturing(spec)
    assert (result.exit_code, out) == (0, "/srv/app\n")
    created = spec.rootfs.upper / "srv" / "app"
    assert created.is_dir()  # docker keeps the working dir it created
    assert (created.stat().st_mode & 0o777, created.stat().st_uid) == (0o755, 0)


def test_env_is_applied_and_home_defaults_from_passwd(lower: Path, tmp_path: Path) -> None:
    spec = sh(lower, tmp_path, 'echo "$GREETING|$HOME"', env=("PATH=/bin", "GREETING=hi there"))
    assert run_capturing(spec)[1] == "hi there|/root\n"


def test_network_none_has_only_loopback_and_it_is_up(lower: Path, tmp_path: Path) -> None:
    spec = sh(lower, tmp_path, "ls /sys/class/net; ip link", network="none")
    _, out, _ = run_capturing(spec)
    lines = out.splitlines()
    assert lines[0] == "lo"
    assert "lo: <LOOPBACK,UP,LOWER_UP>" in out
    assert not [line for line in lines if line[:1].isdigit() and "lo:" not in line]


def test_network_host_shares_host_interfaces(lower: Path, tmp_path: Path) -> None:
    _, out, _ = run_capturing(sh(lower, tmp_path, "ls /sys/class/net"))
    assert sorted(out.split()) == sorted(os.listdir("/sys/class/net"))


def test_host_filesystem_is_unreachable(lower: Path, tmp_path: Path) -> None:
    with tempfile.NamedTemporaryFile(dir="/tmp", prefix="pybuild-host-secret-") as secret:
        name = secret.name
        result = run(sh(lower, tmp_path, f"test -e {name} || test -e /proc/1/root{name}"))
    assert result.exit_code == 1


def test_etc_hosts_and_resolv_conf_are_provided(lower: Path, tmp_path: Path) -> None:
    spec = sh(lower, tmp_path, "cat /etc/hosts /etc/resolv.conf", hostname="h1")
    out = run_capturing(spec)[1]
    assert "127.0.0.1\tlocalhost h1\n" in out
    assert "::1\tlocalhost ip6-localhost ip6-loopback\n" in out
    assert out.endswith(Path("/etc/resolv.conf").read_text())


def test_given_hosts_and_resolv_conf_are_used(lower: Path, tmp_path: Path) -> None:
    spec = sh(
        lower,
        tmp_path,
        "cat /etc/hosts /etc/resolv.conf",
        hosts="10.0.0.1 db\n",
        resolv_conf="nameserver 10.0.0.53\n",
    )
    assert run_capturing(spec)[1] == "10.0.0.1 db\nnameserver 10.0.0.53\n"


def test_bind_mounts_are_visible_and_readonly_ones_refuse_writes(
    lower: Path, tmp_path: Path
) -> None:
    shared, sealed = tmp_path / "shared", tmp_path / "sealed"
    shared.mkdir()
    sealed.mkdir()
    (sealed / "f").write_text("sealed\n")
    mounts = (BindMount(shared, "/mnt/rw"), BindMount(sealed, "/mnt/ro", readonly=True))
    script = "echo out > /mnt/rw/new; cat /mnt/ro/f; touch /mnt/ro/x 2>/dev/null || echo refused"
    spec = sh(lower, tmp_path, script, mounts=mounts)
    assert run_capturing(spec)[1] == "sealed\nrefused\n"
    assert (shared / "new").read_text() == "out\n"
    assert sorted(os.listdir(spec.rootfs.upper)) == []  # /mnt stubs taken out again


def test_readonly_rootfs_refuses_writes(lower: Path, tmp_path: Path) -> None:
    spec = sh(lower, tmp_path, "touch /x 2>/dev/null || echo refused; pwd", readonly_rootfs=True)
    assert run_capturing(spec)[1] == "refused\n/\n"


def test_tty_makes_stdio_the_controlling_terminal(lower: Path, tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        spec = sh(lower, tmp_path, "test -t 0 && test -t 1 && echo tty:$(tty)", tty=True)
        result = run(spec, stdin=slave, stdout=slave, stderr=slave)
        output = os.read(master, 1024)
    finally:
        os.close(master)
        os.close(slave)
    assert result.exit_code == 0
    assert output.startswith(b"tty:/dev/")


def test_missing_lower_dir_raises_sandbox_error(tmp_path: Path) -> None:
    spec = ContainerSpec(fresh_rootfs(tmp_path, (tmp_path / "missing",)), ("true",))
    with pytest.raises(SandboxError, match="overlay"):
        run(spec)


def test_invalid_spec_is_refused_before_starting(lower: Path, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="not absolute"):
        run(sh(lower, tmp_path, "true", cwd="relative"))
