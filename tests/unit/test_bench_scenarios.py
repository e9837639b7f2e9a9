"""The product benchmark's pure parts: medians, ratios, the table, the scenario list."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_scenarios, bench_table, peers


def _run(
    scenario: str, metric: str, tool: str, seconds: float | None, hit: float | None = None
) -> dict[str, object]:
    return {
        "scenario": scenario,
        "metric": metric,
        "tool": tool,
        "run": 1,
        "seconds": seconds,
        "hit_rate": hit,
        "load": 0.5,
    }


def test_median_ignores_failed_runs_and_is_none_when_all_failed() -> None:
    assert bench_table.median([3.0, None, 1.0, 2.0]) == 2.0
    assert bench_table.median([None, None]) is None


def test_ratio_is_pybuild_over_peer_and_none_without_both() -> None:
    assert bench_table.ratio(3.0, 1.5) == 2.0
    assert bench_table.ratio(None, 1.0) is None
    assert bench_table.ratio(1.0, 0.0) is None


def test_hit_rates_show_one_figure_when_builds_agree_else_the_range() -> None:
    assert bench_table.hit_rates([1.0, 1.0]) == "100%"
    assert bench_table.hit_rates([0.6667, 1.0, None]) == "67-100%"
    assert bench_table.hit_rates([None]) == "-"


def test_table_has_medians_hits_and_ratios_per_scenario_and_metric() -> None:
    runs = [
        _run("tiny", "warm", "pybuild", 0.4, 1.0),
        _run("tiny", "cold", "pybuild", 1.0, 0.0),
        _run("tiny", "cold", "pybuild", 3.0, 0.0),
        _run("tiny", "cold", "buildkit", 0.5),
        _run("tiny", "warm", "buildkit", 0.1),
    ]
    rows = bench_table.table_rows(runs, ["pybuild", "buildkit"])
    assert rows[0] == ["scenario", "metric", "pybuild s", "hits", "buildkit s", "/buildkit"]
    assert rows[1] == ["tiny", "cold", "2.00", "0%", "0.50", "4.00x"]
    assert rows[2] == ["tiny", "warm", "0.40", "100%", "0.10", "4.00x"]


def test_table_marks_failed_builds_and_missing_peer_cells() -> None:
    runs = [_run("big", "export", "pybuild", None), _run("big", "cold", "pybuild", 1.0, 0.0)]
    runs.append(_run("big", "cold", "buildah", 2.0))
    rows = bench_table.table_rows(runs, ["pybuild", "buildah"])
    assert rows[1] == ["big", "cold", "1.00", "0%", "2.00", "0.50x"]
    assert rows[2] == ["big", "export", "fail", "-", "-", "-"]


def test_formatted_table_is_markdown_with_aligned_columns() -> None:
    text = bench_table.format_table([["scenario", "metric", "pybuild s"], ["tiny", "cold", "1.00"]])
    lines = text.splitlines()
    assert lines[0] == "| scenario | metric | pybuild s |"
    assert lines[1] == "|----------|--------|----------:|"
    assert lines[2] == "| tiny     | cold   |      1.00 |"


def test_scenario_list_reads_edit_files_from_scenarios_tsv() -> None:
    tsv = "scenario\tedit_file\tfiles\tbytes\tignored_files\ntiny\tapp.sh\t5\t100\t0\n"
    assert bench_scenarios.parse_tsv(tsv) == {"tiny": "app.sh"}


def test_selection_rejects_unknown_names_and_keeps_the_given_order() -> None:
    assert bench_scenarios.select("pyapp, tiny", bench_scenarios.SCENARIOS, "scenario") == [
        "pyapp",
        "tiny",
    ]
    with pytest.raises(SystemExit, match="unknown scenario: nope"):
        bench_scenarios.select("tiny,nope", bench_scenarios.SCENARIOS, "scenario")


def test_python_app_context_has_2000_modules_and_its_edit_file(tmp_path: Path) -> None:
    ctx = tmp_path / "app"
    bench_scenarios.make_pyapp2k(ctx)
    assert len(list((ctx / "src").rglob("*.py"))) == 2000
    assert (ctx / bench_scenarios.PYAPP2K_EDIT).is_file()
    steps = [line.split()[0] for line in (ctx / "Dockerfile").read_text().splitlines()]
    assert steps == ["FROM", "WORKDIR", "COPY", "RUN", "COPY", "RUN", "ARG", "RUN"]


def test_rendering_lists_every_requested_scenario_with_its_edit_file(tmp_path: Path) -> None:
    contexts = bench_scenarios.render(["tiny", "pyapp2k"], tmp_path)
    assert list(contexts) == ["tiny", "pyapp2k"]
    for ctx, edit in contexts.values():
        assert (ctx / "Dockerfile").is_file()
        assert (ctx / edit).is_file()


class _ExportFails:
    name = "fake"

    def reset(self) -> None:
        pass

    def build(self, ctx: Path, no_cache: bool = False) -> peers.Build:
        return peers.Build(0.5, 1.0)

    def export(self, dest: Path) -> float:
        raise subprocess.CalledProcessError(1, ["fake", "save"], stderr=b"disk full\n")


def test_a_failed_export_keeps_the_build_figures_and_marks_the_export(tmp_path: Path) -> None:
    (tmp_path / "edit.txt").write_text("x\n")
    tool: Any = _ExportFails()
    figures = bench_scenarios.measure(tool, tmp_path, tmp_path / "edit.txt", tmp_path / "o.tar")
    assert figures == [
        ("cold", 0.5, 1.0),
        ("warm", 0.5, 1.0),
        ("edit", 0.5, 1.0),
        ("export", None, None),
    ]
    assert (tmp_path / "edit.txt").read_text() == "x\n# bench edit by fake\n"


def _package(repo: Path) -> Path:
    source = repo / "pkg" / "mod.py"
    source.parent.mkdir(parents=True)
    source.write_text("VALUE = 1\n")
    return source


def _compile(source: Path, **options: Any) -> None:
    import py_compile

    py_compile.compile(str(source), doraise=True, **options)


def test_bytecode_that_matches_its_source_is_current(tmp_path: Path) -> None:
    source = _package(tmp_path)
    _compile(source)
    assert bench_scenarios.stale_bytecode(tmp_path, ("pkg",)) == []


def test_missing_or_outdated_bytecode_is_stale(tmp_path: Path) -> None:
    source = _package(tmp_path)
    assert bench_scenarios.stale_bytecode(tmp_path, ("pkg",)) == [source]
    _compile(source)
    source.write_text("VALUE = 22\n")  # another size: the timestamp header no longer matches
    assert bench_scenarios.stale_bytecode(tmp_path, ("pkg",)) == [source]


def test_checked_hash_bytecode_is_stale_once_the_source_changes(tmp_path: Path) -> None:
    import py_compile

    source = _package(tmp_path)
    _compile(source, invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH)
    assert bench_scenarios.stale_bytecode(tmp_path, ("pkg",)) == []
    source.write_text("VALUE = 2\n")
    assert bench_scenarios.stale_bytecode(tmp_path, ("pkg",)) == [source]


def test_the_bytecode_note_appears_only_when_runs_compiled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = _package(tmp_path)
    monkeypatch.delenv("PYTHONDONTWRITEBYTECODE", raising=False)
    assert bench_scenarios.bytecode_note(tmp_path, ("pkg",)) is None  # runs wrote their bytecode
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    note = bench_scenarios.bytecode_note(tmp_path, ("pkg",))
    assert note is not None and "1 modules" in note and "pkg/mod.py" in note
    _compile(source)
    assert (
        bench_scenarios.bytecode_note(tmp_path, ("pkg",)) is None
    )  # complete __pycache__: no note


class _Logged:
    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log = name, log

    def reset(self) -> None:
        self.log.append(f"{self.name} reset")

    def build(self, ctx: Path, no_cache: bool = False) -> peers.Build:
        self.log.append(f"{self.name} build")
        return peers.Build(0.5, 1.0)

    def export(self, dest: Path) -> float:
        self.log.append(f"{self.name} export")
        return 0.1


def test_every_tool_is_reset_before_any_tool_builds_in_each_run(tmp_path: Path) -> None:
    (tmp_path / "edit.txt").write_text("x\n")
    log: list[str] = []
    tools: Any = [_Logged("a", log), _Logged("b", log)]
    contexts = {"s": (tmp_path, "edit.txt")}
    runs = bench_scenarios.run_scenarios(tools, contexts, 2, tmp_path, settle=0)
    one_run = ["a reset", "b reset"] + ["a build"] * 3 + ["a export"]
    one_run += ["b build"] * 3 + ["b export"]
    assert log == one_run * 2
    assert len(runs) == 2 * 2 * 4


class _ResetFails(_Logged):
    def reset(self) -> None:
        raise subprocess.CalledProcessError(1, ["fake", "reset"], stderr=b"busy\n")


def test_a_tool_whose_reset_failed_gets_no_figures_and_the_others_run(tmp_path: Path) -> None:
    (tmp_path / "edit.txt").write_text("x\n")
    log: list[str] = []
    tools: Any = [_ResetFails("a", log), _Logged("b", log)]
    runs = bench_scenarios.run_scenarios(tools, {"s": (tmp_path, "edit.txt")}, 1, tmp_path, 0)
    assert "a build" not in log and log.count("b build") == 3
    assert [r["seconds"] for r in runs if r["tool"] == "a"] == [None] * 4
