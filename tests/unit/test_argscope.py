"""ArgScope: ARG declarations extended in O(1), each view unchanged by later ones."""

from __future__ import annotations

from builder.plan.argscope import ArgScope


def test_declaring_leaves_the_earlier_scope_unchanged() -> None:
    first = ArgScope().declare("A", "1")
    second = first.declare("A", "2").declare("B", None)
    assert first.value("A") == "1" and "B" not in first
    assert list(first.items()) == [("A", "1")]
    assert second.value("A") == "2" and "B" in second and second.value("B") is None


def test_declaring_on_an_older_scope_branches_without_touching_the_newer() -> None:
    base = ArgScope().declare("A", "1")
    newer = base.declare("B", "2")
    branch = base.declare("C", "3")
    assert list(newer.items()) == [("A", "1"), ("B", "2")]
    assert list(branch.items()) == [("A", "1"), ("C", "3")]


def test_redeclared_arg_moves_last_but_keeps_its_first_position_in_first_order() -> None:
    scope = ArgScope().declare("A", "1").declare("B", "2").declare("A", "3")
    assert list(scope.items()) == [("B", "2"), ("A", "3")]
    assert list(scope.first_order()) == ["A", "B"]


def test_an_empty_scope_declares_nothing() -> None:
    scope = ArgScope()
    assert not scope and "A" not in scope and scope.value("A") is None
    assert list(scope.items()) == [] and list(scope.first_order()) == []
