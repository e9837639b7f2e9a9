"""RUN --network in the plan: the build's network by default, host only when entitled."""

from __future__ import annotations

import pytest

from builder.errors import BuildError
from builder.frontend.dockerfile import parse_dockerfile
from builder.plan.planner import PlanRequest, make_plan
from builder.plan.specs import RunSpec
from tests.unit.test_plan_specs import _image


def _run_spec(text: str, network: str = "default", *, allow_host: bool = False) -> RunSpec:
    df = parse_dockerfile(text, "Dockerfile")
    plan = make_plan(PlanRequest(df, {}, None, network, allow_network_host=allow_host), _image)
    spec = plan.stage(plan.target).steps[-1].spec
    assert isinstance(spec, RunSpec)
    return spec


def test_run_takes_the_builds_default_network() -> None:
    assert _run_spec("FROM a\nRUN true\n").network == "default"


@pytest.mark.parametrize("flag", ["default", "none"])
def test_run_network_default_and_none_need_no_entitlement(flag: str) -> None:
    want = "default" if flag == "default" else "none"
    assert _run_spec(f"FROM a\nRUN --network={flag} true\n").network == want


def test_run_network_host_is_refused_without_the_entitlement() -> None:
    with pytest.raises(BuildError) as caught:
        _run_spec("FROM a\n\nRUN --network=host true\n")
    assert caught.value.line == 3
    assert "--allow network.host" in (caught.value.hint or "")


def test_run_network_host_runs_with_the_entitlement() -> None:
    assert _run_spec("FROM a\nRUN --network=host true\n", allow_host=True).network == "host"


def test_run_network_host_needs_no_entitlement_when_the_build_uses_the_host() -> None:
    assert _run_spec("FROM a\nRUN --network=host true\n", "host").network == "host"


def test_run_network_mode_is_part_of_the_key_text() -> None:
    df = "FROM a\nRUN true\n"
    keys = set()
    for network in ("default", "none", "host"):
        plan = make_plan(PlanRequest(parse_dockerfile(df, "Dockerfile"), {}, None, network), _image)
        keys.add(plan.stage(plan.target).steps[-1].key_text)
    assert len(keys) == 3
