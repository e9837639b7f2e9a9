"""What the planner emits for each filesystem step: specs as plain data, no sandbox or store."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from builder.errors import BuildError
from builder.frontend import instructions as ins
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.chmod import parse_chmod
from builder.plan.planner import Plan, PlannedStep, PlanRequest, make_plan
from builder.plan.remote import GitRef, RemoteSource
from builder.plan.specs import DEFAULT_HOSTNAME, CopySpec, MountSpec, RunSpec, WorkdirSpec
from cache.digest import Digest
from cache.oci import MEDIA_OCI_CONFIG, ContainerConfig, Descriptor, ImageConfig, Manifest

_DIGEST = Digest("sha256", "ab" * 32)


@dataclass(frozen=True)
class FakeImage:
    """A base image as the planner sees it (``builder.plan.planner.BaseImage``)."""

    digest: Digest
    manifest: Manifest
    config: ImageConfig


def _image(name: str, _instr: ins.From) -> FakeImage:
    config = ImageConfig(config=ContainerConfig(env=("PATH=/bin", "FROM_IMAGE=1")))
    manifest = Manifest(Descriptor(MEDIA_OCI_CONFIG, _DIGEST, 2), ())
    return FakeImage(_DIGEST, manifest, config)


def _plan(text: str, build_args: dict[str, str] | None = None, network: str = "none") -> Plan:
    df = parse_dockerfile(text, "Dockerfile")
    return make_plan(PlanRequest(df, build_args or {}, None, network), _image)


def _steps(text: str, **kwargs: object) -> list[PlannedStep]:
    plan = _plan(text, **kwargs)  # type: ignore[arg-type]
    return list(plan.stage(plan.target).steps)


def _run(text: str, **kwargs: object) -> RunSpec:
    spec = _steps(text, **kwargs)[-1].spec
    assert isinstance(spec, RunSpec)
    return spec


def _copy(text: str) -> CopySpec:
    spec = _steps(text)[-1].spec
    assert isinstance(spec, CopySpec)
    return spec


def test_run_shell_form_wraps_command_in_default_shell() -> None:
    spec = _run("FROM scratch\nRUN echo hi && ls\n")
    assert spec.args == ("/bin/sh", "-c", "echo hi && ls")
    assert spec.text == "echo hi && ls"


def test_run_exec_form_keeps_the_argv_as_written() -> None:
    assert _run('FROM scratch\nRUN ["/bin/echo", "a b"]\n').args == ("/bin/echo", "a b")


def test_run_shell_form_uses_the_shell_instruction() -> None:
    spec = _run('FROM scratch\nSHELL ["/bin/bash", "-eu", "-c"]\nRUN true\n')
    assert spec.args == ("/bin/bash", "-eu", "-c", "true")


def test_run_takes_env_user_and_workdir_from_the_stage() -> None:
    spec = _run("FROM scratch\nENV A=1\nUSER bob\nWORKDIR /app\nRUN env\n")
    assert "A=1" in spec.env
    assert any(e.startswith("PATH=") for e in spec.env)
    assert (spec.user, spec.cwd) == ("bob", "/app")


def test_run_in_a_stage_without_workdir_runs_in_root() -> None:
    assert _run("FROM base\nRUN pwd\n").cwd == "/"


def test_run_sees_the_base_image_environment() -> None:
    assert "FROM_IMAGE=1" in _run("FROM base\nRUN env\n").env


def test_run_declared_arg_is_in_its_env_and_its_key_env() -> None:
    spec = _run("FROM scratch\nARG V=1\nRUN echo $V\n", build_args={"V": "2"})
    assert "V=2" in spec.env
    assert ("V", "2") in spec.key_env


def test_proxy_build_arg_reaches_the_run_but_not_its_key() -> None:
    spec = _run("FROM scratch\nRUN true\n", build_args={"HTTP_PROXY": "http://p:3128"})
    assert "HTTP_PROXY=http://p:3128" in spec.env
    assert all(name != "HTTP_PROXY" for name, _ in spec.key_env)


def test_run_network_is_the_build_network_unless_the_flag_says() -> None:
    assert _run("FROM scratch\nRUN true\n", network="host").network == "host"
    assert _run("FROM scratch\nRUN --network=none true\n", network="host").network == "none"


def test_run_hostname_defaults_and_follows_the_sandbox_hostname_arg() -> None:
    assert _run("FROM scratch\nRUN true\n").hostname == DEFAULT_HOSTNAME
    args = {"BUILDKIT_SANDBOX_HOSTNAME": "box"}
    assert _run("FROM scratch\nRUN true\n", build_args=args).hostname == "box"


def test_heredoc_with_a_shebang_runs_as_a_mounted_script() -> None:
    spec = _run("FROM scratch\nRUN <<EOF\n#!/bin/sh\necho hi\nEOF\n")
    assert spec.args == ("/dev/pipes/EOF",)
    assert spec.scripts == (("/dev/pipes/EOF", "#!/bin/sh\necho hi\n"),)


def test_mount_flag_becomes_mount_spec_with_defaults() -> None:
    spec = _run("FROM scratch\nRUN --mount=type=cache,target=/root/.cache true\n")
    assert spec.mounts == (
        MountSpec("cache", "/root/.cache", readonly=False, id="/root/.cache", sharing="shared"),
    )


def test_bind_mount_is_the_default_type_and_read_only() -> None:
    spec = _run("FROM scratch\nRUN --mount=target=/src,source=app true\n")
    assert spec.mounts == (MountSpec("bind", "/src", "/app", None, readonly=True),)


def test_mount_from_a_stage_refers_to_its_index_and_makes_it_a_dependency() -> None:
    plan = _plan("FROM scratch AS deps\nFROM scratch\nRUN --mount=from=deps,target=/d true\n")
    target = plan.stage(plan.target)
    spec = target.steps[-1].spec
    assert isinstance(spec, RunSpec)
    assert spec.mounts[0].from_stage == 0
    assert target.deps == frozenset({0})


def test_secret_mount_gets_its_target_from_its_id() -> None:
    (mount,) = _run("FROM scratch\nRUN --mount=type=secret,id=npm true\n").mounts
    assert (mount.kind, mount.target, mount.mode) == ("secret", "/run/secrets/npm", 0o400)


def test_copy_resolves_a_relative_dest_against_the_workdir() -> None:
    spec = _copy("FROM scratch\nWORKDIR /app\nCOPY a.txt b.txt sub/\n")
    assert spec.sources == ("a.txt", "b.txt")
    assert spec.dest == "/app/sub/"
    assert spec.from_stage is None


def test_copy_from_stage_refers_to_stage_index() -> None:
    plan = _plan("FROM scratch AS build\nFROM scratch\nCOPY --from=build /out /out\n")
    target = plan.stage(plan.target)
    spec = target.steps[-1].spec
    assert isinstance(spec, CopySpec) and spec.from_stage == 0
    assert target.deps == frozenset({0})


def test_copy_from_an_image_makes_the_image_a_stage_of_its_own() -> None:
    plan = _plan("FROM scratch\nCOPY --from=tools:1 /bin/t /t\n")
    spec = plan.stage(plan.target).steps[-1].spec
    assert isinstance(spec, CopySpec) and spec.from_stage == 1
    image_stage = plan.stage(1)
    assert image_stage.base_name == "tools:1" and image_stage.steps == ()


def test_copy_keeps_chown_and_parsed_chmod() -> None:
    spec = _copy("FROM scratch\nCOPY --chown=1:2 --chmod=0640 a /b\n")
    assert spec.chown == "1:2"
    assert spec.chmod == parse_chmod("0640")


def test_copy_expands_variables_in_sources_dest_and_excludes() -> None:
    spec = _copy("FROM scratch\nENV D=/dst S=src\nCOPY --exclude=$S/*.log $S $D/\n")
    assert (spec.sources, spec.dest, spec.excludes) == (("src",), "/dst/", ("src/*.log",))


def test_copy_heredoc_becomes_a_named_expanded_source() -> None:
    spec = _copy("FROM scratch\nENV WHO=you\nCOPY <<hello.txt /\nhi $WHO\nhello.txt\n")
    assert spec.sources == ()
    assert spec.heredocs == (("hello.txt", "hi you\n"),)


def test_add_splits_url_and_git_sources_from_local_ones() -> None:
    spec = _copy("FROM scratch\nADD https://h/f.txt https://h/r.git#v1:sub local.tar /x/\n")
    assert spec.sources == ("local.tar",)
    assert spec.remote == (
        RemoteSource("https://h/f.txt", None),
        RemoteSource("https://h/r.git#v1:sub", GitRef("https://h/r.git", "v1", "sub")),
    )
    assert spec.unpack


def test_copy_never_unpacks_and_add_unpack_false_turns_it_off() -> None:
    assert not _copy("FROM scratch\nCOPY a.tar /x/\n").unpack
    assert not _copy("FROM scratch\nADD --unpack=false a.tar /x/\n").unpack


def test_workdir_becomes_workdir_spec_owned_by_the_current_user() -> None:
    spec = _steps("FROM scratch\nUSER app\nWORKDIR /srv/data\n")[-1].spec
    assert spec == WorkdirSpec("/srv/data", "app")


def test_workdir_root_and_metadata_instructions_carry_no_spec() -> None:
    steps = _steps("FROM scratch\nWORKDIR /\nENV A=1\nLABEL x=y\nCMD true\n")
    assert [s.spec for s in steps] == [None, None, None, None]


def test_planning_twice_gives_equal_specs() -> None:
    text = "FROM scratch\nRUN --mount=type=tmpfs,target=/t,size=1m true\nCOPY a /b\nWORKDIR /w\n"
    first = [s.spec for s in _steps(text)]
    assert first == [s.spec for s in _steps(text)]
    assert all(s is not None for s in first)


def test_nul_byte_in_a_spec_path_fails_at_plan_time() -> None:
    with pytest.raises(BuildError, match="NUL byte"):
        _plan("FROM scratch\nCOPY a /b\0c\n")
