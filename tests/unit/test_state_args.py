"""The RUN history prefix lists ARGs as BuildKit's current frontend does."""

from __future__ import annotations

from builder.state import StageState
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
