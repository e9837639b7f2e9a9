"""Keys worked out ahead of their steps (builder.keyahead): same keys, errors in order."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from builder.errors import BuildError
from builder.frontend.dockerfile import parse_dockerfile
from builder.keyahead import KeysAhead, can_key_ahead
from builder.plan.planner import Plan, PlannedStep, PlanRequest, make_plan
from cache.keys import KeyInputs, step_key


def plan_of(text: str) -> Plan:
    def no_images(name: str, _instr: object) -> object:
        raise BuildError(f"no image {name}")

    df = parse_dockerfile(text, "Dockerfile")
    return make_plan(PlanRequest(df, {}, None, "none"), no_images)  # type: ignore[arg-type]


def inputs_of(step: PlannedStep, parent: str) -> KeyInputs:
    if "broken" in step.key_text:
        raise BuildError(f"cannot key {step.key_text}")
    return KeyInputs(parent=parent, instruction=step.key_text, env=())


def chained_inline(steps: tuple[PlannedStep, ...], parent: str) -> list[str]:
    keys = []
    for step in steps:
        if step.spec is not None:
            parent = step_key(inputs_of(step, parent))
            keys.append(parent)
    return keys


def test_keys_taken_ahead_equal_the_keys_computed_in_turn() -> None:
    steps = plan_of("FROM scratch\nRUN a\nENV X=1\nRUN b\nWORKDIR /w\n").stages[-1].steps
    with ThreadPoolExecutor(1) as pool:
        ahead = KeysAhead(pool, inputs_of, threading.Event())
        ahead.start(steps, "root")
        parent, keys = "root", []
        for step in steps:
            if step.spec is None:
                continue
            inputs = ahead.take(step, parent)
            assert inputs is not None
            parent = step_key(inputs)
            keys.append(parent)
    assert keys == chained_inline(steps, "root")


def test_an_error_keying_a_later_step_is_raised_only_when_that_step_is_taken() -> None:
    steps = plan_of("FROM scratch\nRUN a\nRUN broken\nRUN c\n").stages[-1].steps
    with ThreadPoolExecutor(1) as pool:
        ahead = KeysAhead(pool, inputs_of, threading.Event())
        ahead.start(steps, "root")
        first = ahead.take(steps[0], "root")
        assert first is not None
        with pytest.raises(BuildError, match="cannot key"):
            ahead.take(steps[1], step_key(first))
        assert ahead.take(steps[2], "anything") is None  # never keyed: compute it then


def test_a_chain_stops_before_a_step_that_reads_another_stage() -> None:
    plan = plan_of("FROM scratch AS a\nRUN a\nFROM scratch\nRUN b\nCOPY --from=a /x /x\nRUN c\n")
    steps = plan.stages[-1].steps
    assert [can_key_ahead(s) for s in steps] == [True, False, True]
    with ThreadPoolExecutor(1) as pool:
        ahead = KeysAhead(pool, inputs_of, threading.Event())
        ahead.start(steps, "root")
        run_b = ahead.take(steps[0], "root")
        assert run_b is not None
        assert ahead.take(steps[1], step_key(run_b)) is None
        assert ahead.take(steps[2], "copy-key") is None


def test_inputs_chained_off_another_parent_are_not_used() -> None:
    steps = plan_of("FROM scratch\nRUN a\n").stages[-1].steps
    with ThreadPoolExecutor(1) as pool:
        ahead = KeysAhead(pool, inputs_of, threading.Event())
        ahead.start(steps, "root")
        assert ahead.take(steps[0], "another-root") is None


def test_a_stopped_build_keys_nothing_more() -> None:
    steps = plan_of("FROM scratch\nRUN a\nRUN b\n").stages[-1].steps
    stop = threading.Event()
    stop.set()
    with ThreadPoolExecutor(1) as pool:
        ahead = KeysAhead(pool, inputs_of, stop)
        ahead.start(steps, "root")
        assert ahead.take(steps[0], "root") is None
