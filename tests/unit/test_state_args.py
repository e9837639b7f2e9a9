"""The RUN history prefix lists ARGs as BuildKit's current frontend does."""

from __future__ import annotations

from builder.plan.state import StageState
from cache.oci import ContainerConfig


def test_redeclared_arg_keeps_first_position_with_latest_value() -> None:
    state = StageState(ContainerConfig())
    for name, value in (("A", "1"), ("B", "2"), ("C", None), ("A", "3")):
        state = state.with_arg(name, value)
    assert state.history_args() == ("A=3", "B=2", "C=")
    # The process environment order is BuildKit's too: a re-declared ARG moves last.
    assert [k for k, _ in state.args.items()] == ["B", "C", "A"]


def test_env_of_the_same_name_shows_in_the_prefix() -> None:
    state = StageState(ContainerConfig()).with_arg("B", "2").with_config(env=("B=env",))
    assert state.history_args() == ("B=env",)


def test_no_args_no_prefix() -> None:
    assert StageState(ContainerConfig()).history_args() == ()


def test_env_values_replace_in_place_and_append_new_names_in_order() -> None:
    state = StageState(ContainerConfig(env=("PATH=/bin", "A=1")))
    state = state.with_env_values([("A", "2"), ("B", "3")]).with_env_values([("PATH", "/x")])
    assert state.config.env == ("PATH=/x", "A=2", "B=3")
    assert state.env["A"] == "2" and "C" not in state.env and list(state.env) == ["PATH", "A", "B"]


def test_env_values_on_an_env_with_a_name_twice_keep_the_plain_semantics() -> None:
    state = StageState(ContainerConfig(env=("A=1", "B=2", "A=3")))
    state = state.with_env_values([("B", "x"), ("C", "y")])
    assert state.config.env == ("A=1", "B=x", "A=3", "C=y")
    assert state.env["A"] == "3"  # the later duplicate wins, as in a process environment


def test_env_set_through_with_config_is_seen_by_lookups() -> None:
    state = StageState(ContainerConfig(env=("A=1",)))
    assert state.env["A"] == "1"
    assert state.with_config(env=("A=2",)).env["A"] == "2"


def test_env_values_naming_a_new_variable_twice_append_it_once_with_the_last_value() -> None:
    state = StageState(ContainerConfig(env=("A=1",))).with_env_values([("N", "1"), ("N", "2")])
    assert state.config.env == ("A=1", "N=2") and state.env["N"] == "2"
