"""A rebuild where every step hits the cache: no layer is unpacked or checked, and the
hits reach the index in one write; a later miss still runs on the right layers."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.errors import BuildError
from cache.digest import Digest
from cache.index import Index
from cache.oci import Descriptor
from cache.unpacked import UnpackedLayers
from tests.unit.test_solve_fake_sandbox import DOCKERFILE, FakeSandbox, solve


def _count_ensures(monkeypatch: pytest.MonkeyPatch) -> list[Digest]:
    calls: list[Digest] = []
    real = UnpackedLayers.ensure

    def ensure(self: UnpackedLayers, layer: Descriptor, diff_id: Digest) -> Path:
        calls.append(diff_id)
        return real(self, layer, diff_id)

    monkeypatch.setattr(UnpackedLayers, "ensure", ensure)
    return calls


def test_a_rebuild_where_every_step_hits_unpacks_no_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    solve(tmp_path, DOCKERFILE, FakeSandbox())[1].close()
    calls = _count_ensures(monkeypatch)
    solver, storage = solve(tmp_path, DOCKERFILE, FakeSandbox())
    storage.close()
    assert [s.cached for s in solver.steps] == [True, True]
    assert calls == []


def test_a_miss_after_hits_runs_on_the_layers_the_hits_made(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    solve(tmp_path, DOCKERFILE, FakeSandbox())[1].close()
    calls = _count_ensures(monkeypatch)
    sandbox = FakeSandbox()
    solver, storage = solve(tmp_path, DOCKERFILE + "RUN third\n", sandbox)
    storage.close()
    assert [s.cached for s in solver.steps] == [True, True, False]
    (run,) = sandbox.calls
    lowers = run.rootfs.lowers
    assert len(lowers) == 2 and len(calls) == 2  # each hit's layer, checked once
    assert [sorted(p.name for p in d.iterdir()) for d in lowers] == [["ran-2"], ["ran-1"]]


def test_hits_reach_the_index_without_a_write_per_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    solve(tmp_path, DOCKERFILE, FakeSandbox())[1].close()

    def refuse(*_args: object) -> None:
        raise AssertionError("a write per hit")

    monkeypatch.setattr(Index, "touch_step", refuse)
    monkeypatch.setattr(Index, "set_last_inputs", refuse)
    solver, storage = solve(tmp_path, DOCKERFILE, FakeSandbox())
    used = {r.key: r.used for r in storage.index.steps()}
    storage.close()
    assert all(used[s.key] is not None and used[s.key] >= s.started for s in solver.steps)


def test_hits_are_recorded_when_a_later_step_fails(tmp_path: Path) -> None:
    solve(tmp_path, DOCKERFILE, FakeSandbox())[1].close()
    with pytest.raises(BuildError):
        solve(tmp_path, DOCKERFILE + "RUN broken\n", FakeSandbox(exit_code=3))
    storage = Index(tmp_path / "store")
    used = [r.used for r in storage.steps()]
    storage.close()
    assert len(used) == 2 and all(u is not None for u in used)
