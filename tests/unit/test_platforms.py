"""Docker platform strings, the platform ARGs and stage platforms a plan gets, per-platform
cache keys, and which platforms binfmt_misc lets this machine run."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.emulation import runnable
from builder.errors import BuildError
from builder.frontend.builtin_args import platform_args
from builder.frontend.dockerfile import parse_dockerfile
from builder.images.store import Storage
from builder.ops.base import ExecContext
from builder.ops.context import BuildContext
from builder.plan.planner import Plan, PlanRequest, make_plan
from builder.solve import SolveOptions, Solver
from cache.oci import Descriptor, Platform, select_platform
from cache.platforms import PlatformError, parse_platform, parse_platforms
from runtime.emulation import emulated_architectures, parse_entry
from tests.unit.test_solve_fake_sandbox import FakeSandbox, Quiet

AMD64 = Platform("linux", "amd64", "")
ARM64 = Platform("linux", "arm64", "")


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("linux/amd64", "linux/amd64"),
        ("linux/x86_64", "linux/amd64"),
        ("linux/amd64/v1", "linux/amd64"),
        ("linux/aarch64", "linux/arm64"),
        ("linux/arm64/v8", "linux/arm64"),
        ("Linux/ARM64", "linux/arm64"),
        ("linux/arm", "linux/arm/v7"),
        ("linux/arm/7", "linux/arm/v7"),
        ("linux/arm/v6", "linux/arm/v6"),
        ("linux/armhf", "linux/arm/v7"),
        ("linux/i386", "linux/386"),
        ("arm64", "linux/arm64"),
        ("linux", "linux/amd64"),
        ("local", "linux/amd64"),
        ("linux/riscv64", "linux/riscv64"),
    ],
)
def test_platform_strings_normalise_as_containerd(text: str, want: str) -> None:
    assert str(parse_platform(text, host=AMD64)) == want


@pytest.mark.parametrize("text", ["", "linux/", "/arm64", "a/b/c/d", "plan9x"])
def test_malformed_platform_strings_are_refused(text: str) -> None:
    with pytest.raises(PlatformError, match="invalid platform"):
        parse_platform(text, host=AMD64)


def test_platform_list_keeps_order_and_drops_duplicates() -> None:
    got = parse_platforms("linux/arm64, linux/amd64,linux/aarch64", host=AMD64)
    assert [str(p) for p in got] == ["linux/arm64", "linux/amd64"]
    with pytest.raises(PlatformError, match="empty entry"):
        parse_platforms("linux/amd64,,linux/arm64", host=AMD64)


def test_index_entry_with_default_variant_matches_plain_arm64() -> None:
    from cache.digest import Digest

    entries = [
        Descriptor("m", Digest("sha256", "a" * 64), 1, platform=AMD64),
        Descriptor("m", Digest("sha256", "b" * 64), 1, platform=Platform("linux", "arm64", "v8")),
    ]
    chosen = select_platform(entries, ARM64)
    assert chosen is not None and chosen.digest.hex == "b" * 64
    assert select_platform(entries, Platform("linux", "s390x", "")) is None


def test_platform_args_name_target_and_build_platforms() -> None:
    args = platform_args(Platform("linux", "arm", "v7"), AMD64)
    assert args["TARGETPLATFORM"] == "linux/arm/v7"
    assert (args["TARGETOS"], args["TARGETARCH"], args["TARGETVARIANT"]) == ("linux", "arm", "v7")
    assert (args["BUILDPLATFORM"], args["BUILDARCH"], args["BUILDVARIANT"]) == (
        "linux/amd64",
        "amd64",
        "",
    )


CROSS = (
    "FROM --platform=$BUILDPLATFORM scratch AS build\n"
    "RUN toolchain\n"
    "ARG TARGETARCH\n"
    "RUN compile-for-$TARGETARCH\n"
    "FROM scratch\n"
    "ARG TARGETARCH\n"
    "COPY --from=build /out-$TARGETARCH /app\n"
)


def _plan(text: str, target: Platform) -> Plan:
    df = parse_dockerfile(text, "Dockerfile")

    def no_images(name: str, _instr: object) -> object:
        raise BuildError(f"no image {name}")

    request = PlanRequest(df, {}, None, "none", platform=target, build_platform=AMD64)
    return make_plan(request, no_images)  # type: ignore[arg-type]


def test_build_platform_stage_is_planned_for_the_build_platform() -> None:
    plan = _plan(CROSS, ARM64)
    build, final = plan.stages
    assert build.platform == AMD64 and final.platform == ARM64
    assert final.base_config.architecture == "arm64"  # FROM scratch for the target
    copy = final.steps[-1]
    assert '"/out-arm64"' in copy.key_text
    # Steps of a build for another platform than the host's have ids of their own.
    assert build.steps[0].id == "Dockerfile#0#1@linux/arm64"
    assert final.steps[-1].id == "Dockerfile#1#2@linux/arm64"
    assert _plan(CROSS, AMD64).stages[0].steps[0].id == "Dockerfile#0#1"


def test_progress_names_the_platform_in_multi_platform_builds() -> None:
    df = parse_dockerfile(CROSS, "Dockerfile")

    def no_images(name: str, _instr: object) -> object:
        raise BuildError(f"no image {name}")

    request = PlanRequest(
        df, {}, None, "none", platform=ARM64, build_platform=AMD64, show_platform=True
    )
    build, final = make_plan(request, no_images).stages  # type: ignore[arg-type]
    assert build.shown_platform == "linux/amd64->arm64"
    assert final.shown_platform == "linux/arm64"


def test_from_platform_that_is_malformed_names_the_line() -> None:
    with pytest.raises(BuildError, match="invalid platform") as info:
        _plan("FROM scratch\nFROM --platform=linux// scratch\nRUN x\n", AMD64)
    assert info.value.line == 2


def test_a_stage_takes_its_base_stage_platform() -> None:
    text = "FROM --platform=linux/arm64 scratch AS a\nFROM a\nRUN x\n"
    plan = _plan(text, AMD64)
    assert plan.stage(1).platform == ARM64


def _solve_keys(
    tmp_path: Path, target: Platform, built: set[str] | None = None, no_cache: bool = False
) -> list[tuple[str, bool, str]]:
    storage = Storage.open(tmp_path / "store")
    ctx_dir = tmp_path / "ctx"
    ctx_dir.mkdir(exist_ok=True)
    ctx = ExecContext(BuildContext(ctx_dir), FakeSandbox(), storage.blobs.tmp_dir)
    solver = Solver(storage, ctx, Quiet(), SolveOptions(no_cache=no_cache), built=built)
    text = (
        "FROM --platform=$BUILDPLATFORM scratch AS b\nRUN tools\n"
        "FROM scratch\nRUN same\nCOPY --from=b / /tools/\n"
    )
    solver.solve(_plan(text, target))
    storage.close()
    return [(s.step_id, s.cached, s.key or "") for s in solver.steps]


def test_keys_differ_per_platform_and_build_platform_stages_are_shared(tmp_path: Path) -> None:
    amd = _solve_keys(tmp_path, AMD64)
    arm = _solve_keys(tmp_path, ARM64)
    # The FROM --platform=$BUILDPLATFORM stage keys the same: built once, a hit after.
    assert arm[0][2] == amd[0][2] and arm[0][1] is True
    # The same RUN on FROM scratch for another platform is another key: no false hit.
    assert arm[1][2] != amd[1][2] and arm[1][1] is False
    assert arm[1][0].endswith("@linux/arm64") and not amd[1][0].endswith("@linux/amd64")
    again = _solve_keys(tmp_path, ARM64)
    assert all(cached for _, cached, _ in again)


def test_no_cache_runs_a_step_two_platforms_share_once_per_build(tmp_path: Path) -> None:
    built: set[str] = set()  # what one multi-platform build's solvers share
    _solve_keys(tmp_path, AMD64, built, no_cache=True)
    arm = _solve_keys(tmp_path, ARM64, built, no_cache=True)
    assert [cached for _, cached, _ in arm] == [True, False, False]


ENTRY = (
    "enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: {flags}\n"
    "offset 0\nmagic 7f454c460201010000000000000000000200b700\n"
    "mask ffffffffffffff00fffffffffffffffffeffffff\n"
)


def test_binfmt_entry_gives_its_architecture_from_the_elf_machine() -> None:
    entry = parse_entry("whatever-name", ENTRY.format(flags="PF"))
    assert entry is not None and entry.architecture == "arm64" and entry.usable
    no_fix = parse_entry("qemu-aarch64", ENTRY.format(flags="P"))
    assert no_fix is not None and not no_fix.usable
    assert parse_entry("qemu-aarch64", ENTRY.replace("enabled", "disabled")) is None
    arm = ENTRY.replace("0201010000000000000000000200b700", "01010100000000000000000002002800")
    assert (e := parse_entry("qemu-arm", arm)) is not None and e.architecture == "arm"


def test_only_entries_with_the_fix_binary_flag_count(tmp_path: Path) -> None:
    (tmp_path / "status").write_text("enabled\n")
    (tmp_path / "qemu-aarch64").write_text(ENTRY.format(flags="P"))
    assert emulated_architectures(tmp_path) == frozenset()
    (tmp_path / "qemu-aarch64").write_text(ENTRY.format(flags="POCF"))
    assert emulated_architectures(tmp_path) == {"arm64"}
    assert emulated_architectures(tmp_path / "not-mounted") == frozenset()


def test_host_runs_itself_and_emulated_architectures_only() -> None:
    assert runnable(AMD64, AMD64, frozenset())
    assert not runnable(ARM64, AMD64, frozenset())
    assert runnable(ARM64, AMD64, frozenset({"arm64"}))
    assert not runnable(Platform("windows", "amd64", ""), AMD64, frozenset({"amd64"}))
